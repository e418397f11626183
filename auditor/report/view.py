"""The view model every human-readable report is drawn from: summaries, control verdicts, policy tables,
residency per region, and changes since a previous run.

Everything here is computed from the typed findings document (plus, optionally, the inventory and the
framework files); policy text and the residency zone come from the document as the run evaluated them,
never from policy files. Templates only lay it out. Values from the cloud stay plain strings:
escaping is the template's job (jinja2 autoescape).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from auditor.document import (
    NOT_RECORDED,
    FindingRecord,
    FindingsDocument,
    GapRecord,
    GateInfo,
    RunInfo,
    WaiverApplied,
    WaiverUse,
    ZoneInfo,
)
from auditor.drift import LaterCoverage, RecordedGap, classify_change, gap_changes
from auditor.findings import Severity, Status
from auditor.frameworks import (
    VERDICTS,
    ControlStatus,
    Framework,
    Verdict,
    available_frameworks,
    control_status,
    load_framework,
)
from auditor.model import StorageResource
from auditor.report.base import ReportInput
from auditor.sources import provider_names, source_labels

STATUSES: tuple[Status, ...] = tuple(Status)
SEVERITIES: tuple[Severity, ...] = tuple(Severity)
PROVIDER_LABELS = source_labels()  # from the source registry (no cloud SDK imported)

ZoneState = Literal["in", "out", "unknown"]

# Passing resources listed per policy in the HTML report; the rest are counted, not listed, so a
# 100,000-finding estate stays a few MB. Every finding is in the findings JSON the report names.
PASS_LIST_LIMIT = 200
EXCERPT_CHARS = 240

_STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.WAIVED: 2, Status.PASS: 3}
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


# --- policy and framework metadata ---------------------------------------------------------------


@dataclass(frozen=True)
class PolicyDetails:
    """A policy as the run evaluated it: its entry of `run.policies`, counts for every status.

    `recorded` is False for documents older than schema 1.2, which hold no description,
    remediation or references: reports then say `NOT_RECORDED`, never what today's files say.
    """

    id: str
    title: str
    severity: Severity
    family: str
    source: str
    controls: dict[str, list[str]]
    counts: dict[Status, int]
    description: str = ""
    expected: str = ""
    remediation: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    recorded: bool = True

    @property
    def total(self) -> int:
        """Number of findings of this policy."""
        return sum(self.counts.values())

    @property
    def not_recorded(self) -> str:
        """What to show instead of the policy's text when the document does not hold it."""
        return NOT_RECORDED


def _source_file(source: str) -> Path:
    path, _, line = source.rpartition(":")
    return Path(path) if line.isdigit() and path else Path(source)


def policy_details(run: RunInfo) -> list[PolicyDetails]:
    """The run's policies, as the document records them (no policy file is read)."""
    return [
        PolicyDetails(
            id=entry.id,
            title=entry.title,
            severity=entry.severity,
            family=entry.family,
            source=entry.source,
            controls=entry.controls,
            counts={s: entry.counts.get(s, 0) for s in STATUSES},
            parameters=entry.parameters,
            description=entry.description or "",
            expected=entry.expected or "",
            remediation=dict(entry.remediation or {}),
            references=list(entry.references or []),
            recorded=entry.details_recorded,
        )
        for entry in run.policies
    ]


@dataclass(frozen=True)
class ControlRow:
    """A framework control with the policies that evidence it, their counts, and the verdict."""

    id: str
    title: str
    description: str
    url: str | None
    policies: list[str]
    counts: dict[str, int]
    status: ControlStatus
    reason: str
    in_catalog: bool = True

    @property
    def verdict(self) -> Verdict:
        """Effective / not effective / not assessed."""
        return self.status.verdict


@dataclass(frozen=True)
class FrameworkView:
    """One framework's control matrix."""

    name: str
    label: str
    title: str
    version: str
    url: str | None
    controls: list[ControlRow]

    @property
    def verdicts(self) -> dict[str, int]:
        """How many controls have each verdict."""
        counted = Counter(c.verdict for c in self.controls)
        return {v: counted.get(v, 0) for v in VERDICTS}


