"""Units of work: one (source, account/project/subscription) to scan, and how a worker runs one.

A unit carries only what is not secret: the source's name, the account, the source's section of
auditor.yaml restricted to that account (as JSON: role name, endpoints, options) and the policy
paths. The worker that runs it parses the section with the source's model and runs the source's
scan function directly (no command line in between); it gets credentials the standard way on its
own host (instance role, workload identity, the SDK's environment and files) and hands the unit's
inventory part, sorted, over as `scale.parts` says (auditor/scale/parts.py): written into a shared
directory, returned in the result, or written under an object-store URL.

Units are per account, project and subscription, never per region: S3 ListBuckets, GCS
buckets.list and ARM storageAccounts.list are account-wide, so a region split would repeat the
listing (and, on AWS, the region lookup of every bucket) once per region. How a section splits
is the source's own `SourceSection.units()`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from auditor.atomicfile import atomic_output
from auditor.errors import InputError
from auditor.model import CoverageGap, UnknownCode
from auditor.scale.parts import Delivery, PartsTarget, SharedDirectory
from auditor.sources import SourceSection, get_source

UnitRunner = Callable[["WorkUnit", "PartsTarget | str"], "UnitResult"]
# How a unit's records are produced: scan the unit into the given (unsorted) file, return its summary.
UnitScan = Callable[["WorkUnit", Path], Any]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class WorkUnit:
    """One account, project or subscription of one source to scan, with its non-secret settings."""

    source: str
    account: str
    region: str | None = None
    section: str = "{}"  # the source's config section for this unit, as JSON
    policies: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """'aws:111122223333' (with ':region' when the unit is one region)."""
        return f"{self.source}:{self.account}" + (f":{self.region}" if self.region else "")

    @property
    def cap_key(self) -> tuple[str, str]:
        """What the per-account concurrency cap counts by: (source, account)."""
        return (self.source, self.account)

    def settings(self) -> dict[str, Any]:
        """The unit's config section as a mapping."""
        data: dict[str, Any] = orjson.loads(self.section)
        return data

    def part_name(self) -> str:
        """File name of the unit's inventory part: readable, and unique per label."""
        digest = hashlib.sha256(self.label.encode()).hexdigest()[:10]
        return f"{_UNSAFE.sub('_', self.label)[:80]}-{digest}.jsonl"


@dataclass
class UnitResult:
    """What a worker reports back for one unit: counts and where its part is; the part's records
    only with `scale.parts: returned` (compressed, in `data`), until this host has written them out."""

    unit: WorkUnit
    part: str
    resources: int
    gaps: int
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""
    version: str = ""
    data: bytes | None = field(default=None, repr=False)
    sha256: str = ""

    @property
    def delivery(self) -> Delivery:
        """Where and how the worker handed the part over."""
        return Delivery(self.part, self.data, self.sha256)


class UnitUsageError(Exception):
    """A unit's settings were refused (bad option, unreadable file): not retried, the run stops (exit 2)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, message)
        self.source = source
        self.message = message

    def __str__(self) -> str:
        return f"clouds.{self.source}: {self.message}"


@dataclass
class Plan:
    """The units of a configured scan, the gaps found while planning, and the sources covered."""

    units: list[WorkUnit] = field(default_factory=list)
    gaps: list[CoverageGap] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


# --- planning -------------------------------------------------------------------------------------


def plan_units(sections: Mapping[str, SourceSection], policies: Sequence[Path] = ()) -> Plan:
    """Split each source's section into its units (one per AWS account, GCP project, Azure
    subscription: the source decides), in registry order; gaps found while planning are kept."""
    plan = Plan()
    policy_paths = tuple(str(p) for p in policies)
    for name, section in sections.items():
        plan.sources.append(name)
        for item in section.units():
            if isinstance(item, CoverageGap):
                plan.gaps.append(item)
                continue
            account, unit_section = item
            plan.units.append(WorkUnit(name, account, None, unit_section.model_dump_json(), policy_paths))
    return plan


# --- running one unit (on a worker) ---------------------------------------------------------------


def scan_unit(unit: WorkUnit, output: Path) -> Any:
    """Run the unit's source scan into `output` in this process; returns its ScanSummary."""
    try:
        source = get_source(unit.source)
    except KeyError:
        raise UnitUsageError(unit.source, "no such source") from None
    try:
        section = source.parse(unit.settings())
        return source.load_scan()(section, [Path(p) for p in unit.policies], output, False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnitUsageError(unit.source, f"{where}: {first['msg']}") from None
    except InputError as exc:  # InputError does not survive pickling: send a plain one back
        raise UnitUsageError(unit.source, str(exc)) from None


def record_key(line: bytes) -> tuple[str, str, int, str, str, bytes]:
    """Merge order of one inventory line: provider, account, gaps first, region, resource id."""
    data = orjson.loads(line)
    provider, account = str(data.get("provider", "")), str(data.get("account", ""))
    if data.get("record") == "gap":
        ident = f"{data.get('scope', '')}\x00{data.get('code', '')}\x00{data.get('reason', '')}"
        return (provider, account, 0, "", ident, line)
    location = data.get("location") or {}
    region = str(location.get("primary") or "")
    return (provider, account, 1, region, str(data.get("id", "")), line)


def sort_part(source: Path, target: Path) -> tuple[int, int]:
    """Write `source`'s records to `target` in merge order; returns (resources, gaps)."""
    with source.open("rb") as handle:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in handle if line.strip()]
    keyed = sorted(record_key(line) for line in lines)
    with atomic_output(target) as out:
        for key in keyed:
            out.write(key[-1])
    gaps = sum(1 for key in keyed if key[2] == 0)
    return len(keyed) - gaps, gaps


def run_unit(unit: WorkUnit, parts: PartsTarget | str, scan: UnitScan = scan_unit) -> UnitResult:
    """Scan one unit (with its source's scanner, or `scan`) and hand its sorted part over to `parts`
    (a PartsTarget, or the path of a shared parts directory)."""
    from auditor import __version__
    from auditor.scan.base import ScanSummary

    started = time.perf_counter()
    target = SharedDirectory(parts) if isinstance(parts, str) else parts
    with target.staging() as staging:
        part = staging / unit.part_name()
        raw = part.with_name(part.name + f".{os.getpid()}.unsorted")
        try:
            summary = scan(unit, raw)
            resources, gaps = sort_part(raw, part)
        finally:
            raw.unlink(missing_ok=True)
        delivery = target.deliver(part)
    return UnitResult(
        unit=unit,
        part=delivery.location,
        resources=resources,
        gaps=gaps,
        calls=dict(summary.calls) if isinstance(summary, ScanSummary) else {},
        seconds=time.perf_counter() - started,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        version=__version__,
        data=delivery.data,
        sha256=delivery.sha256,
    )


def failed_unit_gap(unit: WorkUnit, attempts: int, reason: str) -> CoverageGap:
    """The coverage gap recorded for a unit that failed every attempt."""
    from datetime import UTC, datetime

    return CoverageGap(
        provider=unit.source,
        account=unit.account,
        scope="unit" if unit.region is None else f"unit:{unit.region}",
        code=UnknownCode.ERROR,
        reason=f"unit {unit.label} failed {attempts} attempt(s): {reason}",
        at=datetime.now(UTC),
    )
