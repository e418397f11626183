"""The view model every human-readable report is drawn from: summaries, control verdicts, policy tables,
residency per region, and changes since a previous run.

Everything here is computed from the findings document (plus, optionally, the inventory and the policy
and framework files the run names); templates only lay it out. Values from the cloud stay plain strings:
escaping is the template's job (jinja2 autoescape).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from auditor.drift import CoverageGap, classify_change, document_coverage, document_gaps, gap_changes
from auditor.errors import InputError
from auditor.model import PROVIDERS, StorageResource
from auditor.policy.loader import load_policies, load_zones, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.report.base import ReportInput

STATUSES: tuple[str, ...] = ("pass", "fail", "error", "waived")
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")
FRAMEWORKS: tuple[str, ...] = ("gdpr", "soc2", "iso27001")
FRAMEWORK_LABELS = {"gdpr": "GDPR", "soc2": "SOC 2", "iso27001": "ISO/IEC 27001:2022"}
PROVIDER_LABELS = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Azure"}

Verdict = Literal["effective", "not effective", "not assessed"]
ZoneState = Literal["in", "out", "unknown"]

# Passing resources listed per policy in the HTML report; the rest are counted, not listed, so a
# 100,000-finding estate stays a few MB. Every finding is in the findings JSON the report names.
PASS_LIST_LIMIT = 200
EXCERPT_CHARS = 240

_STATUS_ORDER = {"fail": 0, "error": 1, "waived": 2, "pass": 3}
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


# --- policy and framework metadata ---------------------------------------------------------------


@dataclass(frozen=True)
class PolicyDetails:
    """A policy as the run recorded it, with the description and remediation from its YAML file."""

    id: str
    title: str
    severity: str
    family: str
    source: str
    controls: dict[str, list[str]]
    counts: dict[str, int]
    description: str = ""
    expected: str = ""
    remediation: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Number of findings of this policy."""
        return sum(self.counts.values())


def _source_file(source: str) -> Path:
    path, _, line = source.rpartition(":")
    return Path(path) if line.isdigit() and path else Path(source)


@cache
def _policies_in(path: Path) -> dict[str, Any]:
    try:
        return {loaded.policy.id: loaded.policy for loaded in load_policies([path])}
    except (InputError, OSError):
        return {}


def policy_details(run: dict[str, Any]) -> list[PolicyDetails]:
    """The run's policies, with metadata from the file each came from (else the shipped policies)."""
    shipped = _policies_in(shipped_policies_dir())
    details = []
    for entry in run["policies"]:
        source = _source_file(entry["source"])
        meta = (_policies_in(source) if source.is_file() else {}).get(entry["id"]) or shipped.get(entry["id"])
        details.append(
            PolicyDetails(
                id=entry["id"],
                title=entry["title"],
                severity=entry["severity"],
                family=entry["family"],
                source=entry["source"],
                controls=entry["controls"],
                counts={s: entry["counts"].get(s, 0) for s in STATUSES},
                parameters=entry.get("parameters") or {},
                description=meta.description if meta else "",
                expected=(meta.expected or "") if meta else "",
                remediation=dict(meta.remediation) if meta else {},
                references=list(meta.references) if meta else [],
            )
        )
    return details


class FrameworkControl(BaseModel):
    """One control (article, criterion, Annex A control) of a framework catalog."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    description: str = ""
    url: str | None = None


class FrameworkCatalog(BaseModel):
    """policies/frameworks/<name>.yaml: a framework's controls, in reading order."""

    model_config = ConfigDict(extra="forbid")
    framework: str
    title: str
    version: str = ""
    url: str | None = None
    controls: list[FrameworkControl]


@cache
def load_framework(name: str, directory: Path | None = None) -> FrameworkCatalog:
    """The control catalog of framework `name` (shipped unless `directory` is given)."""
    path = (directory or shipped_policies_dir() / "frameworks") / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return FrameworkCatalog.model_validate(data)
    except OSError:
        return FrameworkCatalog(framework=name, title=FRAMEWORK_LABELS.get(name, name), controls=[])
    except (yaml.YAMLError, ValidationError) as exc:
        raise InputError(str(path), f"invalid framework catalog: {exc}") from exc


