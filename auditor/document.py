"""The findings document (docs/findings-json.md): its typed models, its writer and its reader.

`auditor check` writes it (`FindingsSpool`, `write_findings_document`); every renderer, the history,
the baseline and the audit job read it as a `FindingsDocument` (`load_document`, `check_document`).
It is a public contract: fields are added, never renamed or removed. Documents of any 1.x version
are read; fields this version does not know are kept as they are (and written back unchanged), and
fields a version added later than the document are left at their defaults (absent when written).
"""

from __future__ import annotations

import gc
import io
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.atomicfile import atomic_output
from auditor.drift import RecordedGap
from auditor.errors import InputError
from auditor.findings import Finding, Severity, Status
from auditor.inputfile import MAX_FINDINGS_BYTES, read_input

# 1.3: evidence items may carry `location` {file, line, address} (infrastructure as code), kept
# as plain JSON like the rest of an evidence item; unknown code `not_known_until_apply`.
# 1.4: `run.selection` (optional): the policy selection a run was given (--policy, --skip-policy,
# --min-severity); `run.policies` lists only the selected policies.
# 1.5: AI resources: new kinds (ai-project, ai-deployment, ...), and `resource.processing_regions`,
# `resource.training` and `resource.attested` (each left out where the resource has none), and
# `resource.owner` (the resource's `owner` tag, left out where it has none).
# 1.6: `run.inventory_digest` (sha256 of the inventory read) and `run.evidence` ("inline").
# 2.0: the reference form (`auditor check --evidence reference`): findings point at the inventory's
# evidence (`evidence_refs`: indexes into the resource's `evidence`) instead of copying it, leave
# `controls` and `expected` to `run.policies[]`, and `underlying_status` out where it equals `status`;
# `run.evidence` is "reference". Otherwise as 1.6.
SCHEMA_VERSION = "1.6"
REFERENCE_SCHEMA_VERSION = "2.0"
SUPPORTED_MAJORS = ("1", "2")
EVIDENCE_FORMS = ("inline", "reference")
NOT_RECORDED = "not recorded in this findings file"
_SPOOL_BUFFER = 1 << 20  # a resource's findings are a few KB: written in large blocks, not one call each


class _Open(BaseModel):
    """A part of the document: unknown fields (a later 1.x version's) are kept, not refused."""

    model_config = ConfigDict(extra="allow")


# --- run -----------------------------------------------------------------------------------------


class ToolInfo(_Open):
    """`run.tool`: the program that wrote the document."""

    name: str
    version: str


class PolicyInfo(_Open):
    """`run.policies[]`: one policy as it was evaluated.

    `description`, `expected`, `remediation` and `references` were added in 1.2 (None in older
    documents: they are then not recorded, and reports say so instead of reading policy files).
    """

    id: str
    title: str
    severity: Severity
    family: str
    source: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    controls: dict[str, list[str]]
    counts: dict[Status, int]
    description: str | None = None
    expected: str | None = None
    remediation: dict[str, str] | None = None
    references: list[str] | None = None

    @property
    def details_recorded(self) -> bool:
        """Whether the document holds the policy's text (schema 1.2 on)."""
        return self.remediation is not None


class StatusCounts(_Open):
    """`run.counts`: totals over all findings."""

    findings: int
    by_status: dict[Status, int]
    by_severity: dict[Severity, dict[Status, int]] = Field(default_factory=dict)


class AccountRef(_Open):
    """An account, project or subscription with at least one resource."""

    provider: str
    account: str


class GapRecord(_Open):
    """`run.coverage.gaps[]`: a part of the estate that could not be scanned at all."""

    record: str = "gap"
    provider: str
    account: str
    scope: str = "account"
    code: str = ""
    reason: str = ""
    at: str | None = None

    def coverage_gap(self) -> RecordedGap:
        """The gap as drift classification sees it."""
        return RecordedGap(
            provider=self.provider,
            account=self.account,
            scope=self.scope or "account",
            code=self.code,
            reason=self.reason,
        )


