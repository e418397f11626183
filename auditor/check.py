"""`auditor check` as a function: inventory + policies (+ waivers) -> findings document and gate code.

The CLI and the audit job both call `run_check`; findings stream to a spool file so memory stays
flat however large the estate.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from auditor import __version__
from auditor.attestations import with_expired_attestations
from auditor.document import (
    REFERENCE_SCHEMA_VERSION,
    SCHEMA_VERSION,
    AccountRef,
    CoverageInfo,
    FindingsSpool,
    GapRecord,
    GateInfo,
    PolicyInfo,
    RunInfo,
    SelectionInfo,
    StatusCounts,
    ToolInfo,
    WaiversInfo,
    WaiverUse,
    ZoneInfo,
)
from auditor.evaluate import (
    CompiledPolicy,
    Evaluator,
    PolicySelection,
    RunTotals,
    WaiverBook,
    command_line_param,
    compile_policies,
    gate_exit_code,
    select_policies,
)
from auditor.findings import Finding, Severity, Status
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_waivers, load_zones, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog

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
    selection: PolicySelection = field(default_factory=PolicySelection)
    # How a parameter is named in errors: `--param NAME`, or the config key it came from.
    param_where: Callable[[str], str] = command_line_param
    # `inline` (schema 1.6: findings copy their evidence) or `reference` (2.0: they index it).
    evidence: str = "inline"


@dataclass
class CheckResult:
    """The run object, the spooled findings (close it when done) and the gate's exit code."""

    run: RunInfo
    spool: FindingsSpool
    exit_code: int


def prepare_check(options: CheckOptions) -> tuple[list[CompiledPolicy], WaiverBook | None]:
    """Load and compile the policies (with the parameters), select those the run evaluates and load
    the waivers; reads no inventory.

    Bad input raises InputError, so callers can validate everything before writing anything.
    """
    compiled, waivers, _ = _prepare(options)
    return compiled, waivers


def _prepare(options: CheckOptions) -> tuple[list[CompiledPolicy], WaiverBook | None, ZoneCatalog]:
    paths = options.policy_paths or [shipped_policies_dir()]
    loaded = load_policies(paths)
    catalog = load_zones(paths)
    # Every loaded policy compiles (is validated) before the selection keeps some of them.
    compiled = select_policies(
        compile_policies(loaded, catalog, options.params, where=options.param_where), options.selection
    )
    waivers = (
        WaiverBook(load_waivers(options.waivers), options.today or date.today()) if options.waivers else None
    )
    return compiled, waivers, catalog


def run_check(
    options: CheckOptions,
    *,
    on_finding: Callable[[Finding], None] | None = None,
    spool_dir: Path | None = None,
    reference_path: bool = False,
    remember_decisions: bool = True,
) -> CheckResult:
    """Evaluate; bad input raises InputError before anything is written.

    Findings are written as JSON straight from shared parts (`Evaluator.encode`); with `on_finding`
    (or `reference_path`) each is built as a `Finding` object first, the same bytes more slowly.
    """
    started = datetime.now(UTC)
    compiled, waivers, catalog = _prepare(options)
    evaluator = Evaluator(compiled, waivers, options.fail_on, remember_decisions=remember_decisions)
    reference = options.evidence == "reference"
    digest = hashlib.sha256()
    spool = FindingsSpool(spool_dir)
    try:
        # Findings built from shared parts may come from struct records (auditor.fast_decode).
        fast = on_finding is None and not reference_path
        # Reference-form findings do not copy evidence: its texts need not be kept.
        inventory = read_inventory(options.inventory, digest=digest, fast=fast, evidence_texts=not reference)
        # An attestation that expired before the check date no longer vouches for its value.
        records = with_expired_attestations(inventory, options.today or date.today())
        if fast:
            for encoded in evaluator.encode(records, reference=reference):
                spool.add_json(encoded)
        else:
            for finding in evaluator.run(records):
                spool.add(finding, reference=reference)
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
        totals=totals,
        waivers=waivers,
        waivers_file=str(options.waivers) if options.waivers else None,
        gate=GateInfo(
            fail_on=options.fail_on,
            allow_incomplete=options.allow_incomplete,
            failures=totals.gate_failures,
            errors=totals.gate_errors,
            exit_code=exit_code,
            allow_empty=options.allow_empty,
            nothing_evaluated=nothing_evaluated,
        ),
        catalog=catalog,
        selection=options.selection,
        inventory_digest=f"sha256:{digest.hexdigest()}",
        evidence=options.evidence,
    )
    return CheckResult(run=run, spool=spool, exit_code=exit_code)


