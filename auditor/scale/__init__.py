"""Scale-out: a configured scan split into units of work, run in-process or on a Dask cluster.

plan (units.py) -> run (run.py, through an executor from executors.py) -> sorted parts, handed to
this host through a shared directory, the task results or an object store (parts.py) -> merge
(merge.py) -> one inventory, identical whichever executor ran the units and however the parts
travelled. See docs/scale-out.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from auditor.inventory import write_inventory
from auditor.scale.executors import Executor, make_executor
from auditor.scale.run import ScaleOptions, ScaleReport, run_units
from auditor.scale.units import Plan, UnitRunner, plan_units, run_unit, sort_part
from auditor.sources import SourceSection

GAPS_PART = "gaps.jsonl"


@dataclass
class ScaledScan:
    """A finished scan: the sources planned, the sorted parts to merge, and what each unit did."""

    plan: Plan
    report: ScaleReport
    parts: list[Path] = field(default_factory=list)


def scan_sources(
    sections: Mapping[str, SourceSection],
    parts_dir: Path,
    executor: Executor,
    *,
    policies: Sequence[Path] = (),
    options: ScaleOptions | None = None,
    runner: UnitRunner = run_unit,
    log: Callable[[str], None] | None = None,
) -> ScaledScan:
    """Plan each source's section into units, run them, and return the sorted parts (gaps included)."""
    plan = plan_units(sections, policies)
    if plan.units:
        if log is not None:
            counts = ", ".join(f"{s}: {sum(u.source == s for u in plan.units)}" for s in plan.sources)
            log(f"scanning {len(plan.units)} units ({counts}) with the {executor.name} executor ...")
        with executor:
            report = run_units(
                plan.units, executor, parts_dir, options or ScaleOptions(), runner=runner, log=log
            )
    else:
        report = ScaleReport(executor=executor.name)
    parts = [Path(r.part) for r in report.results]
    gaps = plan.gaps + report.gaps
    if gaps:
        unsorted = parts_dir / (GAPS_PART + ".unsorted")
        write_inventory(unsorted, gaps)
        sort_part(unsorted, parts_dir / GAPS_PART)
        unsorted.unlink()
        parts.append(parts_dir / GAPS_PART)
    if log is not None and plan.units:
        log(report.render())
    return ScaledScan(plan=plan, report=report, parts=parts)


__all__ = [
    "Executor",
    "ScaleOptions",
    "ScaleReport",
    "ScaledScan",
    "make_executor",
    "run_units",
    "scan_sources",
]