def framework_views(policies: list[PolicyDetails], frameworks: Iterable[Framework]) -> list[FrameworkView]:
    """The control matrix of each framework, catalog order first, then unlisted mappings."""
    views = []
    for catalog in frameworks:
        name = catalog.name
        evidencing: dict[str, list[PolicyDetails]] = defaultdict(list)
        for policy in policies:
            for control in policy.controls.get(name, []):
                evidencing[control].append(policy)
        rows = []
        known = {c.id for c in catalog.controls}
        controls = [(c.id, c.title, c.description, c.url, True) for c in catalog.controls]
        controls += [
            (cid, "(not in the framework catalog)", "", None, False)
            for cid in sorted(evidencing)
            if cid not in known
        ]
        for cid, title, description, url, in_catalog in controls:
            counts = {status.value: 0 for status in STATUSES}
            for policy in evidencing.get(cid, []):
                for status in STATUSES:
                    counts[status.value] += policy.counts.get(status, 0)
            assessed = control_status(counts, policies=len(evidencing.get(cid, [])))
            rows.append(
                ControlRow(
                    id=cid,
                    title=title,
                    description=description,
                    url=url,
                    policies=[p.id for p in evidencing.get(cid, [])],
                    counts=counts,
                    status=assessed.status,
                    reason=assessed.reason,
                    in_catalog=in_catalog,
                )
            )
        views.append(
            FrameworkView(
                name=name,
                label=catalog.label,
                title=catalog.title,
                version=catalog.version,
                url=catalog.url,
                controls=rows,
            )
        )
    return views


def policy_dirs(run: RunInfo) -> list[Path]:
    """The directories of the run's policy files, in the run's order (where its frameworks are)."""
    return list(dict.fromkeys(_source_file(p.source).parent for p in run.policies if p.source))


def report_frameworks(report: ReportInput) -> list[Framework]:
    """The frameworks a report shows: the ones asked for, else every framework file found (the
    run's policy directories first, then the shipped ones). An unknown name is an InputError."""
    dirs = policy_dirs(report.document.run)
    if report.frameworks:
        return [load_framework(name, dirs) for name in report.frameworks]
    return available_frameworks(dirs)


def framework_labels(run: RunInfo) -> dict[str, str]:
    """Name -> label ('SOC 2') of every framework found for the run."""
    return {f.name: f.label for f in available_frameworks(policy_dirs(run))}


# --- findings as table rows ----------------------------------------------------------------------