@dataclass(frozen=True)
class ControlRow:
    """A framework control with the policies that evidence it, their counts, and the verdict."""

    id: str
    title: str
    description: str
    url: str | None
    policies: list[str]
    counts: dict[str, int]
    verdict: Verdict
    reason: str
    in_catalog: bool = True


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
        return {v: counted.get(v, 0) for v in ("effective", "not effective", "not assessed")}


def control_verdict(counts: dict[str, int], policies: int) -> tuple[Verdict, str]:
    """Effective / not effective / not assessed, with the reason in words.

    A failing finding is conclusive; otherwise any `error` leaves the control undecided, because an
    unreadable resource may be the one that fails. Waived findings are accepted exceptions.
    """
    if policies == 0:
        return "not assessed", "no policy evidences this control"
    if counts.get("fail", 0):
        return "not effective", f"{counts['fail']} failing finding(s)"
    if counts.get("error", 0):
        return "not assessed", f"{counts['error']} finding(s) could not be decided (errors)"
    passed, waived = counts.get("pass", 0), counts.get("waived", 0)
    if passed + waived == 0:
        return "not assessed", "no resource in scope of its policies"
    if waived:
        return "effective", f"{passed} pass, {waived} waived (accepted exceptions)"
    return "effective", f"all {passed} finding(s) pass"


def framework_views(policies: list[PolicyDetails], names: Iterable[str]) -> list[FrameworkView]:
    """The control matrix of each framework in `names`, catalog order first, then unlisted mappings."""
    views = []
    for name in names:
        catalog = load_framework(name)
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
            counts = dict.fromkeys(STATUSES, 0)
            for policy in evidencing.get(cid, []):
                for status in STATUSES:
                    counts[status] += policy.counts.get(status, 0)
            verdict, reason = control_verdict(counts, len(evidencing.get(cid, [])))
            rows.append(
                ControlRow(
                    id=cid,
                    title=title,
                    description=description,
                    url=url,
                    policies=[p.id for p in evidencing.get(cid, [])],
                    counts=counts,
                    verdict=verdict,
                    reason=reason,
                    in_catalog=in_catalog,
                )
            )
        views.append(
            FrameworkView(
                name=name,
                label=FRAMEWORK_LABELS.get(name, name),
                title=catalog.title,
                version=catalog.version,
                url=catalog.url,
                controls=rows,
            )
        )
    return views


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
class EvidenceRow:
    """One API call behind a finding."""

    call: str
    at: str
    answer: str
    error: str | None


@dataclass(frozen=True)
class FindingRow:
    """A finding laid out for a table."""

    policy_id: str
    status: str
    underlying_status: str
    severity: str
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
    waiver: dict[str, Any] | None
    reasons: list[str]
    baselined: bool = False

    @property
    def waiver_expired(self) -> bool:
        """A waiver matched but had expired, so it did not waive."""
        return bool(self.waiver and self.waiver.get("expired"))


def finding_row(finding: dict[str, Any]) -> FindingRow:
    """The table row of one finding of the document."""
    resource = finding["resource"]
    # reasons repeat what an unknown observed value already says; keep only the others
    shown_unknown = {k for k, v in finding["observed"].items() if isinstance(v, dict) and "unknown" in v}
    return FindingRow(
        policy_id=finding["policy_id"],
        status=finding["status"],
        underlying_status=finding["underlying_status"],
        severity=finding["severity"],
        provider=resource["provider"],
        account=resource["account"],
        resource_id=resource["id"],
        name=resource["name"],
        kind=resource.get("kind", ""),
        regions=list(resource.get("regions") or []),
        message=finding["message"],
        observed=[(k, display_value(v)) for k, v in finding["observed"].items()],
        expected=finding["expected"],
        evidence=[
            EvidenceRow(
                call=str(e.get("call", "")),
                at=str(e.get("at", "")),
                answer=excerpt(e.get("response")) if e.get("response") is not None else "",
                error=e.get("error"),
            )
            for e in finding["evidence"]
        ],
        waiver=finding.get("waiver"),
        reasons=[r for r in finding.get("reasons") or [] if r.partition(":")[0] not in shown_unknown],
        baselined=bool(finding.get("baselined")),
    )


