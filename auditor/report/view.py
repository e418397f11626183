"""The view model every human-readable report is drawn from: summaries, control verdicts, policy tables,
residency per region, and changes since a previous run.

Everything here is computed from the typed findings document (plus, optionally, the inventory and the
framework files); policy text and the residency zone come from the document as the run evaluated them,
never from policy files. Templates only lay it out. Values from the cloud stay plain strings:
escaping is the template's job (jinja2 autoescape).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson
from pydantic import ValidationError

from auditor.document import (
    NOT_RECORDED,
    FindingRecord,
    FindingsDocument,
    GapRecord,
    GateInfo,
    ResourceInfo,
    RunInfo,
    TrainingInfo,
    WaiverApplied,
    WaiverUse,
    ZoneInfo,
)
from auditor.drift import LaterCoverage, RecordedGap, StatusTable, classify_change, gap_changes, key_digest
from auditor.errors import InputError
from auditor.findings import OWNER_TAG, Severity, Status
from auditor.frameworks import (
    VERDICTS,
    ControlStatus,
    Framework,
    Verdict,
    available_frameworks,
    control_status,
    default_frameworks,
    load_framework,
)
from auditor.model import (
    AI_KINDS,
    ANY_REGION,
    INACTIVE_STATES,
    KIND_GROUPS,
    StorageResource,
    UnknownCode,
    normalize_tag_key,
)
from auditor.policy.loader import shipped_root
from auditor.report.base import ReportInput
from auditor.report.evidence import Excerpt, is_absent
from auditor.report.evidence import excerpt as answer_excerpt
from auditor.report.previous import FindingFacts, PreviousRun
from auditor.report.undecided import UNKNOWN_ACTIONS, UndecidedAction, undecided_actions
from auditor.sources import provider_names, source_labels

STATUSES: tuple[Status, ...] = tuple(Status)
SEVERITIES: tuple[Severity, ...] = tuple(Severity)
PROVIDER_LABELS = source_labels()  # from the source registry (no cloud SDK imported)

ZoneState = Literal["in", "out", "unknown"]

# Passing resources listed with their evidence per policy in the HTML report; every passing resource
# is also listed compactly (name and regions, by account: `PolicyView.population`), so print and PDF
# hold the whole population. Every finding's evidence is in the findings JSON the report names.
PASS_LIST_LIMIT = 200
EXCERPT_CHARS = 240
# Resources named per fix in the fix-first list (the rest are counted; every one is in its policy's
# section).
FIX_NAMES_SHOWN = 8
# Rows the HTML report lists per section of the changes since the previous run (most severe first;
# every change is counted).
CHANGES_SHOWN = 200

_STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.WAIVED: 2, Status.PASS: 3}
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def status_rank(status: Status) -> int:
    """Where a status sorts in reports: fail, error, waived, pass."""
    return _STATUS_ORDER.get(status, 9)


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
    """The run's policies, as the document records them (no policy file is read), most severe
    first (then by id)."""
    details = [
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
    return sorted(details, key=lambda d: (_SEVERITY_ORDER.get(d.severity, 9), d.id))


def shown_path(text: str) -> str:
    """A path (optionally `path:line`) as reports show it: relative to the working directory, or
    `shipped: ...` inside auditor's shipped data (never an absolute path into a virtual
    environment); a path elsewhere, or a relative one, as it is."""
    path, _, line = text.rpartition(":")
    if not (line.isdigit() and path):
        path, line = text, ""
    suffix = f":{line}" if line else ""
    candidate = Path(path)
    if not candidate.is_absolute():
        return text
    for base, label in ((Path.cwd(), ""), (shipped_root(), "shipped: ")):
        if candidate.is_relative_to(base):
            return f"{label}{candidate.relative_to(base).as_posix()}{suffix}"
    return text


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
    """The frameworks a report shows: the ones asked for, else `default_frameworks` for the run's
    zone (found in the run's policy directories first, then shipped). An unknown name is an InputError."""
    dirs = policy_dirs(report.run)
    if report.frameworks:
        return [load_framework(name, dirs) for name in report.frameworks]
    return default_frameworks(dirs, report.run.zone_name)


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


def attestation_note(item: dict[str, Any]) -> str | None:
    """`attested by WHO on DATE (REFERENCE), expires DATE` for an evidence item of kind
    attestation (findings JSON 1.5), else None."""
    held = item.get("attestation")
    if not isinstance(held, dict):
        return None
    return (
        f"attested by {held.get('attested_by')} on {held.get('attested_on')} "
        f"({held.get('reference')}), expires {held.get('expires')}"
    )


@dataclass(frozen=True)
class EvidenceRow:
    """One API call (or one declaration in a file, or one attestation) behind a finding.

    `answer` is an excerpt of the raw answer centred on the field that decided the finding (marked);
    `absent` says the call's error is the source's "there is none" answer (`NoSuchBucketPolicy`),
    an absent setting rather than an unreadable one.
    """

    call: str
    at: str
    answer: Excerpt
    error: str | None
    location: str | None = None  # `file:line (address)` of a declaration (infrastructure as code)
    attestation: str | None = None  # who attested the value, on what basis, until when
    absent: bool = False

    @property
    def decisive(self) -> bool:
        """Whether it says something beyond the call: the deciding field, an error, an attestation
        or a declaration (a compact row shows the others by call name only)."""
        return bool(self.answer.mark or self.error or self.attestation or self.location)


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
    processing: str | None = None  # AI resources: where requests may be processed
    attested: list[str] = field(default_factory=list)
    owner: str | None = None
    actions: list[UndecidedAction] = field(default_factory=list)  # error: what to do to decide it
    evidence_refs: list[int] | None = None  # reference form without the inventory: where the evidence is

    @property
    def keeps_data(self) -> bool:
        """Whether the resource's kind keeps data at rest (an AI setting or deployment does not)."""
        return carries(self.kind, "location")

    def is_attested(self, attribute: str) -> bool:
        """Whether the observed `attribute` holds an attested value, not an observed one."""
        return attribute in self.attested

    @property
    def waiver_expired(self) -> bool:
        """A waiver matched but had expired, so it did not waive."""
        return bool(self.waiver and self.waiver.expired)


def evidence_rows(finding: FindingRecord) -> list[EvidenceRow]:
    """The evidence of a finding as rows: the answers that fed an attribute the finding read are cut
    around the deciding field; "not found" answers meaning "there is none" are marked absent."""
    provider = finding.resource.provider
    rows = []
    for item in finding.evidence:
        response = item.get("response")
        attributes = [a for a in item.get("attributes") or () if isinstance(a, str)]
        decisive = {p: v for p, v in finding.observed.items() if any(_overlaps(a, p) for a in attributes)}
        call = str(item.get("call", ""))
        error = item.get("error")
        rows.append(
            EvidenceRow(
                call=call,
                at=str(item.get("at", "")),
                answer=answer_excerpt(response, decisive or None, finding.reasons)
                if response is not None
                else Excerpt(""),
                error=error,
                location=str(place) if (place := evidence_place(item)) is not None else None,
                attestation=attestation_note(item),
                absent=is_absent(provider, call, error),
            )
        )
    return rows


def finding_view(finding: FindingRecord, actions: list[UndecidedAction] | None = None) -> FindingView:
    """The table row of one finding of the document (`actions`: what to do about an undecided one,
    when already worked out)."""
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
        evidence=evidence_rows(finding),
        waiver=finding.waiver,
        reasons=[r for r in finding.reasons if r.partition(":")[0] not in shown_unknown],
        baselined=finding.baselined,
        processing=processing_text(resource),
        attested=list(resource.attested),
        owner=resource.owner,
        actions=(actions if actions is not None else undecided_actions(finding))
        if finding.status is Status.ERROR
        else [],
        evidence_refs=list(refs) if (refs := finding.refs_only) else None,
    )