def display_value(value: Any) -> str:
    """An observed value in words: `unknown (code: reason)` for unreadable ones, else compact JSON."""
    if isinstance(value, dict) and set(value) == {"unknown"} and isinstance(value["unknown"], dict):
        unknown = value["unknown"]
        text = f"unknown ({unknown.get('code')}: {unknown.get('reason')})"
        known = unknown.get("value")
        if unknown.get("partial") == "members":  # the known part still counts (schema 1.1)
            return f"{text}; known to include {orjson.dumps(known).decode()}"
        if unknown.get("partial") == "at_least":
            return f"{text}; at least {known if isinstance(known, str) else orjson.dumps(known).decode()}"
        return text
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """Compact JSON of a raw API answer, cut at `limit` characters."""
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class SourcePlace:
    """Where in a repository an evidence item was declared (infrastructure as code): its
    `location` in the findings JSON (file, optional line and address)."""

    file: str
    line: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where} ({self.address})" if self.address else where

    @property
    def file_line(self) -> str:
        """`file:line` (or the file alone when the line is not known)."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def evidence_place(item: dict[str, Any]) -> SourcePlace | None:
    """The source location of one evidence item of the findings JSON, or None (a live API call)."""
    location = item.get("location")
    if not isinstance(location, dict):
        return None
    file = location.get("file")
    if not isinstance(file, str) or not file:
        return None
    line = location.get("line")
    address = location.get("address")
    return SourcePlace(
        file=file,
        line=line if isinstance(line, int) and not isinstance(line, bool) and line >= 1 else None,
        address=address if isinstance(address, str) and address else None,
    )


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def finding_places(finding: FindingRecord) -> list[SourcePlace]:
    """The distinct source locations of a finding's evidence: those behind the attributes that
    decided it (its `observed` keys) first, then the others, each in evidence order."""
    decisive: list[SourcePlace] = []
    others: list[SourcePlace] = []
    for item in finding.evidence:
        place = evidence_place(item)
        if place is None:
            continue
        attributes = [a for a in item.get("attributes") or () if isinstance(a, str)]
        hit = any(_overlaps(a, path) for a in attributes for path in finding.observed)
        (decisive if hit else others).append(place)
    return list(dict.fromkeys([*decisive, *others]))


@dataclass(frozen=True)
class EvidenceRow:
    """One API call (or one declaration in a file) behind a finding."""

    call: str
    at: str
    answer: str
    error: str | None
    location: str | None = None  # `file:line (address)` of a declaration (infrastructure as code)


@dataclass(frozen=True)
class FindingView:
    """A finding laid out for a table."""

    policy_id: str
    status: Status
    underlying_status: Status
    severity: Severity
    provider: str
    account: str
    resource_id: str
    name: str
    kind: str
    regions: list[str]
    message: str
    observed: list[tuple[str, str]]
    expected: str
    evidence: list[EvidenceRow]
    waiver: WaiverApplied | None
    reasons: list[str]
    baselined: bool = False

    @property
    def waiver_expired(self) -> bool:
        """A waiver matched but had expired, so it did not waive."""
        return bool(self.waiver and self.waiver.expired)


def finding_view(finding: FindingRecord) -> FindingView:
    """The table row of one finding of the document."""
    resource = finding.resource
    # reasons repeat what an unknown observed value already says; keep only the others
    shown_unknown = {k for k, v in finding.observed.items() if isinstance(v, dict) and "unknown" in v}
    return FindingView(
        policy_id=finding.policy_id,
        status=finding.status,
        underlying_status=finding.underlying_status,
        severity=finding.severity,
        provider=resource.provider,
        account=resource.account,
        resource_id=resource.id,
        name=resource.name,
        kind=resource.kind,
        regions=list(resource.regions),
        message=finding.message,
        observed=[(k, display_value(v)) for k, v in finding.observed.items()],
        expected=finding.expected,
        evidence=[
            EvidenceRow(
                call=str(e.get("call", "")),
                at=str(e.get("at", "")),
                answer=excerpt(e.get("response")) if e.get("response") is not None else "",
                error=e.get("error"),
                location=str(place) if (place := evidence_place(e)) is not None else None,
            )
            for e in finding.evidence
        ],
        waiver=finding.waiver,
        reasons=[r for r in finding.reasons if r.partition(":")[0] not in shown_unknown],
        baselined=finding.baselined,
    )


def finding_sort_key(finding: FindingRecord) -> tuple[Any, ...]:
    """Worst first: status, then severity, then provider / account / name."""
    resource = finding.resource
    return (
        _STATUS_ORDER.get(finding.status, 9),
        _SEVERITY_ORDER.get(finding.severity, 9),
        resource.provider,
        resource.account,
        resource.name,
    )


@dataclass
class PolicyView:
    """One policy's section: metadata, every non-passing finding, and a capped list of passing ones."""

    details: PolicyDetails
    non_pass: list[FindingView] = field(default_factory=list)
    passing: list[FindingView] = field(default_factory=list)
    pass_total: int = 0

    @property
    def pass_hidden(self) -> int:
        """Passing findings counted but not listed."""
        return self.pass_total - len(self.passing)


# --- residency -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionBar:
    """Resources holding data in one region of one cloud, and whether the region is inside the zone."""

    provider: str
    region: str
    resources: int
    state: ZoneState
    primary: int | None = None
    replica: int | None = None


@dataclass
class ProviderResidency:
    """Per cloud: regions holding data, and resources wholly inside / partly outside the zone."""

    provider: str
    label: str
    regions: list[RegionBar]
    inside: int = 0
    outside: int = 0
    unknown: int = 0