def finding_sort_key(finding: dict[str, Any]) -> tuple[Any, ...]:
    """Worst first: status, then severity, then provider / account / name."""
    resource = finding["resource"]
    return (
        _STATUS_ORDER.get(finding["status"], 9),
        _SEVERITY_ORDER.get(finding["severity"], 9),
        resource["provider"],
        resource["account"],
        resource["name"],
    )


@dataclass
class PolicyView:
    """One policy's section: metadata, every non-passing finding, and a capped list of passing ones."""

    details: PolicyDetails
    non_pass: list[FindingRow] = field(default_factory=list)
    passing: list[FindingRow] = field(default_factory=list)
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
    zones: list[str]
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


def _zone_state(catalog: ZoneCatalog | None, zone: str | None, provider: str, region: str) -> ZoneState:
    if catalog is None or zone is None or zone not in catalog.zones or provider not in PROVIDERS:
        return "unknown"
    if region.lower() in catalog.regions_in_zone(zone, provider):
        return "in"
    return "out" if catalog.country_of(provider, region) is not None else "unknown"


def _zones_of(catalog: ZoneCatalog | None, provider: str, region: str) -> list[str]:
    if catalog is None or provider not in PROVIDERS:
        return []
    return catalog.zones_of(provider, region)


# --- changes since a previous run ----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A finding whose status moved between the previous run and this one."""

    policy_id: str
    severity: str
    provider: str
    account: str
    name: str
    resource_id: str
    before: str
    after: str
    gap: CoverageGap | None = None  # not assessed: the coverage gap of this run that hid it


@dataclass
class Changes:
    """What changed since the previous run, matched by policy id and resource id.

    `not_assessed`: failures of the previous run whose resource lies under a coverage gap of this
    run (never counted as fixed); `new_gaps`/`closed_gaps`: coverage gaps opened and closed since.
    """

    previous_id: str
    previous_started_at: str
    new_failures: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    still_failing: list[Change] = field(default_factory=list)
    newly_unknown: list[Change] = field(default_factory=list)
    not_assessed: list[Change] = field(default_factory=list)
    new_gaps: list[CoverageGap] = field(default_factory=list)
    closed_gaps: list[CoverageGap] = field(default_factory=list)


def _change(finding: dict[str, Any], before: str, after: str, gap: CoverageGap | None = None) -> Change:
    resource = finding["resource"]
    return Change(
        policy_id=finding["policy_id"],
        severity=finding["severity"],
        provider=resource["provider"],
        account=resource["account"],
        name=resource["name"],
        resource_id=resource["id"],
        before=before,
        after=after,
        gap=gap,
    )


def compare_runs(current: dict[str, Any], previous: dict[str, Any]) -> Changes:
    """New failures, fixed (now pass, or no longer reported by a run that could see the resource),
    still failing, newly unknown, not assessed (no longer reported because the resource lies under
    a coverage gap of this run), and the coverage gaps opened and closed since."""
    before: dict[tuple[str, str], dict[str, Any]] = {
        (f["policy_id"], f["resource"]["id"]): f for f in previous["findings"]
    }
    changes = Changes(previous_id=previous["run"]["id"], previous_started_at=previous["run"]["started_at"])
    seen: set[tuple[str, str]] = set()
    sections = {
        "new_failures": changes.new_failures,
        "fixed": changes.fixed,
        "still_failing": changes.still_failing,
        "newly_unknown": changes.newly_unknown,
    }
    for finding in current["findings"]:
        key = (finding["policy_id"], finding["resource"]["id"])
        seen.add(key)
        old = before.get(key)
        was = old["status"] if old else None
        section = classify_change(was, finding["status"])
        if section in sections:
            sections[section].append(_change(finding, was or "absent", finding["status"]))
    coverage = document_coverage(previous, current)
    for key, old in before.items():
        if key in seen:
            continue
        resource = old["resource"]
        gap = coverage.gap_over(resource["provider"], resource["account"], resource.get("regions"))
        section = classify_change(old["status"], None, assessed=gap is None)
        if section == "fixed":
            changes.fixed.append(_change(old, old["status"], "no longer reported"))
        elif section == "not_assessed":
            changes.not_assessed.append(_change(old, old["status"], "not assessed (coverage gap)", gap))
    for bucket in (
        changes.new_failures,
        changes.fixed,
        changes.still_failing,
        changes.newly_unknown,
        changes.not_assessed,
    ):
        bucket.sort(key=lambda c: (_SEVERITY_ORDER.get(c.severity, 9), c.policy_id, c.provider, c.name))
    changes.new_gaps, changes.closed_gaps = gap_changes(document_gaps(previous), document_gaps(current))
    return changes