def regions_text(regions: list[str]) -> str:
    """Regions as words: `any region` for `*`, `none` for an empty list."""
    return ", ".join(region_label(r) for r in regions) if regions else "none"


def processing_text(resource: ResourceInfo) -> str | None:
    """Where an AI resource's requests may be processed, in words (`unknown` when it could not be
    read: the finding's observed value says why); None for a resource without it."""
    regions = resource.processing_regions
    if regions is None:
        return None
    return regions_text(regions) if isinstance(regions, list) else "unknown"


def training_text(training: TrainingInfo) -> str:
    """`may not train (default: URL, as of DATE)`, `may train (observed: organization-policy)`,
    `may not train (attested)` or `unknown (code: reason)`."""
    cell = training_cell(training)
    if cell.unknown is not None:
        return f"unknown ({cell.unknown})"
    detail = cell.basis
    if cell.basis == "default" and cell.source:
        detail += f": {cell.source}" + (f", as of {cell.as_of}" if cell.as_of else "")
    elif cell.basis == "observed" and cell.decided_by:
        detail += f": {cell.decided_by}"
    return f"{cell.verdict} ({detail})" if detail else cell.verdict


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


def severity_sort_key(finding: FindingRecord) -> tuple[Any, ...]:
    """Most severe first, then status (fail, error, waived, pass), then policy id."""
    return (_SEVERITY_ORDER.get(finding.severity, 9), _STATUS_ORDER.get(finding.status, 9), finding.policy_id)


@dataclass
class PolicyView:
    """One policy's section: metadata, every non-passing finding, a capped list of passing ones with
    their evidence, and every passing resource compactly (`population`: per cloud and account, the
    resource names, with their regions where the kind keeps data)."""

    details: PolicyDetails
    non_pass: list[FindingView] = field(default_factory=list)
    passing: list[FindingView] = field(default_factory=list)
    pass_total: int = 0
    population: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    non_pass_total: int = 0  # also when a DetailSink took the rows instead of `non_pass`

    @property
    def pass_hidden(self) -> int:
        """Passing findings counted but not listed with their evidence."""
        return self.pass_total - len(self.passing)

    def add_passing(self, finding: FindingRecord) -> None:
        """Count a passing finding into the population: its name, and the regions the policy judged
        (at rest, or where requests are processed) when it judged where the data is."""
        group, entry = population_entry(finding)
        self.population.setdefault(group, []).append(entry)

    @property
    def population_groups(self) -> list[tuple[str, str, list[str]]]:
        """(cloud label, account, sorted names) of the passing resources, by cloud and account."""
        return [
            (PROVIDER_LABELS.get(provider, provider), account, sorted(self.population[(provider, account)]))
            for provider, account in population_groups(self.population)
        ]


def population_entry(finding: FindingRecord) -> tuple[tuple[str, str], str]:
    """((provider, account), entry) of a passing finding in its policy's population: the resource's
    name, with the regions the policy judged (at rest, or where requests are processed) when it
    judged where the data is."""
    resource = finding.resource
    entry = resource.name
    read = {path.partition(".")[0] for path in finding.observed}
    processing = resource.processing_regions
    regions = (
        resource.regions
        if "location" in read
        else processing
        if "processing" in read and isinstance(processing, list)
        else None
    )
    if regions:
        entry += f" ({', '.join(region_label(r) for r in regions)})"
    return (resource.provider, resource.account), entry


