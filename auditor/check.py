"""`auditor check` as a function: inventory + policies (+ waivers) -> findings document and gate code.

The CLI and the audit job both call `run_check`; findings stream to a spool file so memory stays
flat however large the estate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from auditor.evaluate import CompiledPolicy, Evaluator, WaiverBook, compile_policies, gate_exit_code
from auditor.findings import Finding, Severity
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_waivers, load_zones, shipped_policies_dir
from auditor.report.findings_json import FindingsSpool, run_info

# The exit code of an incomplete run (README: exit codes, a public contract).
EXIT_INCOMPLETE = 3


@dataclass
class CheckOptions:
    """Everything one evaluation needs."""

    inventory: Path
    policy_paths: list[Path] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    waivers: Path | None = None
    fail_on: Severity = Severity.INFO
    allow_incomplete: bool = False
    allow_empty: bool = False
    today: date | None = None


@dataclass
class CheckResult:
    """The run object, the spooled findings (close it when done) and the gate's exit code."""

    run: dict[str, Any]
    spool: FindingsSpool
    exit_code: int


def prepare_check(options: CheckOptions) -> tuple[list[CompiledPolicy], WaiverBook | None]:
    """Load and compile the policies (with the parameters) and load the waivers; reads no inventory.

    Bad input raises InputError, so callers can validate everything before writing anything.
    """
    paths = options.policy_paths or [shipped_policies_dir()]
    loaded = load_policies(paths)
    catalog = load_zones(paths)
    compiled = compile_policies(loaded, catalog, options.params)
    waivers = (
        WaiverBook(load_waivers(options.waivers), options.today or date.today()) if options.waivers else None
    )
    return compiled, waivers


def run_check(
    options: CheckOptions,
    *,
    on_finding: Callable[[Finding], None] | None = None,
    spool_dir: Path | None = None,
) -> CheckResult:
    """Evaluate; bad input raises InputError before anything is written."""
    started = datetime.now(UTC)
    compiled, waivers = prepare_check(options)
    evaluator = Evaluator(compiled, waivers, options.fail_on)
    spool = FindingsSpool(spool_dir)
    try:
        for finding in evaluator.run(read_inventory(options.inventory)):
            spool.add(finding)
            if on_finding is not None:
                on_finding(finding)
    except BaseException:
        spool.close()
        raise
    totals = evaluator.totals
    nothing_evaluated = not sum(totals.status.values())
    exit_code = empty_run_exit_code(
        gate_exit_code(totals, options.allow_incomplete), nothing_evaluated, options.allow_empty
    )
    run = run_info(
        run_id=str(uuid.uuid4()),
        started_at=started,
        inventory=str(options.inventory),
        policies=compiled,
        parameters={name: value for c in compiled for name, value in c.parameters.items()},
        totals=evaluator.totals,
        waivers=waivers,
        waivers_file=str(options.waivers) if options.waivers else None,
        fail_on=options.fail_on.value,
        allow_incomplete=options.allow_incomplete,
        exit_code=exit_code,
    )
    gate = run["gate"]
    gate["allow_empty"] = options.allow_empty
    gate["nothing_evaluated"] = nothing_evaluated
    return CheckResult(run=run, spool=spool, exit_code=exit_code)


def empty_run_exit_code(exit_code: int, nothing_evaluated: bool, allow_empty: bool) -> int:
    """The gate's code, made 3 (incomplete) when no policy was evaluated on any resource.

    Nothing checked is not a pass: an empty inventory, one holding only coverage gaps, or
    resources no policy applies to, is incomplete unless `allow_empty` says empty is expected.
    `allow_incomplete` alone does not cover it; coverage gaps still need `allow_incomplete`.
    """
    if nothing_evaluated and not allow_empty and exit_code == 0:
        return EXIT_INCOMPLETE
    return exit_code


def incomplete_reason(run: dict[str, Any]) -> str | None:
    """Why a run's gate is 3: one line starting `incomplete:`, or None when it is not 3.

    Names only what the gate's switches did not allow: nothing evaluated (unless allow_empty),
    error findings and coverage gaps (unless allow_incomplete). Works on the findings document's
    `run` object, so it explains a baselined audit run too.
    """
    gate = run["gate"]
    if gate.get("exit_code") != EXIT_INCOMPLETE:
        return None
    coverage = run["coverage"]
    gaps: list[dict[str, Any]] = list(coverage.get("gaps") or [])
    allow_incomplete = bool(gate.get("allow_incomplete"))
    parts: list[str] = []
    if gate.get("nothing_evaluated") and not gate.get("allow_empty"):
        resources = int(coverage.get("resources", 0))
        if resources:
            parts.append(f"0 resources evaluated (no policy applies to any of the {resources} resources)")
        elif gaps:
            parts.append("0 resources evaluated")
        else:
            parts.append("0 resources evaluated (the inventory holds no resources)")
    errors = int(gate.get("errors", 0))
    if errors and not allow_incomplete:
        parts.append(f"{errors} error finding{'s' if errors != 1 else ''} at or above {gate['fail_on']}")
    if gaps and not allow_incomplete:
        first = gaps[0]
        noun = "coverage gap" if len(gaps) == 1 else "coverage gaps"
        parts.append(
            f"{len(gaps)} {noun}: {first.get('provider')} {first.get('account')} {first.get('scope')}: "
            f"{first.get('code')}: {first.get('reason')}"
        )
    return "incomplete: " + "; ".join(parts or ["the gate is incomplete"])


def empty_run_hint(run: dict[str, Any]) -> str:
    """` (pass --allow-empty ...)` when the run is 3 because nothing was evaluated, else ''."""
    gate = run["gate"]
    if (
        gate.get("exit_code") == EXIT_INCOMPLETE
        and gate.get("nothing_evaluated")
        and not gate.get("allow_empty")
    ):
        return " (pass --allow-empty if an empty run is expected)"
    return ""
