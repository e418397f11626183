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

from auditor.evaluate import Evaluator, WaiverBook, compile_policies, gate_exit_code
from auditor.findings import Finding, Severity
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_waivers, load_zones, shipped_policies_dir
from auditor.report.findings_json import FindingsSpool, run_info


@dataclass
class CheckOptions:
    """Everything one evaluation needs."""

    inventory: Path
    policy_paths: list[Path] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    waivers: Path | None = None
    fail_on: Severity = Severity.INFO
    allow_incomplete: bool = False
    today: date | None = None


@dataclass
class CheckResult:
    """The run object, the spooled findings (close it when done) and the gate's exit code."""

    run: dict[str, Any]
    spool: FindingsSpool
    exit_code: int


def run_check(
    options: CheckOptions,
    *,
    on_finding: Callable[[Finding], None] | None = None,
    spool_dir: Path | None = None,
) -> CheckResult:
    """Evaluate; bad input raises InputError before anything is written."""
    started = datetime.now(UTC)
    paths = options.policy_paths or [shipped_policies_dir()]
    loaded = load_policies(paths)
    catalog = load_zones(paths)
    compiled = compile_policies(loaded, catalog, options.params)
    waivers = (
        WaiverBook(load_waivers(options.waivers), options.today or date.today()) if options.waivers else None
    )
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
    exit_code = gate_exit_code(evaluator.totals, options.allow_incomplete)
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
    return CheckResult(run=run, spool=spool, exit_code=exit_code)