def run_info(
    *,
    run_id: str,
    started_at: datetime,
    inventory: str,
    policies: list[CompiledPolicy],
    totals: RunTotals,
    waivers: WaiverBook | None,
    waivers_file: str | None,
    gate: GateInfo,
    catalog: ZoneCatalog | None = None,
    selection: PolicySelection | None = None,
    inventory_digest: str | None = None,
    evidence: str = "inline",
) -> RunInfo:
    """The document's `run`: what ran, on what, with which result and coverage, and each policy's
    text and the residency zone as evaluated, so reports never read policy files again."""
    parameters = {name: value for c in policies for name, value in c.parameters.items()}
    run = RunInfo(
        schema_version=REFERENCE_SCHEMA_VERSION if evidence == "reference" else SCHEMA_VERSION,
        id=run_id,
        tool=ToolInfo(name="auditor", version=__version__),
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        inventory=inventory,
        parameters=parameters,
        policies=[_policy_info(p, totals) for p in policies],
        counts=StatusCounts(
            findings=sum(totals.status.values()),
            by_status={s: totals.status.get(s.value, 0) for s in Status},
            by_severity={
                Severity(sev): {Status(s): n for s, n in c.items()}
                for sev, c in sorted(totals.by_severity.items())
            },
        ),
        coverage=CoverageInfo(
            resources=totals.resources,
            resources_by_provider=dict(totals.resources_by_provider),
            accounts=[AccountRef(provider=p, account=a) for p, a in sorted(totals.accounts)],
            regions=dict(sorted(totals.regions.items())),
            unknown_attributes={
                path: dict(codes) for path, codes in sorted(totals.unknown_attributes.items())
            },
            # A gap's evidence stays in the inventory: the findings contract (1.2) has no such field.
            gaps=[
                GapRecord.model_validate(g.model_dump(mode="json", exclude={"evidence"})) for g in totals.gaps
            ],
        ),
        waivers=WaiversInfo(
            file=waivers_file,
            entries=[
                WaiverUse(
                    id=use.waiver.key,
                    policy=use.waiver.waiver.policy,
                    expires=use.waiver.waiver.expires.isoformat(),
                    expired=waivers is not None and use.waiver.waiver.expires < waivers.today,
                    applied=use.applied,
                    expired_matches=use.expired_matches,
                    source=use.waiver.where,
                )
                for use in (waivers.uses if waivers else [])
            ],
        ),
        gate=gate,
        evidence=evidence,
    )
    if inventory_digest is not None:
        run.inventory_digest = inventory_digest
    zone = run.zone_name
    if catalog is not None and zone is not None and zone in catalog.zones:
        run.zone = _zone_info(catalog, zone)
    if selection:  # only a run given a selection records one (an optional field of 1.4)
        run.selection = SelectionInfo(
            policy=list(selection.policy),
            skip_policy=list(selection.skip_policy),
            min_severity=selection.min_severity,
        )
    return run


def _policy_info(compiled: CompiledPolicy, totals: RunTotals) -> PolicyInfo:
    policy = compiled.policy
    return PolicyInfo(
        id=policy.id,
        title=policy.title,
        severity=policy.severity,
        family=policy.family,
        source=compiled.loaded.where,
        parameters=compiled.parameters,
        controls=policy.controls,
        counts={Status(s): n for s, n in totals.by_policy.get(policy.id, {}).items()},
        description=policy.description,
        expected=compiled.expected,
        remediation={str(provider): text for provider, text in policy.remediation.items()},
        references=list(policy.references),
    )


def _zone_info(catalog: ZoneCatalog, zone: str) -> ZoneInfo:
    providers = catalog.providers
    inside = {p: sorted(catalog.regions_in_zone(zone, p)) for p in providers}
    return ZoneInfo(
        id=zone,
        title=catalog.zones[zone].title,
        inside=inside,
        outside={p: sorted(set(section.regions) - set(inside[p])) for p, section in providers.items()},
    )


def empty_run_exit_code(exit_code: int, nothing_evaluated: bool, allow_empty: bool) -> int:
    """The gate's code, made 3 (incomplete) when no policy was evaluated on any resource.

    Nothing checked is not a pass: an empty inventory, one holding only coverage gaps, or
    resources no policy applies to, is incomplete unless `allow_empty` says empty is expected.
    `allow_incomplete` alone does not cover it; coverage gaps still need `allow_incomplete`.
    """
    if nothing_evaluated and not allow_empty and exit_code == 0:
        return EXIT_INCOMPLETE
    return exit_code


def incomplete_reason(run: RunInfo) -> str | None:
    """Why a run's gate is 3: one line starting `incomplete:`, or None when it is not 3.

    Names only what the gate's switches did not allow: nothing evaluated (unless allow_empty),
    error findings and coverage gaps (unless allow_incomplete). Works on the findings document's
    `run` object, so it explains a baselined audit run too.
    """
    gate = run.gate
    if gate.exit_code != EXIT_INCOMPLETE:
        return None
    gaps = run.coverage.gaps
    parts: list[str] = []
    if gate.nothing_evaluated and not gate.allow_empty:
        resources = run.coverage.resources
        if resources:
            parts.append(f"0 resources evaluated (no policy applies to any of the {resources} resources)")
        elif gaps:
            parts.append("0 resources evaluated")
        else:
            parts.append("0 resources evaluated (the inventory holds no resources)")
    errors = gate.errors
    if errors and not gate.allow_incomplete:
        parts.append(f"{errors} error finding{'s' if errors != 1 else ''} at or above {gate.fail_on.value}")
    if gaps and not gate.allow_incomplete:
        first = gaps[0]
        noun = "coverage gap" if len(gaps) == 1 else "coverage gaps"
        parts.append(
            f"{len(gaps)} {noun}: {first.provider} {first.account} {first.scope}: "
            f"{first.code}: {first.reason}"
        )
    return "incomplete: " + "; ".join(parts or ["the gate is incomplete"])


def empty_run_hint(run: RunInfo) -> str:
    """` (pass --allow-empty ...)` when the run is 3 because nothing was evaluated, else ''."""
    gate = run.gate
    if gate.exit_code == EXIT_INCOMPLETE and gate.nothing_evaluated and not gate.allow_empty:
        return " (pass --allow-empty if an empty run is expected)"
    return ""