@dataclass(frozen=True)
class KeyLocation:
    """Customer-managed keys per region (from the inventory)."""

    provider: str
    region: str
    keys: int
    state: ZoneState


def _zone_state(zone: ZoneInfo | None, provider: str, region: str) -> ZoneState:
    if zone is None or provider not in provider_names():
        return "unknown"
    state = zone.state(provider, region)
    return "in" if state == "in" else "out" if state == "out" else "unknown"


# --- changes since a previous run ----------------------------------------------------------------


@dataclass(frozen=True)
class ChangeView:
    """A finding whose status moved between the previous run and this one."""

    policy_id: str
    severity: Severity
    provider: str
    account: str
    name: str
    resource_id: str
    before: str
    after: str
    gap: RecordedGap | None = None  # not assessed: the coverage gap of this run that hid it


@dataclass
class Changes:
    """What changed since the previous run, matched by policy id and resource id.

    `not_assessed`: failures of the previous run whose resource lies under a coverage gap of this
    run (never counted as fixed); `new_gaps`/`closed_gaps`: coverage gaps opened and closed since.
    """

    previous_id: str
    previous_started_at: str
    new_failures: list[ChangeView] = field(default_factory=list)
    fixed: list[ChangeView] = field(default_factory=list)
    still_failing: list[ChangeView] = field(default_factory=list)
    newly_unknown: list[ChangeView] = field(default_factory=list)
    not_assessed: list[ChangeView] = field(default_factory=list)
    new_gaps: list[RecordedGap] = field(default_factory=list)
    closed_gaps: list[RecordedGap] = field(default_factory=list)


def _change(finding: FindingRecord, before: str, after: str, gap: RecordedGap | None = None) -> ChangeView:
    resource = finding.resource
    return ChangeView(
        policy_id=finding.policy_id,
        severity=finding.severity,
        provider=resource.provider,
        account=resource.account,
        name=resource.name,
        resource_id=resource.id,
        before=before,
        after=after,
        gap=gap,
    )


def compare_runs(current: FindingsDocument, previous: FindingsDocument) -> Changes:
    """New failures, fixed (now pass, or no longer reported by a run that could see the resource),
    still failing, newly unknown, not assessed (no longer reported because the resource lies under
    a coverage gap of this run), and the coverage gaps opened and closed since."""
    before: dict[tuple[str, str], FindingRecord] = {f.key: f for f in previous.findings}
    changes = Changes(previous_id=previous.run.id, previous_started_at=previous.run.started_at)
    seen: set[tuple[str, str]] = set()
    sections = {
        "new_failures": changes.new_failures,
        "fixed": changes.fixed,
        "still_failing": changes.still_failing,
        "newly_unknown": changes.newly_unknown,
    }
    for finding in current.findings:
        key = finding.key
        seen.add(key)
        old = before.get(key)
        was = old.status.value if old else None
        section = classify_change(was, finding.status.value)
        if section in sections:
            sections[section].append(_change(finding, was or "absent", finding.status.value))
    coverage = LaterCoverage(
        current.coverage_gaps(),
        seen_accounts=current.seen_accounts(),
        known_accounts=previous.seen_accounts(),
    )
    for key, old in before.items():
        if key in seen:
            continue
        resource = old.resource
        gap = coverage.gap_over(resource.provider, resource.account, resource.regions)
        section = classify_change(old.status.value, None, assessed=gap is None)
        if section == "fixed":
            changes.fixed.append(_change(old, old.status.value, "no longer reported"))
        elif section == "not_assessed":
            changes.not_assessed.append(_change(old, old.status.value, "not assessed (coverage gap)", gap))
    for bucket in (
        changes.new_failures,
        changes.fixed,
        changes.still_failing,
        changes.newly_unknown,
        changes.not_assessed,
    ):
        bucket.sort(key=lambda c: (_SEVERITY_ORDER.get(c.severity, 9), c.policy_id, c.provider, c.name))
    changes.new_gaps, changes.closed_gaps = gap_changes(previous.coverage_gaps(), current.coverage_gaps())
    return changes