# --- the whole view ------------------------------------------------------------------------------


@dataclass
class Summary:
    """The executive summary's figures."""

    overall: Literal["compliant", "not compliant", "incomplete"]
    overall_reason: str
    findings: int
    by_status: dict[str, int]
    by_severity: list[tuple[str, dict[str, int]]]
    resources: int
    providers: list[tuple[str, str, int, list[str], int]]  # provider, label, resources, accounts, regions
    gaps: list[dict[str, Any]]
    unknown_attributes: list[tuple[str, str]]
    waivers: list[dict[str, Any]]
    started_at: str
    finished_at: str
    duration: str
    tool: str
    inventory: str
    parameters: dict[str, Any]
    gate: dict[str, Any]


def _duration(start: str, end: str) -> str:
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "unknown"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def summarise(run: dict[str, Any]) -> Summary:
    """The executive summary of a run object."""
    counts = run["counts"]["by_status"]
    gaps = run["coverage"]["gaps"]
    fail, error = counts.get("fail", 0), counts.get("error", 0)
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
    coverage = run["coverage"]
    accounts: dict[str, list[str]] = defaultdict(list)
    for entry in coverage["accounts"]:
        accounts[entry["provider"]].append(entry["account"])
    regions: Counter[str] = Counter(key.partition(":")[0] for key in coverage["regions"])
    providers = [
        (p, PROVIDER_LABELS.get(p, p), n, sorted(accounts.get(p, [])), regions.get(p, 0))
        for p, n in coverage["resources_by_provider"].items()
    ]
    unknown = [
        (path, ", ".join(f"{code}: {n}" for code, n in codes.items()))
        for path, codes in coverage["unknown_attributes"].items()
    ]
    by_severity = [
        (sev, {s: run["counts"]["by_severity"][sev].get(s, 0) for s in STATUSES})
        for sev in SEVERITIES
        if sev in run["counts"]["by_severity"]
    ]
    return Summary(
        overall=overall,
        overall_reason=reason,
        findings=run["counts"]["findings"],
        by_status={s: counts.get(s, 0) for s in STATUSES},
        by_severity=by_severity,
        resources=coverage["resources"],
        providers=providers,
        gaps=gaps,
        unknown_attributes=unknown,
        waivers=run["waivers"]["entries"],
        started_at=run["started_at"],
        finished_at=run["finished_at"],
        duration=_duration(run["started_at"], run["finished_at"]),
        tool=f"{run['tool']['name']} {run['tool']['version']}",
        inventory=run["inventory"],
        parameters=run["parameters"],
        gate=run["gate"],
    )


@dataclass
class ReportView:
    """Everything a human-readable report shows."""

    run: dict[str, Any]
    summary: Summary
    policies: list[PolicyView]
    frameworks: list[FrameworkView]
    families: list[tuple[str, dict[str, int]]]
    zone: str | None
    zone_title: str | None
    residency: list[ProviderResidency]
    key_locations: list[KeyLocation]
    changes: Changes | None
    inventory_used: bool


def _zone_of_run(run: dict[str, Any]) -> str | None:
    zone = run["parameters"].get("zone")
    if isinstance(zone, str):
        return zone
    for policy in run["policies"]:
        value = (policy.get("parameters") or {}).get("zone")
        if isinstance(value, str):
            return value
    return None


def _zone_catalog(run: dict[str, Any]) -> ZoneCatalog | None:
    dirs = {_source_file(p["source"]).parent for p in run["policies"]}
    try:
        return load_zones(sorted(d for d in dirs if d.is_dir()))
    except InputError:
        return None