class CoverageInfo(_Open):
    """`run.coverage`: what was evaluated and what could not be read."""

    resources: int
    resources_by_provider: dict[str, int] = Field(default_factory=dict)
    accounts: list[AccountRef] = Field(default_factory=list)
    regions: dict[str, int] = Field(default_factory=dict)
    unknown_attributes: dict[str, dict[str, int]] = Field(default_factory=dict)
    gaps: list[GapRecord] = Field(default_factory=list)


class WaiverUse(_Open):
    """`run.waivers.entries[]`: one waiver of the file and how it was used."""

    id: str
    policy: str
    expires: str
    expired: bool
    applied: int = 0
    expired_matches: int = 0
    source: str = ""


class WaiversInfo(_Open):
    """`run.waivers`: the waiver file, or None."""

    file: str | None
    entries: list[WaiverUse] = Field(default_factory=list)


class BaselineUse(_Open):
    """`run.gate.baseline` (written by `auditor audit --baseline`)."""

    file: str
    entries: int
    baselined: int


class GateInfo(_Open):
    """`run.gate`: the gate's inputs and result."""

    fail_on: Severity
    allow_incomplete: bool = False
    failures: int = 0
    errors: int = 0
    exit_code: int
    allow_empty: bool = False
    nothing_evaluated: bool = False
    baseline: BaselineUse | None = None


class ZoneInfo(_Open):
    """`run.zone` (1.2): the residency zone as evaluated, from the zone catalog the run loaded.

    `inside`: per cloud, every location id wholly inside the zone; `outside`: per cloud, the
    catalog's other plain regions. A location in neither is one the catalog does not know.
    """

    id: str
    title: str
    inside: dict[str, list[str]]
    outside: dict[str, list[str]]

    def state(self, provider: str, region: str) -> str:
        """`in`, `out`, or `unknown` (the catalog does not know the region)."""
        region = region.lower()
        if region in self.inside.get(provider, ()):
            return "in"
        return "out" if region in self.outside.get(provider, ()) else "unknown"


class AuditInfo(_Open):
    """`run.audit` (written by `auditor audit`): the job, its configuration and its bundle."""

    job: str
    config_digest: str
    inventory_sources: list[str] = Field(default_factory=list)
    bundle: str | None = None
    signed_by: str | None = None


class SelectionInfo(_Open):
    """`run.selection` (1.4): the selection given (`--policy`, `--skip-policy`, `--min-severity`, or
    auditor.yaml's `policy`, `skip_policy`, `min_severity`); absent when every policy was evaluated."""

    policy: list[str] = Field(default_factory=list)
    skip_policy: list[str] = Field(default_factory=list)
    min_severity: Severity | None = None


class RunInfo(_Open):
    """`run`: what ran, on what, with which result and coverage."""

    schema_version: str
    id: str
    tool: ToolInfo
    started_at: str
    finished_at: str
    inventory: str
    parameters: dict[str, Any]
    policies: list[PolicyInfo]
    counts: StatusCounts
    coverage: CoverageInfo
    waivers: WaiversInfo
    gate: GateInfo
    zone: ZoneInfo | None = None
    audit: AuditInfo | None = None
    selection: SelectionInfo | None = None
    inventory_digest: str | None = None
    evidence: str | None = None

    def policy_expected(self, policy_id: Any) -> str:
        """`expected` of the run's policy `policy_id` ('' when the run does not list it)."""
        for policy in self.policies:
            if policy.id == policy_id:
                return policy.expected or ""
        return ""

    @property
    def evidence_form(self) -> str:
        """`inline` (findings copy their evidence) or `reference` (they point into the inventory)."""
        return self.evidence or "inline"

    @property
    def zone_name(self) -> str | None:
        """The `zone` parameter of the run (a policy's own, if the run has no global one)."""
        zone = self.parameters.get("zone")
        if isinstance(zone, str):
            return zone
        for policy in self.policies:
            value = policy.parameters.get("zone")
            if isinstance(value, str):
                return value
        return None


# --- findings ------------------------------------------------------------------------------------


class TrainingInfo(_Open):
    """`findings[].resource.training` (1.5): whether the provider may train on the content.

    `provider_may_train` is true, false, or ``{"unknown": {code, reason}}``.
    """

    provider_may_train: bool | dict[str, Any] | None = None
    decided_by: str | None = None
    source: str | None = None
    as_of: str | None = None

    @property
    def unknown(self) -> dict[str, Any] | None:
        """The ``{code, reason}`` of an unreadable value, else None."""
        value = self.provider_may_train
        if isinstance(value, dict) and isinstance(value.get("unknown"), dict):
            return dict(value["unknown"])
        return None


