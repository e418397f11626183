"""Scale-out: a configured scan split into units of work, run in-process or on a Dask cluster.

plan (units.py) -> run (run.py, through an executor from executors.py) -> sorted parts ->
merge (merge.py) -> one inventory, identical whichever executor ran the units. See docs/scale-out.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from auditor.audit.config import AuditConfig
from auditor.inventory import write_inventory
from auditor.scale.executors import Executor, make_executor
from auditor.scale.run import ScaleOptions, ScaleReport, run_units
from auditor.scale.units import Plan, UnitRunner, plan_units, run_unit, sort_part

GAPS_PART = "gaps.jsonl"


@dataclass
class ScaledScan:
    """A finished scan: the clouds planned, the sorted parts to merge, and what each unit did."""

    plan: Plan
    report: ScaleReport
    parts: list[Path] = field(default_factory=list)


def scan_configured(
    config: AuditConfig,
    parts_dir: Path,
    *,
    executor: Executor | None = None,
    runner: UnitRunner = run_unit,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> ScaledScan:
    """Plan the configured clouds into units, run them, and return the sorted parts (gaps included)."""
    plan = plan_units(config, parts_dir)
    chosen = executor or make_executor(
        config.executor,
        scheduler=config.scheduler,
        threads=config.scale.threads,
        local_workers=config.scale.local_workers,
    )
    options = ScaleOptions(
        attempts=config.scale.attempts, units_per_account=config.scale.units_per_account, progress=progress
    )
    if plan.units:
        if log is not None:
            counts = ", ".join(f"{c}: {sum(u.cloud == c for u in plan.units)}" for c in plan.clouds)
            log(f"scanning {len(plan.units)} units ({counts}) with the {chosen.name} executor ...")
        with chosen:
            report = run_units(plan.units, chosen, parts_dir, options, runner=runner, log=log)
    else:
        report = ScaleReport(executor=chosen.name)
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


__all__ = ["ScaleOptions", "ScaleReport", "ScaledScan", "run_units", "scan_configured"]