# --- the whole view ------------------------------------------------------------------------------


@dataclass
class Summary:
    """The executive summary's figures."""

    overall: Literal["compliant", "not compliant", "incomplete"]
    overall_reason: str
    findings: int
    by_status: dict[Status, int]
    by_severity: list[tuple[Severity, dict[Status, int]]]
    resources: int
    providers: list[tuple[str, str, int, list[str], int]]  # provider, label, resources, accounts, regions
    gaps: list[GapRecord]
    unknown_attributes: list[tuple[str, str]]
    waivers: list[WaiverUse]
    started_at: str
    finished_at: str
    duration: str
    tool: str
    inventory: str
    parameters: dict[str, Any]
    gate: GateInfo


def _duration(start: str, end: str) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "unknown"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def summarise(run: RunInfo) -> Summary:
    """The executive summary of a run."""
    counts = run.counts.by_status
    coverage = run.coverage
    gaps = coverage.gaps
    fail, error = counts.get(Status.FAIL, 0), counts.get(Status.ERROR, 0)
    overall: Literal["compliant", "not compliant", "incomplete"]
    if fail:
        overall, reason = "not compliant", f"{fail} finding(s) fail a policy"
    elif error or gaps:
        overall = "incomplete"
        reason = (
            f"{error} finding(s) could not be decided and {len(gaps)} part(s) of the estate were not scanned"
        )
    else:
        overall, reason = "compliant", "every finding passes or is waived"
    accounts: dict[str, list[str]] = defaultdict(list)
    for entry in coverage.accounts:
        accounts[entry.provider].append(entry.account)
    regions: Counter[str] = Counter(key.partition(":")[0] for key in coverage.regions)
    providers = [
        (p, PROVIDER_LABELS.get(p, p), n, sorted(accounts.get(p, [])), regions.get(p, 0))
        for p, n in coverage.resources_by_provider.items()
    ]
    unknown = [
        (path, ", ".join(f"{code}: {n}" for code, n in codes.items()))
        for path, codes in coverage.unknown_attributes.items()
    ]
    by_severity = [
        (sev, {s: run.counts.by_severity[sev].get(s, 0) for s in STATUSES})
        for sev in SEVERITIES
        if sev in run.counts.by_severity
    ]
    return Summary(
        overall=overall,
        overall_reason=reason,
        findings=run.counts.findings,
        by_status={s: counts.get(s, 0) for s in STATUSES},
        by_severity=by_severity,
        resources=coverage.resources,
        providers=providers,
        gaps=gaps,
        unknown_attributes=unknown,
        waivers=run.waivers.entries,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration=_duration(run.started_at, run.finished_at),
        tool=f"{run.tool.name} {run.tool.version}",
        inventory=run.inventory,
        parameters=run.parameters,
        gate=run.gate,
    )


@dataclass
class ReportView:
    """Everything a human-readable report shows."""

    run: RunInfo
    summary: Summary
    policies: list[PolicyView]
    frameworks: list[FrameworkView]
    families: list[tuple[str, dict[Status, int]]]
    zone: str | None
    zone_title: str | None
    residency: list[ProviderResidency]
    key_locations: list[KeyLocation]
    changes: Changes | None
    inventory_used: bool


