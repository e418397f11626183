"""Drive units through an executor: the per-account cap, bounded retries, coverage gaps, progress.

Only this loop submits units, so its caps hold however many workers the cluster has: at most
`units_per_account` units of one (source, account) are in flight at once, and at most a window of
units overall (about twice the executor's slots). A unit that raises (worker lost, crash,
credentials missing on that worker) is submitted again, up to `attempts` times in all, then
recorded as a `CoverageGap` so the gate reports the run incomplete. A unit whose arguments are
refused stops the run (exit 2): retrying a bad option is pointless. Each finished unit's part is
collected into the host's parts directory as it arrives (auditor/scale/parts.py); a part that
cannot be collected whole counts as a failed attempt too.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from auditor.errors import InputError
from auditor.model import CoverageGap
from auditor.scale.executors import Executor, UnitFuture
from auditor.scale.parts import DIRECTORY, PartsTarget, parts_target
from auditor.scale.units import UnitResult, UnitRunner, UnitUsageError, WorkUnit, failed_unit_gap, run_unit

Log = Callable[[str], None]


@dataclass(frozen=True)
class ScaleOptions:
    """How the loop runs units: tries per unit, the per-account cap, progress on the terminal, and
    how parts reach this host: `directory` (shared), `returned` (in the result) or a URL."""

    attempts: int = 3
    units_per_account: int = 1
    progress: bool | None = None
    parts: str = DIRECTORY


@dataclass
class ScaleReport:
    """What happened to every unit."""

    executor: str
    units: int = 0
    results: list[UnitResult] = field(default_factory=list)
    gaps: list[CoverageGap] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    peak_in_flight: int = 0
    peak_per_account: int = 0
    seconds: float = 0.0

    @property
    def retried(self) -> int:
        """Units that needed more than one attempt."""
        return sum(1 for n in self.attempts.values() if n > 1)

    @property
    def calls(self) -> dict[str, int]:
        """API calls of every finished unit, by operation."""
        total: Counter[str] = Counter()
        for result in self.results:
            total.update(result.calls)
        return dict(total)

    def render(self) -> str:
        """One line for the log."""
        resources = sum(r.resources for r in self.results)
        return (
            f"units ({self.executor}): {len(self.results)}/{self.units} done, {self.retried} retried, "
            f"{len(self.gaps)} failed (coverage gaps); {resources} resources, "
            f"{sum(self.calls.values())} API calls, in {self.seconds:.1f}s"
        )


class _Progress:
    """units done / total on the terminal (rich), or nothing."""

    def __init__(self, total: int, executor: str, show: bool) -> None:
        self.bar: Any = None
        if not show:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(f"units ({executor})", total=total)

    def update(self, done: int, in_flight: int, retried: int, failed: int) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                completed=done,
                description=f"units: {in_flight} running, {retried} retried, {failed} failed",
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_units(
    units: list[WorkUnit],
    executor: Executor,
    parts_dir: Path,
    options: ScaleOptions | None = None,
    *,
    runner: UnitRunner = run_unit,
    log: Log | None = None,
) -> ScaleReport:
    """Run every unit through `executor` (already started); parts land in `parts_dir` on this host."""
    from auditor import __version__

    options = options or ScaleOptions()
    target = parts_target(options.parts, parts_dir)
    report = ScaleReport(executor=executor.name, units=len(units))
    started = time.perf_counter()
    queues: dict[tuple[str, str], deque[tuple[WorkUnit, int]]] = {}
    for unit in units:
        queues.setdefault(unit.cap_key, deque()).append((unit, 1))
    ready: deque[tuple[str, str]] = deque(queues)  # accounts with queued units and room under the cap
    waiting = set(ready)
    running: dict[UnitFuture, tuple[WorkUnit, int]] = {}
    per_account: Counter[tuple[str, str]] = Counter()
    window = max(1, executor.slots * 2)
    show = sys.stderr.isatty() if options.progress is None else options.progress
    progress = _Progress(len(units), executor.name, show)

    def fill() -> None:
        while ready and len(running) < window:
            key = ready.popleft()
            waiting.discard(key)
            unit, attempt = queues[key].popleft()
            running[executor.submit(runner, unit, target, attempt)] = (unit, attempt)
            report.attempts[unit.label] = attempt
            per_account[key] += 1
            report.peak_per_account = max(report.peak_per_account, per_account[key])
            if queues[key] and per_account[key] < options.units_per_account:
                ready.append(key)
                waiting.add(key)
        report.peak_in_flight = max(report.peak_in_flight, len(running))

    def release(key: tuple[str, str]) -> None:
        per_account[key] -= 1
        if queues[key] and key not in waiting and per_account[key] < options.units_per_account:
            ready.append(key)
            waiting.add(key)

    try:
        fill()
        while running:
            for future in executor.wait(list(running)):
                unit, attempt = running.pop(future)
                outcome = _outcome(future, target, parts_dir, __version__)
                if isinstance(outcome, UnitResult):
                    report.results.append(outcome)
                else:
                    error = outcome
                    report.errors.setdefault(unit.label, []).append(error)
                    if log is not None:
                        log(f"unit {unit.label} attempt {attempt}/{options.attempts} failed: {error}")
                    if attempt < options.attempts:
                        queues[unit.cap_key].appendleft((unit, attempt + 1))
                    else:
                        report.gaps.append(failed_unit_gap(unit, attempt, error))
                release(unit.cap_key)
            fill()
            finished = len(report.results) + len(report.gaps)
            progress.update(finished, len(running), report.retried, len(report.gaps))
    except UnitUsageError as exc:
        raise InputError(f"clouds.{exc.source}", exc.message) from None
    finally:
        progress.close()
        try:
            target.close()
        except Exception as exc:  # leftovers in the store cost space, not coverage: say so, go on
            if log is not None:
                log(f"could not remove this run's parts from {options.parts}: {_reason(exc)}")
    report.seconds = time.perf_counter() - started
    return report


def _outcome(future: UnitFuture, target: PartsTarget, parts_dir: Path, version: str) -> UnitResult | str:
    """The unit's result with its part collected into `parts_dir`, or why this attempt failed
    (UnitUsageError propagates: not retried)."""
    try:
        result = future.result()
    except UnitUsageError:
        raise
    except Exception as exc:  # worker lost (KilledWorker), crash, refused credentials raised as errors
        return _reason(exc)
    if result.version != version:
        target.discard(result.delivery)
        return f"worker {result.worker} runs auditor {result.version}, this host {version}"
    try:
        part = target.collect(result.delivery, parts_dir)
    except Exception as exc:  # not on this host, missing in the store, damaged on the way
        return _reason(exc)
    # Only the local path is kept: the returned bytes are on disk now.
    return replace(result, part=str(part), data=None)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
