"""Unit runners that misbehave on purpose, for the retry and gap tests (pickled to Dask workers)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from auditor.scale.units import UnitResult, WorkUnit, run_unit


@dataclass(frozen=True)
class KillWorkerOnce:
    """Kills its own worker process (SIGKILL) the first time it runs `account`'s unit."""

    marker_dir: str
    account: str

    def __call__(self, unit: WorkUnit, parts_dir: str) -> UnitResult:
        if unit.account == self.account:
            marker = Path(self.marker_dir) / f"killed-{unit.account}"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return run_unit(unit, parts_dir)


@dataclass(frozen=True)
class AlwaysRefused:
    """`account`'s unit always fails as if the worker's credentials were refused."""

    account: str

    def __call__(self, unit: WorkUnit, parts_dir: str) -> UnitResult:
        if unit.account == self.account:
            raise PermissionError(f"credentials refused for {unit.account} (simulated)")
        return run_unit(unit, parts_dir)


@dataclass(frozen=True)
class RecordSpans:
    """Scans nothing: records when each unit ran (start/end ns, pid), to check the per-account cap."""

    log_dir: str
    seconds: float = 0.3

    def __call__(self, unit: WorkUnit, parts_dir: str) -> UnitResult:
        start = time.time_ns()
        time.sleep(self.seconds)
        end = time.time_ns()
        line = f"{unit.source} {unit.account} {start} {end} {os.getpid()}\n"
        with open(Path(self.log_dir) / f"{unit.label.replace(':', '_')}.span", "a", encoding="utf-8") as f:
            f.write(line)
        part = Path(parts_dir) / unit.part_name()
        part.write_bytes(b"")
        from auditor import __version__

        return UnitResult(
            unit=unit, part=str(part), resources=0, gaps=0, worker=str(os.getpid()), version=__version__
        )