class ResourceInfo(_Open):
    """`findings[].resource`: the resource a finding is about.

    1.5 adds, for AI resources: `processing_regions` (where requests may be processed, `*` any
    region, or ``{"unknown": {code, reason}}``), `training`, and `attested` (the attribute paths
    whose values come from an attestation); and for every resource `owner` (its `owner` tag).
    Each is absent where the resource has none.
    """

    provider: str
    account: str
    id: str
    name: str
    kind: str = ""
    regions: list[str]
    storage_account: str | None = None
    processing_regions: list[str] | dict[str, Any] | None = None
    training: TrainingInfo | None = None
    attested: list[str] = Field(default_factory=list)
    owner: str | None = None


class WaiverApplied(_Open):
    """`findings[].waiver`: a waiver that matched the finding (expired ones do not waive)."""

    id: str
    justification: str
    approver: str
    expires: str
    expired: bool
    source: str = ""


class FindingRecord(_Open):
    """`findings[]`: one policy evaluated on one resource.

    `evidence` items and `observed` values stay plain JSON: they are the clouds' raw answers.
    `baselined` is written by `auditor audit --baseline` on accepted failures.
    In the reference form (2.0) `evidence_refs` index the resource's `evidence` in the inventory
    instead of `evidence`, and `controls` are the policy's (`run.policies[].controls`).
    """

    policy_id: str
    status: Status
    underlying_status: Status
    severity: Severity
    resource: ResourceInfo
    message: str
    observed: dict[str, Any]
    expected: str
    controls: dict[str, list[str]] = Field(default_factory=dict)
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    waiver: WaiverApplied | None = None
    baselined: bool = False
    evidence_refs: list[int] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Identity across runs: policy id and resource id."""
        return (self.policy_id, self.resource.id)

    @property
    def refs_only(self) -> list[int] | None:
        """`evidence_refs` when the evidence itself is not here (a reference-form finding read
        without its inventory): where reports say the evidence is; else None."""
        return self.evidence_refs if self.evidence_refs is not None and not self.evidence else None


class FindingsDocument(_Open):
    """`{"run": {...}, "findings": [...]}`."""

    run: RunInfo
    findings: list[FindingRecord]

    def seen_accounts(self) -> set[tuple[str, str]]:
        """(provider, account) with a resource in this run, from coverage and findings."""
        seen = {(a.provider, a.account) for a in self.run.coverage.accounts}
        seen |= {(f.resource.provider, f.resource.account) for f in self.findings}
        return seen

    def coverage_gaps(self) -> list[RecordedGap]:
        """The run's coverage gaps as drift classification sees them."""
        return [g.coverage_gap() for g in self.run.coverage.gaps]


def plain(part: BaseModel) -> dict[str, Any]:
    """A part of the document as its JSON object: the fields it was read or built with, in
    contract order, unknown ones after them."""
    return part.model_dump(mode="json", exclude_unset=True)


# --- writing -------------------------------------------------------------------------------------