def _residency(
    findings: list[dict[str, Any]],
    run: dict[str, Any],
    catalog: ZoneCatalog | None,
    zone: str | None,
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
    for key, count in run["coverage"]["regions"].items():
        provider, _, region = key.partition(":")
        view = views.setdefault(
            provider, ProviderResidency(provider, PROVIDER_LABELS.get(provider, provider), [])
        )
        view.regions.append(
            RegionBar(
                provider=provider,
                region=region,
                resources=count,
                state=_zone_state(catalog, zone, provider, region),
                zones=_zones_of(catalog, provider, region),
                primary=primary.get((provider, region), 0) if inventory is not None else None,
                replica=replica.get((provider, region), 0) if inventory is not None else None,
            )
        )
    seen: set[str] = set()
    for finding in findings:
        resource = finding["resource"]
        if resource["id"] in seen:
            continue
        seen.add(resource["id"])
        provider = resource["provider"]
        view = views.setdefault(
            provider, ProviderResidency(provider, PROVIDER_LABELS.get(provider, provider), [])
        )
        states = {_zone_state(catalog, zone, provider, r) for r in resource.get("regions") or []}
        if not states or ("unknown" in states and "out" not in states):
            view.unknown += 1
        elif "out" in states:
            view.outside += 1
        else:
            view.inside += 1
    order: dict[str, int] = {p: i for i, p in enumerate(PROVIDERS)}
    for view in views.values():
        view.regions.sort(key=lambda r: ({"in": 0, "out": 1, "unknown": 2}[r.state], -r.resources, r.region))
    key_rows = [KeyLocation(p, r, n, _zone_state(catalog, zone, p, r)) for (p, r), n in sorted(keys.items())]
    return sorted(views.values(), key=lambda v: order.get(v.provider, 9)), key_rows


def read_inventory_resources(path: Path) -> list[StorageResource]:
    """The resources of an inventory JSONL (coverage gaps are already in the findings document)."""
    from auditor.inventory import read_inventory

    return [r for r in read_inventory(path) if isinstance(r, StorageResource)]


def build_view(report: ReportInput, *, pass_limit: int = PASS_LIST_LIMIT) -> ReportView:
    """The view model of `report`: one pass over the findings."""
    doc = report.findings
    run = doc["run"]
    details = policy_details(run)
    views = {d.id: PolicyView(d) for d in details}
    for finding in doc["findings"]:
        view = views.get(finding["policy_id"])
        if view is None:  # a finding of a policy the run does not list: show it anyway
            view = views[finding["policy_id"]] = PolicyView(
                PolicyDetails(
                    id=finding["policy_id"],
                    title=finding["policy_id"],
                    severity=finding["severity"],
                    family=finding["policy_id"].partition(".")[0],
                    source="",
                    controls=finding["controls"],
                    counts=dict.fromkeys(STATUSES, 0),
                )
            )
        if finding["status"] == "pass":
            view.pass_total += 1
            if len(view.passing) < pass_limit:
                view.passing.append(finding_row(finding))
        else:
            view.non_pass.append(finding_row(finding))
    for view in views.values():
        view.non_pass.sort(
            key=lambda r: (_STATUS_ORDER.get(r.status, 9), r.provider, r.account, r.name, r.resource_id)
        )
        view.passing.sort(key=lambda r: (r.provider, r.account, r.name))
    families: dict[str, dict[str, int]] = {}
    for d in details:
        family = families.setdefault(d.family, dict.fromkeys(STATUSES, 0))
        for status in STATUSES:
            family[status] += d.counts.get(status, 0)
    zone = _zone_of_run(run)
    catalog = _zone_catalog(run)
    inventory = read_inventory_resources(report.inventory_path) if report.inventory_path else None
    residency, key_locations = _residency(doc["findings"], run, catalog, zone, inventory)
    zone_title = catalog.zones[zone].title if catalog and zone and zone in catalog.zones else None
    return ReportView(
        run=run,
        summary=summarise(run),
        policies=list(views.values()),
        frameworks=framework_views(details, report.frameworks or FRAMEWORKS),
        families=sorted(families.items()),
        zone=zone,
        zone_title=zone_title,
        residency=residency,
        key_locations=key_locations,
        changes=compare_runs(doc, report.previous) if report.previous is not None else None,
        inventory_used=inventory is not None,
    )
