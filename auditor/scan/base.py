"""The one interface every cloud scanner implements, and the shared machinery around it.

A scanner yields `StorageResource` and `CoverageGap` records as they complete; `run_scan` streams
them to a JSONL inventory (atomically), shows progress on a terminal and prints a summary with
the API calls made per resource.
"""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from auditor.atomicfile import atomic_output
from auditor.inventory import InventoryRecord, dump_record
from auditor.model import CoverageGap, Provider, StorageResource, attribute_paths
from auditor.policy.loader import load_policies, load_zones, policy_leaves, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog

# The exit code of an incomplete run (README: exit codes, a public contract).
EXIT_INCOMPLETE = 3


@dataclass(frozen=True)
class AttributeNeeds:
    """The attribute paths the loaded policies read, per resource kind they are scoped to.

    Scanners call only the APIs behind them: a kind no loaded policy is scoped to is not listed at
    all (a storage-only policy set makes no AI call, and the reverse), and within a kind only the
    calls that feed a path some policy scoped to that kind reads are made.
    """

    paths: frozenset[str]
    # kind -> the paths the policies scoped to it read; None: every kind reads `paths`.
    by_kind: Mapping[str, frozenset[str]] | None = None

    def wants(self, path: str) -> bool:
        """True if any needed path is `path`, lies under it, or contains it."""
        return any(p == path or p.startswith(path + ".") or path.startswith(p + ".") for p in self.paths)

    def wants_kind(self, kind: str) -> bool:
        """True if some loaded policy is scoped to resources of `kind`."""
        return self.by_kind is None or kind in self.by_kind

    def for_kinds(self, *kinds: str) -> AttributeNeeds:
        """The needs of the policies scoped to any of `kinds` (what a scan of those kinds reads)."""
        if self.by_kind is None:
            return self
        chosen = {kind: self.by_kind[kind] for kind in kinds if kind in self.by_kind}
        return AttributeNeeds(frozenset().union(*chosen.values()), chosen)

    @classmethod
    def everything(cls, *kinds: str) -> AttributeNeeds:
        """Needs every attribute of `kinds` (default: of every kind: a full inventory)."""
        paths = attribute_paths()
        return cls(paths, {kind: paths for kind in kinds} if kinds else None)

    @classmethod
    def from_policy_paths(cls, paths: Iterable[Path]) -> AttributeNeeds:
        """The needs of the policies found in `paths` (scope conditions included)."""
        by_kind: dict[str, set[str]] = {}
        for loaded in load_policies(paths):
            read = {leaf.attribute for leaf, _ in policy_leaves(loaded)}
            for kind in loaded.policy.scope.kinds:
                by_kind.setdefault(kind, set()).update(read)
        frozen = {kind: frozenset(read) for kind, read in by_kind.items()}
        return cls(frozenset().union(*frozen.values()), frozen)


class CallCounter:
    """Thread-safe count of API calls by operation name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, operation: str, n: int = 1) -> None:
        """Count `n` calls of `operation`."""
        with self._lock:
            self._counts[operation] += n

    def snapshot(self) -> dict[str, int]:
        """Counts so far, by operation."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """All calls so far."""
        with self._lock:
            return sum(self._counts.values())


class Scanner(ABC):
    """Inventories one cloud. Implementations live one per module in auditor/scan/."""

    provider: ClassVar[Provider]

    def __init__(self, needs: AttributeNeeds, catalog: ZoneCatalog, concurrency: int = 16) -> None:
        self.needs = needs
        self.catalog = catalog
        self.concurrency = concurrency
        self.calls = CallCounter()

    @abstractmethod
    def scan(self) -> Iterator[InventoryRecord]:
        """Yield every resource (and coverage gap) as it completes."""


@dataclass
class ScanSummary:
    """What a scan did: counts, calls, time."""

    provider: str
    resources: int = 0
    gaps: list[CoverageGap] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def nothing_scanned(self) -> bool:
        """True when the scan wrote no resource and at least one coverage gap: every scope failed.

        Such a scan is incomplete (exit 3), never a clean empty estate: nothing checked is not a
        pass. A scan with neither resources nor gaps found an empty estate and is complete.
        """
        return self.resources == 0 and bool(self.gaps)

    @property
    def incomplete_reason(self) -> str | None:
        """Why the scan is incomplete (`nothing scanned: every scope failed: ...`), or None."""
        if not self.nothing_scanned:
            return None
        first = self.gaps[0]
        return (
            f"nothing scanned: every scope failed: {first.account} {first.scope}: "
            f"{first.code.value}: {first.reason}"
        )

    @property
    def exit_code(self) -> int:
        """The scan's exit code: 3 (incomplete) when nothing was scanned, else 0."""
        return EXIT_INCOMPLETE if self.nothing_scanned else 0

    @property
    def calls_per_resource(self) -> float:
        """Average API calls per resource (all calls, listing included)."""
        return sum(self.calls.values()) / self.resources if self.resources else 0.0

    def render(self) -> str:
        """Human summary for the terminal or CI log."""
        lines = [
            f"scan {self.provider}: {self.resources} resources, {len(self.gaps)} coverage gaps, "
            f"{sum(self.calls.values())} API calls ({self.calls_per_resource:.2f} per resource) "
            f"in {self.seconds:.1f}s"
        ]
        for op, n in sorted(self.calls.items()):
            per = n / self.resources if self.resources else 0.0
            lines.append(f"  {op}: {n} ({per:.2f} per resource)")
        lines.extend(f"  gap: {g.account} {g.scope}: {g.code.value}: {g.reason}" for g in self.gaps)
        reason = self.incomplete_reason
        if reason is not None:
            lines.append(reason)
        return "\n".join(lines)


def run_scan(scanner: Scanner, output: Path, *, progress: bool | None = None) -> ScanSummary:
    """Stream a scanner's records to `output` (JSONL, written atomically) and summarize."""
    summary = ScanSummary(provider=scanner.provider)
    started = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    with atomic_output(output) as handle:
        if show:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
            ) as bar:
                task = bar.add_task(f"scanning {scanner.provider}", total=None)
                for record in scanner.scan():
                    _write(handle, record, summary)
                    bar.update(
                        task,
                        description=f"scanning {scanner.provider}: {summary.resources} resources, "
                        f"{scanner.calls.total} calls",
                    )
        else:
            for record in scanner.scan():
                _write(handle, record, summary)
    summary.calls = scanner.calls.snapshot()
    summary.seconds = time.perf_counter() - started
    return summary


def _write(handle: object, record: InventoryRecord, summary: ScanSummary) -> None:
    handle.write(dump_record(record))  # type: ignore[attr-defined]
    if isinstance(record, StorageResource):
        summary.resources += 1
    else:
        summary.gaps.append(record)


def default_policy_paths(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """The given policy paths, or the shipped policies when none are given."""
    return list(paths) or [shipped_policies_dir()]


def scanner_context(policy_paths: tuple[Path, ...] | list[Path]) -> tuple[AttributeNeeds, ZoneCatalog]:
    """What a scan needs from the policies: the attributes they read, and the zone catalog."""
    paths = default_policy_paths(policy_paths)
    return AttributeNeeds.from_policy_paths(paths), load_zones(paths)