class FindingsSpool:
    """Findings streamed to a temporary file, so memory stays flat however many there are."""

    def __init__(self, directory: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix=".findings.", suffix=".spool", dir=directory)
        self.path = Path(name)
        self._handle: IO[bytes] = os.fdopen(fd, "w+b", buffering=_SPOOL_BUFFER)
        self._first = True

    def add(self, finding: Finding, *, reference: bool = False) -> None:
        """Append one finding (`reference`: in the reference form, schema 2.0)."""
        self.add_json(orjson.dumps(finding.to_json_dict(reference=reference)))

    def add_json(self, findings: bytes) -> None:
        """Append findings already serialised: JSON objects joined by ``,\\n`` (`Evaluator.encode`)."""
        if not findings:
            return
        if not self._first:
            self._handle.write(b",\n")
        self._first = False
        self._handle.write(findings)

    def texts(self) -> Iterator[bytes]:
        """Each finding's JSON as spooled, in order (read again from the start on each call)."""
        self._handle.flush()
        with open(self.path, "rb") as handle:
            for line in handle:  # orjson writes no newline inside a finding: one per line
                text = line.rstrip(b"\n")
                yield text[:-1] if text.endswith(b",") else text

    def write_document(self, out: IO[bytes], run: RunInfo, texts: Iterable[bytes] | None = None) -> None:
        """Write `{"run": ..., "findings": [...]}` to `out`: the spooled findings, or `texts` (each
        finding's JSON, e.g. the spooled ones rewritten) in their place."""
        if texts is not None:
            write_document_texts(plain(run), texts, out)
            return
        out.write(_document_head(plain(run)))
        self._handle.flush()
        _copy_spool(self._handle, out)
        out.write(b"\n]}\n")

    def close(self) -> None:
        """Remove the temporary file."""
        self._handle.close()
        self.path.unlink(missing_ok=True)


def _copy_spool(spool: IO[bytes], out: IO[bytes]) -> None:
    """Append the whole spool to `out`: in the kernel (sendfile) where both are files, else read
    and written in blocks."""
    size = os.fstat(spool.fileno()).st_size
    copied = 0
    try:
        target = out.fileno()
        out.flush()
        while copied < size:
            sent = os.sendfile(target, spool.fileno(), copied, size - copied)
            if sent == 0:
                break
            copied += sent
    except (OSError, AttributeError, io.UnsupportedOperation):
        pass  # no descriptor (an in-memory stream) or no sendfile here: copy the rest by hand
    spool.seek(copied)
    while chunk := spool.read(1 << 20):
        out.write(chunk)


def write_findings_document(spool: FindingsSpool, run: RunInfo, output: Path | None) -> None:
    """Write the document atomically to `output`, or to stdout."""
    if output is None:
        spool.write_document(sys.stdout.buffer, run)
        sys.stdout.buffer.flush()
        return
    with atomic_output(output) as handle:
        spool.write_document(handle, run)


def _document_head(run: Mapping[str, Any]) -> bytes:
    # auditor's layout: the run indented, then one finding per line (auditor.findings_stream reads it)
    return b'{"run": ' + orjson.dumps(run, option=orjson.OPT_INDENT_2) + b',\n"findings": [\n'


def write_document_texts(run: Mapping[str, Any], texts: Iterable[bytes], out: IO[bytes]) -> None:
    """A document in auditor's layout from the run's JSON object and each finding's JSON text,
    written one finding at a time as they come (a stream)."""
    out.write(_document_head(run))
    separator = b""
    for text in texts:
        out.write(separator)
        out.write(text)
        separator = b",\n"
    out.write(b"\n]}\n")


def write_document(document: FindingsDocument, out: IO[bytes]) -> None:
    """A read document in the layout `auditor check` writes: one written by auditor comes out byte
    for byte as it went in; fields a later version adds at the top level follow the findings."""
    write_document_parts(document.run, document.findings, document.model_extra or {}, out)


def write_document_parts(
    run: RunInfo, findings: Iterable[FindingRecord], extra: dict[str, Any], out: IO[bytes]
) -> None:
    """`write_document` from its parts, findings written one at a time as they come (a stream)."""
    out.write(_document_head(plain(run)))
    separator = b""
    for finding in findings:
        out.write(separator + orjson.dumps(plain(finding)))
        separator = b",\n"
    out.write(b"\n]")
    for key, value in extra.items():
        out.write(b",\n" + orjson.dumps(key) + b": " + orjson.dumps(value))
    out.write(b"}\n")


# --- reading -------------------------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "missing": "field required",
}


def _dotted(loc: tuple[Any, ...]) -> str:
    dotted = ""
    for part in loc:
        if isinstance(part, int):
            dotted += f"[{part}]"
        else:
            dotted += f".{part}" if dotted else str(part)
    return dotted


def _finding_message(error: Any) -> str:
    """A finding's problem in the words readers of 1.x documents were told (`'maybe' is not one of
    pass, fail, error, waived`); run problems keep pydantic's wording."""
    field = error["loc"][-1] if error["loc"] else ""
    if error["type"] == "enum":
        if field == "severity":
            return f"{error['input']!r} is not a severity"
        return f"{error['input']!r} is not one of pass, fail, error, waived"
    return str(_TYPE_WORDS.get(error["type"], error["msg"]))