def population_groups(groups: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(provider, account) groups in report order: by cloud (the source registry's order), then account."""
    order = {p: i for i, p in enumerate(provider_names())}
    return sorted(groups, key=lambda group: (order.get(group[0], 99), group))


class DetailSink(Protocol):
    """Where a streamed report puts each finding's detail instead of keeping it in the view (the HTML
    report spools it to a temporary file), so the view stays small however many findings there are."""

    def non_pass(self, policy_id: str, finding: FindingRecord, actions: list[UndecidedAction] | None) -> None:
        """A failing, undecided or waived finding of the policy (`actions`: an undecided one's,
        worked out already); its row is `finding_view(finding, actions)`."""

    def passing(self, policy_id: str, group: tuple[str, str], entry: str) -> None:
        """A passing resource of the policy, in its (provider, account) group."""


# --- what to fix first, and for whom -------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """How reports group resources into teams: by the value of one tag (`owner` by default).

    Values come from the findings document (`resource.owner`) when the key is the owner tag, else
    from the inventory's tags (`values`, by resource id).
    """

    key: str
    values: dict[str, str] = field(default_factory=dict)
    from_document: bool = False

    @property
    def missing(self) -> str:
        """The group of resources without the tag."""
        return f"(no {self.key} tag)"

    def of(self, resource: ResourceInfo) -> str:
        """The group of `resource`."""
        value = resource.owner if self.from_document else self.values.get(resource.id)
        return value if value else self.missing


def _inventory_tag(inventory: Iterable[StorageResource], key: str) -> dict[str, str]:
    return {
        resource.id: value
        for resource in inventory
        if (value := (resource.normalized_tags or {}).get(key)) is not None
    }


def check_grouping(report: ReportInput) -> None:
    """Refuse a `--group-by-tag` the report cannot honour (InputError), reading no inventory: an
    empty key, or a tag the findings do not hold without an inventory to read it from."""
    asked = report.group_by_tag
    if asked is None:
        return
    if not asked.strip():
        raise InputError("--group-by-tag", "give a tag key, such as owner or team")
    held = normalize_tag_key(asked) == OWNER_TAG and findings_hold_owners(report)
    if not held and report.inventory_path is None:
        raise InputError(
            "--group-by-tag",
            f"the findings hold no '{asked}' tag: give the inventory (--inventory) to read it from",
        )


def findings_hold_owners(report: ReportInput) -> bool:
    """Whether any finding names its resource's owner (read until the first that does)."""
    return any(f.resource.owner for f in report.findings())


def report_grouping(report: ReportInput, inventory: list[StorageResource] | None = None) -> Grouping | None:
    """The grouping a report uses: `--group-by-tag KEY`, else the owner tag when any resource has
    one; None when nothing groups. A key other than the owner tag is read from the inventory."""
    check_grouping(report)
    asked = report.group_by_tag
    key = normalize_tag_key(asked) if asked else OWNER_TAG
    if key == OWNER_TAG and findings_hold_owners(report):
        return Grouping(key, from_document=True)
    if inventory is None and report.inventory_path is not None:
        values = _inventory_tag(iter_inventory_resources(report.inventory_path), key)
    elif inventory is not None:
        values = _inventory_tag(inventory, key)
    else:
        return None
    return Grouping(key, values) if values or asked else None


@dataclass(frozen=True)
class FixTarget:
    """A resource a fix clears (or an undecided finding's resource), with its owner and group."""

    name: str
    account: str
    resource_id: str
    owner: str | None
    group: str | None
    baselined: bool = False


@dataclass
class FixItem:
    """One fix: a policy's remediation on one cloud, and the failing resources it clears.

    For undecided findings (`code` set), the action that lets them be decided instead: the exact
    permission for access denied, the retry advice, the attestation to give or renew.
    """

    policy_id: str
    title: str
    severity: Severity
    provider: str
    remediation: str | None
    targets: list[FixTarget] = field(default_factory=list)
    code: str | None = None
    code_label: str | None = None
    attributes: list[str] = field(default_factory=list)
    reason: str | None = None  # undecided: the first resource's reason, as an example
    # resources counted but not kept in `targets` (a plan that names only the first few), by owner
    unnamed: int = 0
    unnamed_owners: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        """The cloud's label."""
        return PROVIDER_LABELS.get(self.provider, self.provider)

    @property
    def cleared(self) -> int:
        """How many resources the fix clears."""
        return len(self.targets) + self.unnamed

    def add(self, target: FixTarget, keep: int | None = None) -> None:
        """Count a resource; past `keep` kept targets it is counted (and its owner) but not kept."""
        if keep is None or len(self.targets) < keep:
            self.targets.append(target)
        else:
            self.unnamed += 1
            self.unnamed_owners[target.owner or f"(no {OWNER_TAG} tag)"] += 1

    @property
    def shown(self) -> list[FixTarget]:
        """The first resources, named in the list."""
        return self.targets[:FIX_NAMES_SHOWN]

    @property
    def more(self) -> int:
        """Resources counted but not named."""
        return max(0, self.cleared - FIX_NAMES_SHOWN)

    @property
    def owners(self) -> list[tuple[str, int]]:
        """(owner, resources) most first; `(no owner tag)` for resources without one."""
        counted = Counter(t.owner or f"(no {OWNER_TAG} tag)" for t in self.targets) + self.unnamed_owners
        return sorted(counted.items(), key=lambda item: (item[0].startswith("("), -item[1], item[0]))


def _reason_of(finding: FindingRecord, attribute: str | None) -> str | None:
    """Why an attribute of a finding is unknown (the reason of its code), else its first reason."""
    value = finding.observed.get(attribute) if attribute is not None else None
    if isinstance(value, dict) and _is_unknown(value):
        return str(value["unknown"].get("reason"))
    return finding.reasons[0] if finding.reasons else None


def _fix_order(item: FixItem) -> tuple[Any, ...]:
    return (
        _SEVERITY_ORDER.get(item.severity, 9),
        -item.cleared,
        item.policy_id,
        item.provider,
        item.code or "",
    )


@dataclass
class TeamView:
    """One group's (team's) fixes and undecided findings."""

    name: str
    fixes: list[FixItem] = field(default_factory=list)
    undecided: list[FixItem] = field(default_factory=list)

    @property
    def failing(self) -> int:
        """Failing resources of the team (one per fix and resource)."""
        return sum(item.cleared for item in self.fixes)

    @property
    def unresolved(self) -> int:
        """Undecided findings of the team."""
        return sum(item.cleared for item in self.undecided)


@dataclass
class FixPlan:
    """What to fix first: failures by severity, then by how many resources a fix clears; undecided
    findings with what lets them be decided; and the same per team when a grouping applies."""

    fixes: list[FixItem] = field(default_factory=list)
    undecided: list[FixItem] = field(default_factory=list)
    grouping: Grouping | None = None
    teams: list[TeamView] = field(default_factory=list)

    @property
    def failing(self) -> int:
        """Failing findings covered by the fixes."""
        return sum(item.cleared for item in self.fixes)


class _PlanBuilder:
    """Collects failing and undecided findings into fix items, globally and per team."""

    def __init__(
        self, policies: dict[str, PolicyDetails], grouping: Grouping | None, keep: int | None = None
    ) -> None:
        self.policies = policies
        self.grouping = grouping
        self.keep = keep  # resources named per fix (None: every one)
        self.fixes: dict[tuple[str, str], FixItem] = {}
        self.undecided: dict[tuple[str, str, str, str], FixItem] = {}
        self.team_fixes: dict[str, dict[tuple[str, str], FixItem]] = defaultdict(dict)
        self.team_undecided: dict[str, dict[tuple[str, str, str, str], FixItem]] = defaultdict(dict)

    def _item(self, finding: FindingRecord, code: str | None = None, label: str | None = None) -> FixItem:
        policy = self.policies.get(finding.policy_id)
        provider = finding.resource.provider
        return FixItem(
            policy_id=finding.policy_id,
            title=policy.title if policy is not None else finding.policy_id,
            severity=finding.severity,
            provider=provider,
            remediation=policy.remediation.get(provider) if policy is not None else None,
            code=code,
            code_label=label,
        )

    def add(self, finding: FindingRecord, actions: list[UndecidedAction] | None = None) -> None:
        """Count one finding (failing, or undecided with its actions); others are ignored."""
        resource = finding.resource
        group = self.grouping.of(resource) if self.grouping is not None else None
        owner = resource.owner
        if owner is None and self.grouping is not None and self.grouping.key == OWNER_TAG:
            owner = self.grouping.values.get(resource.id)  # a document older than `resource.owner`
        target = FixTarget(resource.name, resource.account, resource.id, owner, group, finding.baselined)
        if finding.status is Status.FAIL:
            key = (finding.policy_id, resource.provider)
            places = [self.fixes]
            if group is not None:
                places.append(self.team_fixes[group])
            for place in places:
                item = place.get(key)
                if item is None:
                    item = place[key] = self._item(finding)
                item.add(target, self.keep)
        elif finding.status is Status.ERROR:
            by_text: dict[str, list[UndecidedAction]] = {}
            for action in actions if actions is not None else undecided_actions(finding):
                by_text.setdefault(action.action, []).append(action)
            if not by_text:  # undecided for no recorded unknown (an unreadable scope): still listed
                by_text[""] = []
            for text, same in by_text.items():
                code = same[0].code if same else "error"
                undecided_key = (finding.policy_id, resource.provider, code, text)
                places_u = [self.undecided]
                if group is not None:
                    places_u.append(self.team_undecided[group])
                for place_u in places_u:
                    item = place_u.get(undecided_key)
                    if item is None:
                        item = place_u[undecided_key] = self._item(
                            finding, code, same[0].label if same else "undecided"
                        )
                        item.remediation = text or UNKNOWN_ACTIONS[UnknownCode.ERROR].action
                        item.reason = _reason_of(finding, same[0].attribute if same else None)
                    item.add(target, self.keep)
                    for action in same:
                        if action.attribute not in item.attributes:
                            item.attributes.append(action.attribute)

    def plan(self) -> FixPlan:
        """The fixes and undecided items in order, and the teams (most severe failures first)."""
        teams = [
            TeamView(
                name,
                sorted(self.team_fixes.get(name, {}).values(), key=_fix_order),
                sorted(self.team_undecided.get(name, {}).values(), key=_fix_order),
            )
            for name in {*self.team_fixes, *self.team_undecided}
        ]
        missing = self.grouping.missing if self.grouping is not None else ""

        def team_order(team: TeamView) -> tuple[Any, ...]:
            worst = min((_fix_order(i)[0] for i in [*team.fixes, *team.undecided]), default=9)
            return (team.name == missing, worst, -team.failing, -team.unresolved, team.name)

        if all(team.name == missing for team in teams):
            teams = []  # nothing to fix is tagged: one "team" of everything would repeat the list
        return FixPlan(
            fixes=sorted(self.fixes.values(), key=_fix_order),
            undecided=sorted(self.undecided.values(), key=_fix_order),
            grouping=self.grouping,
            teams=sorted(teams, key=team_order),
        )


def fix_plan(
    findings: Iterable[FindingRecord],
    policies: list[PolicyDetails],
    grouping: Grouping | None = None,
    *,
    keep: int | None = None,
) -> FixPlan:
    """The fix-first plan of `findings` (`keep`: resources named per fix, the rest counted)."""
    builder = _PlanBuilder({p.id: p for p in policies}, grouping, keep)
    for finding in findings:
        builder.add(finding)
    return builder.plan()


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
    if region == ANY_REGION and zone is not None:
        return "out"  # any region the provider operates: no zone contains that
    if zone is None or provider not in provider_names():
        return "unknown"
    state = zone.state(provider, region)
    return "in" if state == "in" else "out" if state == "out" else "unknown"


def carries(kind: str, group: str) -> bool:
    """Whether resources of `kind` carry the attribute `group` (a kind this version does not know is
    taken to carry it, so nothing it reports is hidden)."""
    groups = KIND_GROUPS.get(kind)  # type: ignore[call-overload]
    return groups is None or group in groups


def region_label(region: str) -> str:
    """A region as reports show it: `*` is any region the provider operates."""
    return "any region" if region == ANY_REGION else region


# AI resource lists longer than this show their regions outside the zone and count the rest.
REGIONS_LISTED = 6
AI_ROWS_LIMIT = 500


@dataclass(frozen=True)
class RegionMark:
    """One region of an AI resource, with whether it lies inside the run's zone."""

    region: str
    state: ZoneState

    @property
    def label(self) -> str:
        """`any region` for `*`, else the region."""
        return region_label(self.region)


@dataclass(frozen=True)
class PlaceCell:
    """Where an AI resource keeps its content at rest, or processes requests.

    `applies` is False for kinds that do not carry the attribute (shown as not applicable);
    `unknown` holds the reason when it could not be read. Long lists keep their regions outside
    the zone in `listed` and count the ones inside in `inside_folded`.
    """

    applies: bool
    listed: list[RegionMark] = field(default_factory=list)
    inside_folded: int = 0
    unknown: str | None = None

    @property
    def state(self) -> ZoneState:
        """`out` if any region is outside the zone, `unknown` if unknown or any region unknown, else `in`."""
        states = {mark.state for mark in self.listed}
        if "out" in states:
            return "out"
        if self.unknown is not None or "unknown" in states or not (self.listed or self.inside_folded):
            return "unknown"
        return "in"


def _place(regions: list[str], provider: str, zone: ZoneInfo | None) -> PlaceCell:
    marks = [RegionMark(region, _zone_state(zone, provider, region)) for region in regions]
    if len(marks) <= REGIONS_LISTED:
        return PlaceCell(True, marks)
    return PlaceCell(True, [m for m in marks if m.state != "in"], sum(1 for m in marks if m.state == "in"))


# How the value of `training.provider_may_train` was established, by `training.decided_by`.
TRAINING_BASIS: dict[str, str] = {
    "organization-policy": "observed",
    "provider-setting": "observed",
    "provider-default": "default",
    "attestation": "attested",
}


@dataclass(frozen=True)
class TrainingCell:
    """Whether the provider may train on an AI resource's content, and on what basis.

    `basis` is `observed` (a setting or organization policy read from the API), `default` (a
    documented provider default, with its source and date), `attested` (a person vouched for it in
    an attestation file) or `` when unknown.
    """

    verdict: Literal["may not train", "may train", "unknown"]
    basis: str
    decided_by: str | None
    source: str | None
    as_of: str | None
    unknown: str | None = None


def training_cell(training: TrainingInfo) -> TrainingCell:
    """The training column of one AI resource."""
    value = training.provider_may_train
    why = training.unknown
    if why is not None or not isinstance(value, bool):
        reason = f"{why.get('code')}: {why.get('reason')}" if why is not None else "not recorded"
        return TrainingCell("unknown", "", training.decided_by, training.source, training.as_of, reason)
    verdict: Literal["may not train", "may train"] = "may train" if value else "may not train"
    basis = TRAINING_BASIS.get(training.decided_by or "", training.decided_by or "")
    return TrainingCell(verdict, basis, training.decided_by, training.source, training.as_of)


@dataclass(frozen=True)
class AiResourceRow:
    """One AI resource in the residency view: at rest and processing side by side, and training.

    `status` is its worst finding (fail, error, waived, pass), or the state of a resource that got
    no finding (an archived project, listed from the inventory).
    """

    provider: str
    label: str
    kind: str
    account: str
    name: str
    resource_id: str
    status: str
    at_rest: PlaceCell
    processing: PlaceCell
    training: TrainingCell | None
    attested: list[str]
    attestations: list[str] = field(default_factory=list)  # who attested, on what basis, until when


def _ai_row(
    resource: ResourceInfo,
    status: str,
    zone: ZoneInfo | None,
    observed: dict[str, Any],
    attestations: Iterable[str] = (),
) -> AiResourceRow:
    provider = resource.provider
    at_rest = PlaceCell(False)
    if carries(resource.kind, "location"):
        location = observed.get("location.regions")
        if _is_unknown(location):
            at_rest = PlaceCell(True, unknown=unknown_text(location))
        elif resource.regions:
            at_rest = _place(list(resource.regions), provider, zone)
        else:
            at_rest = PlaceCell(True, unknown="not recorded")
    processing = PlaceCell(False)
    regions = resource.processing_regions
    if isinstance(regions, list):
        processing = _place(regions, provider, zone)
    elif regions is not None:
        processing = PlaceCell(True, unknown=unknown_text(regions))
    elif carries(resource.kind, "processing") and resource.kind in AI_KINDS:
        processing = PlaceCell(True, unknown="not recorded")
    return AiResourceRow(
        provider=provider,
        label=PROVIDER_LABELS.get(provider, provider),
        kind=resource.kind,
        account=resource.account,
        name=resource.name,
        resource_id=resource.id,
        status=status,
        at_rest=at_rest,
        processing=processing,
        training=training_cell(resource.training) if resource.training is not None else None,
        attested=list(resource.attested),
        attestations=list(dict.fromkeys(attestations)),
    )


def place_text(cell: PlaceCell, zone: str | None) -> str:
    """A place cell in words: `n/a`, `unknown (why)`, or its regions with those outside the zone
    marked, e.g. `ch (outside eu), 30 more inside eu`."""
    if not cell.applies:
        return "n/a"
    if cell.unknown is not None:
        return f"unknown ({cell.unknown})"
    where = f" {zone}" if zone else " the zone"
    marks = {"out": f" (outside{where})", "unknown": " (zone unknown)", "in": ""}
    parts = [mark.label + (marks[mark.state] if zone else "") for mark in cell.listed]
    if cell.inside_folded:
        parts.append(f"{cell.inside_folded} {'more ' if parts else ''}regions inside{where}")
    return ", ".join(parts) or "none"


def training_words(cell: TrainingCell | None) -> str:
    """A training cell in words: `may not train (attested)`, `may train (default, as of DATE)`, ..."""
    if cell is None:
        return "n/a"
    if cell.unknown is not None:
        return f"unknown ({cell.unknown})"
    detail = cell.basis
    if cell.basis == "default" and cell.as_of:
        detail += f", as of {cell.as_of}"
    elif cell.basis == "observed" and cell.decided_by:
        detail += f": {cell.decided_by}"
    return f"{cell.verdict} ({detail})" if detail else cell.verdict


def _is_unknown(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("unknown"), dict)


def unknown_text(value: Any) -> str:
    """`code: reason` of a findings-JSON ``{"unknown": {code, reason}}`` value."""
    unknown = value.get("unknown") if isinstance(value, dict) else None
    if not isinstance(unknown, dict):
        return display_value(value)
    return f"{unknown.get('code')}: {unknown.get('reason')}"


@dataclass
class AiResidency:
    """The AI services of the run: one row per resource (capped), and how many there were."""

    rows: list[AiResourceRow] = field(default_factory=list)
    total: int = 0

    @property
    def hidden(self) -> int:
        """Resources counted but not listed."""
        return self.total - len(self.rows)


@dataclass(frozen=True)
class InventoryAiRecord:
    """What the AI table needs of an inventory's AI resource (one that may have got no finding)."""

    provider: str
    account: str
    id: str
    name: str
    kind: str
    regions: tuple[str, ...]
    processing_regions: tuple[str, ...] | None
    state: str | None

    @classmethod
    def of(cls, record: StorageResource) -> InventoryAiRecord:
        """The record's part the AI table shows."""
        return cls(
            provider=record.provider,
            account=record.account,
            id=record.id,
            name=record.name,
            kind=record.kind,
            regions=tuple(record.location.regions) if record.location is not None else (),
            processing_regions=tuple(record.processing.regions) if record.processing is not None else None,
            state=record.state,
        )


class _AiResource:
    """What is remembered of every AI resource of the findings: small, whatever their number."""

    __slots__ = ("location", "notes", "seq", "worst")

    def __init__(self, seq: int) -> None:
        self.worst: Status | None = None
        self.location: Any = None  # its last observed `location.regions`, when unknown
        self.notes: list[str] = []
        self.seq = seq


_AiKey = tuple[int, int, str, str, str, int, str]


class AiCollector:
    """Builds the AI table from findings read one at a time: every AI resource is counted, and only
    the `limit` rows shown (worst first) keep their resource; a resource's key only moves up as
    worse findings arrive, so one that drops out never needs to come back with older data."""

    def __init__(self, zone: ZoneInfo | None, limit: int = AI_ROWS_LIMIT) -> None:
        self.zone = zone
        self.limit = limit
        self.seen: dict[str, _AiResource] = {}
        self.keys: list[_AiKey] = []  # sorted keys of the rows kept
        self.kept: dict[str, tuple[_AiKey, ResourceInfo]] = {}
        self.inventory_only: set[str] = set()  # ids of the inventory's AI resources without a finding
        self.states: dict[str, str] = {}  # inventory-only rows kept: the resource's state
        self._order = {p: i for i, p in enumerate(provider_names())}

    def _key(self, status: int, resource: ResourceInfo, seq: int) -> _AiKey:
        order = self._order.get(resource.provider, 99)
        return (status, order, resource.account, resource.kind, resource.name, seq, resource.id)

    def _offer(self, key: _AiKey, resource: ResourceInfo) -> None:
        rid = resource.id
        held = self.kept.get(rid)
        if held is not None:
            if held[0] != key:
                del self.keys[bisect_left(self.keys, held[0])]
                insort(self.keys, key)
            self.kept[rid] = (key, resource)
            return
        if len(self.keys) >= self.limit and (not self.keys or key >= self.keys[-1]):
            return
        insort(self.keys, key)
        self.kept[rid] = (key, resource)
        if len(self.keys) > self.limit:
            del self.kept[self.keys.pop()[-1]]

    def add(self, finding: FindingRecord) -> None:
        """Count one finding (findings of other than AI resources are ignored)."""
        resource = finding.resource
        if resource.kind not in AI_KINDS:
            return
        entry = self.seen.get(resource.id)
        if entry is None:
            entry = self.seen[resource.id] = _AiResource(len(self.seen))
        if "location.regions" in finding.observed:
            location = finding.observed["location.regions"]
            entry.location = location if _is_unknown(location) else None
        if resource.attested:
            for note in filter(None, map(attestation_note, finding.evidence)):
                if note not in entry.notes:
                    entry.notes.append(note)
        before = entry.worst
        if before is None or _STATUS_ORDER.get(finding.status, 9) < _STATUS_ORDER.get(before, 9):
            entry.worst = finding.status
            self._offer(self._key(_STATUS_ORDER.get(finding.status, 9), resource, entry.seq), resource)

    def add_inventory(self, records: Iterable[InventoryAiRecord]) -> None:
        """The inventory's AI resources that got no finding (an archived project), after the findings."""
        for record in records:
            if record.id in self.seen or record.id in self.inventory_only or record.kind not in AI_KINDS:
                continue
            seq = len(self.seen) + len(self.inventory_only)
            self.inventory_only.add(record.id)
            order = self._order.get(record.provider, 99)
            key = (9, order, record.account, record.kind, record.name, seq, record.id)
            if len(self.keys) >= self.limit and (not self.keys or key >= self.keys[-1]):
                continue
            info = ResourceInfo(
                provider=record.provider,
                account=record.account,
                id=record.id,
                name=record.name,
                kind=record.kind,
                regions=list(record.regions),
                processing_regions=list(record.processing_regions)
                if record.processing_regions is not None
                else None,
            )
            self._offer(key, info)
            state = record.state if record.state in INACTIVE_STATES else "no finding"
            self.states[record.id] = str(state)

    def result(self) -> AiResidency:
        """The rows kept, worst first, and how many AI resources there were."""
        rows = []
        for key in self.keys:
            rid = key[-1]
            resource = self.kept[rid][1]
            entry = self.seen.get(rid)
            if entry is None:
                rows.append(_ai_row(resource, self.states[rid], self.zone, {}))
                continue
            assert entry.worst is not None
            observed = {"location.regions": entry.location} if entry.location is not None else {}
            rows.append(_ai_row(resource, entry.worst.value, self.zone, observed, entry.notes))
        return AiResidency(rows, len(self.seen) + len(self.inventory_only))


def ai_residency(
    findings: Iterable[FindingRecord],
    zone: ZoneInfo | None,
    inventory: Iterable[StorageResource] | None = None,
    limit: int = AI_ROWS_LIMIT,
) -> AiResidency:
    """Every AI resource of the findings (and, with the inventory, those that got no finding such as
    archived projects), worst first."""
    collector = AiCollector(zone, limit)
    for finding in findings:
        collector.add(finding)
    if inventory is not None:
        collector.add_inventory(InventoryAiRecord.of(r) for r in inventory if r.kind in AI_KINDS)
    return collector.result()


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
    `counts`: how many findings fell in each section (the lists may keep only the first of them).
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
    counts: Counter[str] = field(default_factory=Counter)


def _change(facts: FindingFacts, before: str, after: str, gap: RecordedGap | None = None) -> ChangeView:
    return ChangeView(
        policy_id=facts.policy_id,
        severity=facts.severity,
        provider=facts.provider,
        account=facts.account,
        name=facts.name,
        resource_id=facts.resource_id,
        before=before,
        after=after,
        gap=gap,
    )


T = TypeVar("T")


class Smallest(Generic[T]):
    """The `limit` smallest items by `key` of a stream (ties in the order added), and how many there
    were: what a sorted list cut at `limit` shows, in bounded memory (`limit` None: every item)."""

    def __init__(self, limit: int | None, key: Callable[[T], Any]) -> None:
        self.limit = limit
        self.key = key
        self.total = 0
        self._items: list[T] = []

    def add(self, item: T) -> None:
        """Count one item, keeping it if it may be among the smallest."""
        self.total += 1
        self._items.append(item)
        if self.limit is not None and len(self._items) >= 2 * self.limit + 16:
            self._items.sort(key=self.key)
            del self._items[self.limit :]

    @property
    def items(self) -> list[T]:
        """The smallest items, in order."""
        self._items.sort(key=self.key)
        if self.limit is not None:
            del self._items[self.limit :]
        return self._items


def _change_order(change: ChangeView) -> tuple[Any, ...]:
    return (_SEVERITY_ORDER.get(change.severity, 9), change.policy_id, change.provider, change.name)


_LISTED = ("new_failures", "fixed", "still_failing", "newly_unknown", "not_assessed")


class ChangesCollector:
    """What changed since `previous`, from this run's findings read one at a time; with `limit`,
    each list keeps only its first `limit` changes (every change is counted), so memory is bounded
    (the previous run is held as `PreviousRun` keeps it)."""

    def __init__(
        self, run: RunInfo, previous: PreviousRun | FindingsDocument, *, limit: int | None = None
    ) -> None:
        self.run = run
        self.previous = PreviousRun.of(previous)
        # Keys of this run among the previous run's failures: the rest are fixed or not assessed.
        self.seen_failures = StatusTable()
        self.accounts: set[tuple[str, str]] = {(a.provider, a.account) for a in run.coverage.accounts}
        self.counts: Counter[str] = Counter()
        self.lists = {section: Smallest[ChangeView](limit, _change_order) for section in _LISTED}

    def add(self, finding: FindingRecord) -> None:
        """One finding of this run."""
        digest = key_digest(finding.key)
        was = self.previous.statuses.get(digest)
        if was == Status.FAIL.value:
            self.seen_failures[digest] = was
        self.accounts.add((finding.resource.provider, finding.resource.account))
        section = classify_change(was, finding.status.value)
        if section is None:
            return
        self.counts[section] += 1
        if section in self.lists:
            self.lists[section].add(_change(FindingFacts.of(finding), was or "absent", finding.status.value))

    def result(self) -> Changes:
        """The changes, each list most severe first."""
        previous = self.previous
        gaps = [g.coverage_gap() for g in self.run.coverage.gaps]
        coverage = LaterCoverage(gaps, seen_accounts=self.accounts, known_accounts=previous.accounts)
        seen, failing = self.seen_failures, Status.FAIL.value
        unseen = {d for d, was in previous.statuses.items() if was == failing and d not in seen}
        for failure in previous.failures_among(unseen):
            gap = coverage.gap_over(failure.provider, failure.account, failure.regions)
            section = classify_change(Status.FAIL.value, None, assessed=gap is None)
            if section == "fixed":
                self.counts[section] += 1
                self.lists[section].add(_change(failure, Status.FAIL.value, "no longer reported"))
            elif section == "not_assessed":
                self.counts[section] += 1
                self.lists[section].add(
                    _change(failure, Status.FAIL.value, "not assessed (coverage gap)", gap)
                )
        new_gaps, closed_gaps = gap_changes(previous.gaps, gaps)
        lists = self.lists
        return Changes(
            previous_id=previous.id,
            previous_started_at=previous.started_at,
            new_failures=lists["new_failures"].items,
            fixed=lists["fixed"].items,
            still_failing=lists["still_failing"].items,
            newly_unknown=lists["newly_unknown"].items,
            not_assessed=lists["not_assessed"].items,
            new_gaps=new_gaps,
            closed_gaps=closed_gaps,
            counts=self.counts,
        )


def compare_runs(current: FindingsDocument, previous: PreviousRun | FindingsDocument) -> Changes:
    """New failures, fixed (now pass, or no longer reported by a run that could see the resource),
    still failing, newly unknown, not assessed (no longer reported because the resource lies under
    a coverage gap of this run), and the coverage gaps opened and closed since."""
    collector = ChangesCollector(current.run, previous)
    for finding in current.findings:
        collector.add(finding)
    return collector.result()


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
    collected_from: str | None = None  # when the inventory was collected: earliest and latest
    collected_to: str | None = None  # `scanned_at` (or evidence time, without the inventory)


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
    ai: AiResidency = field(default_factory=AiResidency)
    plan: FixPlan = field(default_factory=FixPlan)


@dataclass
class InventoryFacts:
    """What reports show of an inventory, read in one pass, one record at a time: data per region
    (primary and replicas), customer-managed keys per region, when it was collected, one tag's values
    (for grouping), and its AI resources (for those that got no finding: kept here, or handed to an
    `AiCollector` as they pass)."""

    primary: Counter[tuple[str, str]] = field(default_factory=Counter)
    replica: Counter[tuple[str, str]] = field(default_factory=Counter)
    keys: Counter[tuple[str, str]] = field(default_factory=Counter)
    earliest: datetime | None = None
    latest: datetime | None = None
    tag_values: dict[str, str] = field(default_factory=dict)
    ai: list[InventoryAiRecord] = field(default_factory=list)

    def add(self, res: StorageResource, tag: str | None = None, ai: AiCollector | None = None) -> None:
        """Count one inventory resource (`tag`: the key whose values to keep)."""
        if res.location is not None:
            if res.location.primary:
                self.primary[(res.provider, res.location.primary)] += 1
            for region in set(res.location.regions) - {res.location.primary}:
                self.replica[(res.provider, region)] += 1
        enc = res.encryption
        if enc is not None and enc.key_management == "customer-managed" and enc.key_location:
            self.keys[(res.provider, enc.key_location)] += 1
        if res.scanned_at is not None:
            self.earliest = res.scanned_at if self.earliest is None else min(self.earliest, res.scanned_at)
            self.latest = res.scanned_at if self.latest is None else max(self.latest, res.scanned_at)
        if tag is not None and (value := (res.normalized_tags or {}).get(tag)) is not None:
            self.tag_values[res.id] = value
        if res.kind in AI_KINDS:
            if ai is not None:
                ai.add_inventory([InventoryAiRecord.of(res)])
            else:
                self.ai.append(InventoryAiRecord.of(res))

    @classmethod
    def of(
        cls, resources: Iterable[StorageResource], tag: str | None = None, ai: AiCollector | None = None
    ) -> InventoryFacts:
        """The facts of an inventory's resources."""
        facts = cls()
        for res in resources:
            facts.add(res, tag, ai)
        return facts


class ResidencyCounter:
    """Per cloud, resources wholly inside, partly outside, or of unknown location, from findings read
    one at a time (each resource counted once: the ids seen are the one thing kept per resource)."""

    def __init__(self, zone: ZoneInfo | None) -> None:
        self.zone = zone
        self.inside: Counter[str] = Counter()
        self.outside: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()

    def add_resource(self, resource: ResourceInfo) -> None:
        """Count a resource (once: the caller sees that it is new)."""
        if not carries(resource.kind, "location"):
            return  # an AI deployment, endpoint or setting keeps nothing at rest of its own
        provider = resource.provider
        states = {_zone_state(self.zone, provider, r) for r in resource.regions}
        if not states or ("unknown" in states and "out" not in states):
            self.unknown[provider] += 1
        elif "out" in states:
            self.outside[provider] += 1
        else:
            self.inside[provider] += 1

    def views(
        self, run: RunInfo, inventory: InventoryFacts | None
    ) -> tuple[list[ProviderResidency], list[KeyLocation]]:
        """The residency per cloud and the key locations."""
        zone = self.zone
        views: dict[str, ProviderResidency] = {}

        def view_of(provider: str) -> ProviderResidency:
            return views.setdefault(
                provider, ProviderResidency(provider, PROVIDER_LABELS.get(provider, provider), [])
            )

        for key, count in run.coverage.regions.items():
            provider, _, region = key.partition(":")
            view_of(provider).regions.append(
                RegionBar(
                    provider=provider,
                    region=region,
                    resources=count,
                    state=_zone_state(zone, provider, region),
                    primary=inventory.primary.get((provider, region), 0) if inventory is not None else None,
                    replica=inventory.replica.get((provider, region), 0) if inventory is not None else None,
                )
            )
        for provider in [*self.inside, *self.outside, *self.unknown]:
            view = view_of(provider)
            view.inside = self.inside[provider]
            view.outside = self.outside[provider]
            view.unknown = self.unknown[provider]
        order: dict[str, int] = {p: i for i, p in enumerate(provider_names())}
        for view in views.values():
            view.regions.sort(
                key=lambda r: ({"in": 0, "out": 1, "unknown": 2}[r.state], -r.resources, r.region)
            )
        keys = inventory.keys if inventory is not None else Counter()
        key_rows = [KeyLocation(p, r, n, _zone_state(zone, p, r)) for (p, r), n in sorted(keys.items())]
        return sorted(views.values(), key=lambda v: order.get(v.provider, 9)), key_rows


class EvidenceWindow:
    """Earliest and latest time of the findings' evidence (one resource's evidence once)."""

    def __init__(self) -> None:
        self.earliest: datetime | None = None
        self.latest: datetime | None = None
        self.comparable = True

    def add_resource(self, finding: FindingRecord) -> None:
        """The evidence times of a resource's first finding."""
        for item in finding.evidence:
            try:
                at = datetime.fromisoformat(str(item.get("at")))
            except ValueError:
                continue
            try:
                self.earliest = at if self.earliest is None else min(self.earliest, at)
                self.latest = at if self.latest is None else max(self.latest, at)
            except TypeError:  # naive and aware times mixed: not comparable, so not shown
                self.comparable = False

    def window(self) -> tuple[str | None, str | None]:
        """(earliest, latest) as ISO text, or (None, None)."""
        if not self.comparable or self.earliest is None or self.latest is None:
            return None, None
        return self.earliest.isoformat(), self.latest.isoformat()


# What reports do not read of an inventory record: the evidence (the bulk of a record), transport and
# access are in the findings document already.
_INVENTORY_LEFT_OUT = frozenset({"evidence", "transport", "access"})


def iter_inventory_resources(path: Path) -> Iterator[StorageResource]:
    """The resources of an inventory JSONL, one at a time, with what reports show of them (coverage
    gaps are in the findings document already). Each line is checked as `auditor check` reads it
    (JSON, no duplicate key, a registered provider, every field it keeps valid: a bad line is an
    InputError naming `file:line`), but its evidence, transport and access are not read, and no
    source normalizes it (what that derives, the findings hold): a quarter of the time on a large
    inventory."""
    from auditor.inputfile import MAX_LINE_BYTES, open_input, read_lines
    from auditor.inventory import check_duplicate_keys
    from auditor.sources import check_provider

    with open_input(path, "inventory") as handle:
        for number, line in read_lines(handle, path, limit=MAX_LINE_BYTES):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(where, f"invalid JSON ({exc}); is the line truncated?") from exc
            if not isinstance(data, dict):
                raise InputError(where, "each line must be a JSON object")
            check_duplicate_keys(line if isinstance(line, bytes) else line.encode(), data, where)
            if data.get("record", "resource") == "gap":
                continue
            kept = {key: value for key, value in data.items() if key not in _INVENTORY_LEFT_OUT}
            try:
                resource = StorageResource.model_validate(kept)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise InputError(
                    where, f"{'.'.join(str(p) for p in first['loc']) or 'record'}: {first['msg']}"
                ) from exc
            check_provider(resource.provider, where)
            yield resource


def _policy_view(finding: FindingRecord) -> PolicyView:
    """The section of a finding's policy the run does not list: shown anyway."""
    return PolicyView(
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


def build_view(
    report: ReportInput,
    *,
    pass_limit: int = PASS_LIST_LIMIT,
    sink: DetailSink | None = None,
) -> ReportView:
    """The view model of `report`, from one pass over its findings (read one at a time) and one
    over its inventory. Everything kept is bounded by the policies, clouds, accounts and regions, or
    is one small entry per resource (ids, to count each once; AI resources); with a `sink`, the rows
    of non-passing findings and the passing population go to it instead of the view."""
    run = report.run
    details = policy_details(run)
    views = {d.id: PolicyView(d) for d in details}
    asked = report.group_by_tag
    check_grouping(report)
    key = normalize_tag_key(asked) if asked else OWNER_TAG
    path = report.inventory_path
    # The owner tag comes with the findings (`resource.owner`); another tag from the inventory, read
    # before the findings. The rest of the inventory is read after them.
    grouping = (
        Grouping(key, from_document=True)
        if key == OWNER_TAG
        else Grouping(key, _inventory_tag(iter_inventory_resources(path), key))
        if path is not None
        else None
    )
    plan = _PlanBuilder({d.id: d for d in details}, grouping, keep=FIX_NAMES_SHOWN)
    zone = run.zone_name
    zone_info = run.zone if run.zone is not None and run.zone.id == zone else None
    residency = ResidencyCounter(zone_info)
    window = EvidenceWindow()
    ai = AiCollector(zone_info)
    changes = (
        ChangesCollector(run, report.previous, limit=CHANGES_SHOWN) if report.previous is not None else None
    )
    seen: set[str] = set()
    owners = False
    for finding in report.findings():
        view = views.get(finding.policy_id)
        if view is None:
            view = views[finding.policy_id] = _policy_view(finding)
        resource = finding.resource
        if resource.id not in seen:
            seen.add(resource.id)
            residency.add_resource(resource)
            window.add_resource(finding)
        owners = owners or bool(resource.owner)
        ai.add(finding)
        if changes is not None:
            changes.add(finding)
        if finding.status is Status.PASS:
            view.pass_total += 1
            if sink is not None:
                sink.passing(view.details.id, *population_entry(finding))
            else:
                view.add_passing(finding)
            if len(view.passing) < pass_limit:
                view.passing.append(finding_view(finding))
        else:
            actions = undecided_actions(finding) if finding.status is Status.ERROR else None
            view.non_pass_total += 1
            if sink is not None:
                sink.non_pass(view.details.id, finding, actions)
            else:
                view.non_pass.append(finding_view(finding, actions))
            plan.add(finding, actions)
    del seen
    fixes = plan.plan()
    if key == OWNER_TAG and not owners:  # no finding names an owner: a document older than
        # `resource.owner` may have them in the inventory's tags (then the plan is made again), else
        # nothing groups
        values = _inventory_tag(iter_inventory_resources(path), key) if path is not None else {}
        fallback = Grouping(key, values) if values or (asked and path is not None) else None
        if values:
            fixes = fix_plan(report.findings(), details, fallback, keep=FIX_NAMES_SHOWN)
        fixes.grouping = fallback
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
    inventory = InventoryFacts.of(iter_inventory_resources(path), ai=ai) if path is not None else None
    residency_views, key_locations = residency.views(run, inventory)
    summary = summarise(run)
    if inventory is not None and inventory.earliest is not None and inventory.latest is not None:
        summary.collected_from, summary.collected_to = (
            inventory.earliest.isoformat(),
            inventory.latest.isoformat(),
        )
    else:
        summary.collected_from, summary.collected_to = window.window()
    return ReportView(
        run=run,
        summary=summary,
        policies=sorted(
            views.values(), key=lambda v: (_SEVERITY_ORDER.get(v.details.severity, 9), v.details.id)
        ),
        frameworks=framework_views(details, report_frameworks(report)),
        families=sorted(families.items()),
        zone=zone,
        zone_title=zone_info.title if zone_info is not None else None,
        residency=residency_views,
        key_locations=key_locations,
        changes=changes.result() if changes is not None else None,
        inventory_used=inventory is not None,
        ai=ai.result(),
        plan=fixes,
    )
