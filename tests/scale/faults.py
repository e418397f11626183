"""Unit runners for the tests (pickled to Dask workers): some misbehave on purpose (retries, gaps),
some scan nothing real (the per-account cap, byte-identical merges)."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditor.inventory import write_inventory
from auditor.model import CoverageGap, Location, StorageResource, UnknownCode
from auditor.scale.parts import PartsTarget
from auditor.scale.units import UnitResult, WorkUnit, run_unit


@dataclass(frozen=True)
class KillWorkerOnce:
    """Kills its own worker process (SIGKILL) the first time it runs `account`'s unit."""

    marker_dir: str
    account: str

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
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
        return run_unit(unit, parts)


@dataclass(frozen=True)
class AlwaysRefused:
    """`account`'s unit always fails as if the worker's credentials were refused."""

    account: str

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
        if unit.account == self.account:
            raise PermissionError(f"credentials refused for {unit.account} (simulated)")
        return run_unit(unit, parts)


@dataclass(frozen=True)
class RecordSpans:
    """Scans nothing: records when each unit ran (start/end ns, pid), to check the per-account cap."""

    log_dir: str
    seconds: float = 0.3

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
        return run_unit(unit, parts, scan=self.scan)

    def scan(self, unit: WorkUnit, output: Path) -> None:
        start = time.time_ns()
        time.sleep(self.seconds)
        end = time.time_ns()
        line = f"{unit.source} {unit.account} {start} {end} {os.getpid()}\n"
        with open(Path(self.log_dir) / f"{unit.label.replace(':', '_')}.span", "a", encoding="utf-8") as f:
            f.write(line)
        output.write_bytes(b"")


@dataclass(frozen=True)
class FixedRecords:
    """Scans nothing: writes `buckets` made-up buckets (and a gap) for the unit's account, in a
    scrambled order, identical on every run: merged inventories can be compared byte for byte."""

    buckets: int = 40

    def __call__(self, unit: WorkUnit, parts: PartsTarget | str) -> UnitResult:
        return run_unit(unit, parts, scan=self.scan)

    def scan(self, unit: WorkUnit, output: Path) -> None:
        scanned = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        records: list[StorageResource | CoverageGap] = [
            CoverageGap(
                provider=unit.source,
                account=unit.account,
                scope="region:ap-south-1",
                code=UnknownCode.ERROR,
                reason="listing denied (made up)",
                at=scanned,
            )
        ]
        for i in random.Random(unit.label).sample(range(self.buckets), self.buckets):
            name = f"{unit.account}-bucket-{i:04d}"
            region = ("eu-west-1", "us-east-1", "eu-central-1")[i % 3]
            records.append(
                StorageResource(
                    provider=unit.source,
                    kind="bucket",
                    account=unit.account,
                    name=name,
                    id=f"arn:aws:s3:::{name}",
                    location=Location(
                        raw=region, type="region", primary=region, regions=[region], replicas=[]
                    ),
                    scanned_at=scanned,
                    tags={"owner": f"team-{i % 7}", "note": "x" * (i % 50)},
                )
            )
        write_inventory(output, records)