def _first_error(exc: ValidationError, prefix: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    # Within the part, a missing field or a wrong type before a value outside its set, as 1.x
    # readers were told.
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] != "enum"), errors[0])
    return (*prefix, *first["loc"]), first


def check_run(data: Any, where: str) -> RunInfo:
    """The document's `run` object, checked: a schema version this auditor reads (1.x inline, 2.x
    reference form) and every field; else InputError naming `where` and the field."""
    if not isinstance(data, dict):
        raise InputError(where, "not a findings document: expected an object with 'run' and 'findings'")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".", 1)[0] not in SUPPORTED_MAJORS:
        readable = " and ".join(f"{major}.x" for major in SUPPORTED_MAJORS)
        raise InputError(
            f"{where}: run.schema_version",
            f"unsupported findings schema version {version!r} (this auditor reads {readable})",
        )
    try:
        run = RunInfo.model_validate(data)
    except ValidationError as exc:
        loc, first = _first_error(exc, ("run",))
        raise InputError(f"{where}: {_dotted(loc)}", first["msg"]) from None
    if run.evidence_form not in EVIDENCE_FORMS:
        raise InputError(
            f"{where}: run.evidence", f"{run.evidence!r} is not one of {', '.join(EVIDENCE_FORMS)}"
        )
    return run


def check_finding(data: Any, where: str, index: int, run: RunInfo) -> FindingRecord:
    """`findings[index]` of a document whose run is `run`, checked; else InputError such as
    `f.json: findings[3].status: 'maybe' is not one of pass, fail, error, waived`.

    An inline finding must carry `evidence` and `controls`; a reference-form finding `evidence_refs`.
    """
    reference = run.evidence_form == "reference"
    required = ("evidence_refs",) if reference else ("controls", "evidence")
    if isinstance(data, dict):
        for name in required:
            if name not in data:
                raise InputError(f"{where}: findings[{index}].{name}", _TYPE_WORDS["missing"])
    filled: dict[str, Any] = {}
    if reference and isinstance(data, dict):  # what the reference form leaves to the run, or to `status`
        if "underlying_status" not in data:
            filled["underlying_status"] = data.get("status")
        if "expected" not in data:
            filled["expected"] = run.policy_expected(data.get("policy_id"))
    try:
        finding = FindingRecord.model_validate({**data, **filled} if filled else data)
    except ValidationError as exc:
        loc, first = _first_error(exc, ("findings", index))
        raise InputError(f"{where}: {_dotted(loc)}", _finding_message(first)) from None
    finding.__pydantic_fields_set__.difference_update(filled)  # written out again as they were read
    return finding


def check_document(data: Any, where: str) -> FindingsDocument:
    """`data` (parsed JSON) as a findings document this version can read; else InputError naming
    `where` and the first field that is wrong (the run's, else the first bad finding's), such as
    `f.json: findings[3].status: ...`."""
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict):
        raise InputError(where, "not a findings document: expected an object with 'run' and 'findings'")
    if not isinstance(data.get("findings"), list):
        raise InputError(where, "not a findings document: 'findings' must be a list")
    run = check_run(data["run"], where)
    findings = [check_finding(item, where, index, run) for index, item in enumerate(data["findings"])]
    extra = {key: value for key, value in data.items() if key not in ("run", "findings")}
    return FindingsDocument.model_construct(run=run, findings=findings, **extra)


def load_document(path: Path) -> FindingsDocument:
    """Read and check the findings document at `path`; bad input raises InputError naming the file.

    Only a regular file of at most MAX_FINDINGS_BYTES (4 GiB) is read (see auditor.inputfile).
    """
    raw = read_input(path, limit=MAX_FINDINGS_BYTES, what="findings")
    # A large document is millions of objects: collecting garbage while they are made costs more
    # than the parse itself, and none of them is garbage.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InputError(str(path), f"not valid JSON ({exc})") from exc
        del raw
        return check_document(data, str(path))
    finally:
        if was_enabled:
            gc.enable()