def _residency(
    findings: list[FindingRecord],
    run: RunInfo,
    zone: ZoneInfo | None,
    inventory: list[StorageResource] | None,
) -> tuple[list[ProviderResidency], list[KeyLocation]]:
    primary: Counter[tuple[str, str]] = Counter()
    replica: Counter[tuple[str, str]] = Counter()
    keys: Counter[tuple[str, str]] = Counter()
    if inventory is not None:
        for res in inventory:
            if res.location is not None:
                if res.location.primary:
                    primary[(res.provider, res.location.primary)] += 1
                for region in set(res.location.regions) - {res.location.primary}:
                    replica[(res.provider, region)] += 1
            enc = res.encryption
            if enc is not None and enc.key_management == "customer-managed" and enc.key_location:
                keys[(res.provider, enc.key_location)] += 1
    views: dict[str, ProviderResidency] = {}
    for key, count in run.coverage.regions.items():
        provider, _, region = key.partition(":")
        view = views.setdefault(
            provider, ProviderResidency(provider, PROVIDER_LABELS.get(provider, provider), [])
        )
        view.regions.append(
            RegionBar(
                provider=provider,
                region=region,
                resources=count,
                state=_zone_state(zone, provider, region),
                primary=primary.get((provider, region), 0) if inventory is not None else None,
                replica=replica.get((provider, region), 0) if inventory is not None else None,
            )
        )
    seen: set[str] = set()
    for finding in findings:
        resource = finding.resource
        if resource.id in seen:
            continue
        seen.add(resource.id)
        provider = resource.provider
        view = views.setdefault(
            provider, ProviderResidency(provider, PROVIDER_LABELS.get(provider, provider), [])
        )
        states = {_zone_state(zone, provider, r) for r in resource.regions}
        if not states or ("unknown" in states and "out" not in states):
            view.unknown += 1
        elif "out" in states:
            view.outside += 1
        else:
            view.inside += 1
    order: dict[str, int] = {p: i for i, p in enumerate(provider_names())}
    for view in views.values():
        view.regions.sort(key=lambda r: ({"in": 0, "out": 1, "unknown": 2}[r.state], -r.resources, r.region))
    key_rows = [KeyLocation(p, r, n, _zone_state(zone, p, r)) for (p, r), n in sorted(keys.items())]
    return sorted(views.values(), key=lambda v: order.get(v.provider, 9)), key_rows


def read_inventory_resources(path: Path) -> list[StorageResource]:
    """The resources of an inventory JSONL (coverage gaps are already in the findings document)."""
    from auditor.inventory import read_inventory

    return [r for r in read_inventory(path) if isinstance(r, StorageResource)]


def build_view(report: ReportInput, *, pass_limit: int = PASS_LIST_LIMIT) -> ReportView:
    """The view model of `report`: one pass over the findings."""
    doc = report.document
    run = doc.run
    details = policy_details(run)
    views = {d.id: PolicyView(d) for d in details}
    for finding in doc.findings:
        view = views.get(finding.policy_id)
        if view is None:  # a finding of a policy the run does not list: show it anyway
            view = views[finding.policy_id] = PolicyView(
                PolicyDetails(
                    id=finding.policy_id,
                    title=finding.policy_id,
                    severity=finding.severity,
                    family=finding.policy_id.partition(".")[0],
                    source="",
                    controls=finding.controls,
                    counts=dict.fromkeys(STATUSES, 0),
                    recorded=False,
                )
            )
        if finding.status is Status.PASS:
            view.pass_total += 1
            if len(view.passing) < pass_limit:
                view.passing.append(finding_view(finding))
        else:
            view.non_pass.append(finding_view(finding))
    for view in views.values():
        view.non_pass.sort(
            key=lambda r: (_STATUS_ORDER.get(r.status, 9), r.provider, r.account, r.name, r.resource_id)
        )
        view.passing.sort(key=lambda r: (r.provider, r.account, r.name))
    families: dict[str, dict[Status, int]] = {}
    for d in details:
        family = families.setdefault(d.family, dict.fromkeys(STATUSES, 0))
        for status in STATUSES:
            family[status] += d.counts.get(status, 0)
    zone = run.zone_name
    zone_info = run.zone if run.zone is not None and run.zone.id == zone else None
    inventory = read_inventory_resources(report.inventory_path) if report.inventory_path else None
    residency, key_locations = _residency(doc.findings, run, zone_info, inventory)
    return ReportView(
        run=run,
        summary=summarise(run),
        policies=list(views.values()),
        frameworks=framework_views(details, report_frameworks(report)),
        families=sorted(families.items()),
        zone=zone,
        zone_title=zone_info.title if zone_info is not None else None,
        residency=residency,
        key_locations=key_locations,
        changes=compare_runs(doc, report.previous) if report.previous is not None else None,
        inventory_used=inventory is not None,
    )
