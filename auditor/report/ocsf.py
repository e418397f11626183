"""OCSF Compliance Finding events (class 2003, category Findings) for security data lakes and SIEMs.

One event per finding, as Prowler emits them for AWS Security Lake and SIEMs, built with Prowler's
OCSF models (py-ocsf-models; OCSF schema version `OCSF_VERSION`, 1.5.0, with the `cloud` profile)
and written as JSON Lines: one event a line, each written as it is made, so a million findings never
sit in memory as events; Firehose, Glue and SIEM collectors ingest JSON Lines as they are.

* Status: `compliance.status_id` is what the policy found about the resource: pass is Pass, fail is
  Fail, error (could not be decided) is Warning, OCSF's "did not yield a result due to missing
  information". A waived finding keeps its underlying status there; the finding itself is
  `status_id` Suppressed (reviewed and accepted), others New. auditor's own status word (`pass`,
  `fail`, `error`, `waived`) is `status_code` and `compliance.status_code`, and `status_detail`
  says why: the reasons a finding is undecided, the waiver (id, approver, expiry, justification).
* The policy is the control: `compliance.control` its id, `compliance.desc` what it expects,
  `compliance.control_parameters` the parameters it ran with, `compliance.requirements` the
  framework controls it evidences (`GDPR Art.44`) and `compliance.standards` those frameworks;
  `finding_info` names the policy (title, description, `analytic` the rule).
* `resources`: the resource (uid the resource id, type its kind, region its first region, all
  regions and the account in `data`); `cloud`: the provider and account.
* `evidences`: the evidence behind the deciding attributes first, at most MAX_EVIDENCE items, each
  answer cut at MAX_EVIDENCE_BYTES; values under secret-looking keys, and secret-looking values,
  are replaced by `<redacted>`. The rest of the finding (observed and expected values, the waiver,
  the baseline mark) is `unmapped`. A reference-form finding (findings JSON 2.0) rendered without
  its inventory has no evidence to carry: `unmapped.evidence_refs` says where it is (the inventory,
  its digest, and the indexes into the resource's `evidence` there).
* `remediation`: the policy's for the resource's cloud; an undecided finding's starts with what to
  do so it can be decided (auditor.report.undecided: the permission to grant, the option to set).
* `finding_info.uid` hashes the policy id and resource id: the same finding has the same uid in
  every run (and the same value as the SARIF fingerprint); `metadata.correlation_uid` is the run id.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import IO, Any

import orjson
import re2
from py_ocsf_models import OCSF_VERSION
from py_ocsf_models.events.findings.activity_id import ActivityID
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
from py_ocsf_models.events.findings.compliance_finding_type_id import ComplianceFindingTypeID
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.events.findings.status_id import StatusID
from py_ocsf_models.objects.account import Account, TypeID
from py_ocsf_models.objects.analytic import Analytic
from py_ocsf_models.objects.api import API
from py_ocsf_models.objects.cloud import Cloud
from py_ocsf_models.objects.compliance import Compliance
from py_ocsf_models.objects.compliance_status import StatusID as ComplianceStatusID
from py_ocsf_models.objects.evidence_artifacts import EvidenceArtifacts
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Product
from py_ocsf_models.objects.remediation import Remediation
from py_ocsf_models.objects.resource_details import ResourceDetails
from pydantic import BaseModel

from auditor.document import NOT_RECORDED, FindingRecord, RunInfo, plain
from auditor.findings import Severity, Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.sarif import finding_fingerprint, http_url, visible_json
from auditor.report.undecided import actions_text, undecided_actions
from auditor.report.view import PROVIDER_LABELS, PolicyDetails, policy_details, report_frameworks

CLASS_NAME = "Compliance Finding"
PROFILES = ["cloud"]
MAX_EVIDENCE = 8
MAX_EVIDENCE_BYTES = 4096
REDACTED = "<redacted>"
RULE = 1  # OCSF analytic type_id: Rule

SEVERITY_IDS = {
    Severity.CRITICAL: SeverityID.Critical,
    Severity.HIGH: SeverityID.High,
    Severity.MEDIUM: SeverityID.Medium,
    Severity.LOW: SeverityID.Low,
    Severity.INFO: SeverityID.Informational,
}
# What the policy found about the resource (a waived finding: its underlying status).
COMPLIANCE_STATUS = {
    Status.PASS: ComplianceStatusID.Pass,
    Status.FAIL: ComplianceStatusID.Fail,
    Status.ERROR: ComplianceStatusID.Warning,  # "did not yield a result due to missing information"
}
# Captions of the OCSF 1.5.0 enums the events use, as the schema spells them.
CAPTIONS = {
    SeverityID.Informational: "Informational",
    SeverityID.Low: "Low",
    SeverityID.Medium: "Medium",
    SeverityID.High: "High",
    SeverityID.Critical: "Critical",
    StatusID.New: "New",
    StatusID.Suppressed: "Suppressed",
}
COMPLIANCE_CAPTIONS = {
    ComplianceStatusID.Pass: "Pass",
    ComplianceStatusID.Warning: "Warning",
    ComplianceStatusID.Fail: "Fail",
}

# Evidence is the clouds' raw answers: a key that names a secret, or a value shaped like one (an AWS
# access key id, a PEM private key, a SAS signature, a bearer token), is not carried.
_SECRET_WORDS = ("password", "passphrase", "secret", "token", "credential", "signature")
_SECRET_PAIRS = (
    ("api", "key"),
    ("access", "key"),
    ("account", "key"),
    ("private", "key"),
    ("connection", "string"),
)
_SECRET_KEY = re.compile(
    "|".join([*_SECRET_WORDS, *(f"{a}[ _-]?{b}" for a, b in _SECRET_PAIRS)]), re.IGNORECASE
)
_SECRET_VALUE = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----|[?&]sig=[^&\s]+|\bBearer\s+\S{8,}"
)
# Text either pattern needs: a value whose JSON has none of it is carried without a walk; harmless
# text with some ("NextToken") only costs a walk. RE2: Python's re scans for many literals slowly.
_SECRET_HINT = re2.compile(
    b"(?i:"
    + b"|".join(
        re.escape(hint.encode())
        for hint in (
            *_SECRET_WORDS,
            *(f"{a}{sep}{b}" for a, b in _SECRET_PAIRS for sep in ("", " ", "_", "-")),
            *("sig=", "bearer"),
        )
    )
    + b")|AKIA|ASIA"
)


class KeyValue(BaseModel):
    """OCSF `key_value_object`: a name with one value or a list of them."""

    name: str
    value: str | None = None
    values: list[str] | None = None


class ComplianceResult(Compliance):
    """OCSF 1.5.0 `compliance`, with the attributes py-ocsf-models 0.10 does not model yet."""

    status: str | None = None
    status_code: str | None = None
    status_detail: str | None = None
    control_parameters: list[KeyValue] | None = None


class CloudComplianceFinding(ComplianceFinding):
    """A Compliance Finding with the `cloud` profile, which makes `cloud` required."""

    cloud: Cloud
    compliance: ComplianceResult


def _epoch_ms(text: Any) -> int | None:
    """An ISO 8601 time as OCSF's timestamp (milliseconds since the epoch), or None."""
    if not isinstance(text, str):
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


def _redacted(value: Any) -> Any:
    """`value` with secret-named keys' values and secret-shaped strings replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.search(value):
        return REDACTED
    return value


def _carried(value: Any) -> Any:
    """A raw value as an event carries it: secrets redacted, and when its JSON is over
    MAX_EVIDENCE_BYTES, the start of that JSON as text."""
    data = orjson.dumps(value)
    if _SECRET_HINT.search(data):
        value = _redacted(value)
        data = orjson.dumps(value)
    if len(data) <= MAX_EVIDENCE_BYTES:
        return value
    return {
        "truncated": True,
        "bytes": len(data),
        "excerpt": data[:MAX_EVIDENCE_BYTES].decode(errors="ignore"),
    }


def _evidence_data(item: dict[str, Any]) -> dict[str, Any]:
    """An evidence item but its call (the evidence's name) as an event carries it: secrets
    redacted, each part over MAX_EVIDENCE_BYTES cut."""
    data = {k: v for k, v in item.items() if k != "call" and v is not None}
    raw = orjson.dumps(data)
    if _SECRET_HINT.search(raw) or len(raw) > MAX_EVIDENCE_BYTES:
        data = {k: _carried(v) for k, v in data.items()}
    return data


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _evidence(finding: FindingRecord) -> tuple[list[EvidenceArtifacts], int]:
    """The finding's evidence items as OCSF evidence, those behind its deciding attributes first,
    at most MAX_EVIDENCE; and how many were left out."""
    deciding: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for item in finding.evidence:
        attributes = [a for a in item.get("attributes") or () if isinstance(a, str)]
        hit = any(_overlaps(a, path) for a in attributes for path in finding.observed)
        (deciding if hit else others).append(item)
    chosen = [*deciding, *others][:MAX_EVIDENCE]
    artifacts = []
    for item in chosen:
        call = str(item.get("call") or "")
        data = _evidence_data(item)
        declared = "location" in item or "attestation" in item  # a file or a person, not an API
        artifacts.append(
            EvidenceArtifacts(
                name=call or None, api=None if declared or not call else API(operation=call), data=data
            )
        )
    return artifacts, len(finding.evidence) - len(chosen)


def _status_detail(finding: FindingRecord) -> str:
    """Why the finding has its status, in words."""
    waiver = finding.waiver
    if finding.status is Status.WAIVED and waiver is not None:
        return (
            f"waived by {waiver.id} (approved by {waiver.approver}, expires {waiver.expires}; "
            f"underlying status {finding.underlying_status.value}): {waiver.justification}"
        )
    if finding.status is Status.ERROR and finding.reasons:
        return "could not be decided: " + "; ".join(finding.reasons)
    return finding.message


def _parameters(policy: PolicyDetails) -> list[KeyValue] | None:
    """The parameters the policy ran with (`zone`, `min_tls`) as OCSF control parameters."""
    pairs = []
    for name, value in sorted(policy.parameters.items()):
        if isinstance(value, list):
            pairs.append(KeyValue(name=name, values=[str(v) for v in value]))
        else:
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            pairs.append(KeyValue(name=name, value=text))
    return pairs or None


def _remediation(policy: PolicyDetails, provider: str) -> Remediation:
    """The policy's remediation for the resource's provider (every provider's when it has none)."""
    references = [url for url in map(http_url, policy.references) if url is not None] or None
    if not policy.recorded:
        return Remediation(desc=NOT_RECORDED, references=references)
    how = policy.remediation.get(provider)
    if how is None:
        every = sorted(policy.remediation.items())
        how = "\n".join(f"{PROVIDER_LABELS.get(p, p)}: {text}" for p, text in every)
    return Remediation(desc=how or policy.expected or policy.title, references=references)


def _resource(finding: FindingRecord) -> ResourceDetails:
    """The resource: its id, name, kind and first region; the rest of it (provider, account, every
    region, AI processing regions and training) as `data`."""
    resource = finding.resource
    rest = plain(resource)
    return ResourceDetails(
        uid=resource.id,
        name=resource.name,
        type=resource.kind or None,
        region=resource.regions[0] if resource.regions else None,
        data={k: rest[k] for k in rest if k not in ("id", "name", "kind")},
    )


def _unmapped(finding: FindingRecord, omitted: int) -> dict[str, Any]:
    """What OCSF has no attribute for: the finding's own words and values."""
    data: dict[str, Any] = {
        "policy_id": finding.policy_id,
        "status": finding.status.value,
        "underlying_status": finding.underlying_status.value,
        "observed": _carried(finding.observed),
        "expected": finding.expected,
    }
    if finding.reasons:
        data["reasons"] = finding.reasons
    if finding.waiver is not None:
        data["waiver"] = plain(finding.waiver)
    if finding.baselined:
        data["baselined"] = True
    if omitted:
        data["evidence_omitted"] = omitted
    return data


class OcsfEvents:
    """Builds the events of one findings document; what a policy's events share is built once."""

    def __init__(self, report: ReportInput) -> None:
        run = report.run
        self.run: RunInfo = run
        # reference form without the inventory: events say where the evidence is instead of carrying it
        self.unresolved = report.stream.evidence_unresolved
        self.policies = {p.id: p for p in policy_details(run)}
        self.frameworks = {f.name: f.label for f in report_frameworks(report)}
        self.time = _epoch_ms(run.finished_at) or _epoch_ms(run.started_at) or 0
        self.product = Product(name=run.tool.name, vendor_name=run.tool.name, version=run.tool.version)
        self._remediations: dict[tuple[str, str], Remediation | None] = {}
        self._parameters = {p.id: _parameters(p) for p in self.policies.values()}
        self._analytics = {
            p.id: Analytic(uid=p.id, name=p.title, type_id=RULE, type="Rule") for p in self.policies.values()
        }
        self._sources = {
            p.id: next((url for url in map(http_url, p.references) if url is not None), None)
            for p in self.policies.values()
        }

    def remediation(self, finding: FindingRecord) -> Remediation | None:
        """The finding's policy's remediation for its provider (built once per policy and provider);
        for an undecided finding, first what to do so it can be decided."""
        key = (finding.policy_id, finding.resource.provider)
        if key not in self._remediations:
            policy = self.policies.get(finding.policy_id)
            self._remediations[key] = _remediation(policy, key[1]) if policy else None
        fix = self._remediations[key]
        underlying = finding.underlying_status if finding.status is Status.WAIVED else finding.status
        actions = undecided_actions(finding) if underlying is Status.ERROR else []
        if not actions:
            return fix
        to_decide = f"To decide it: {actions_text(actions)}"
        return Remediation(
            desc=f"{to_decide}\nIf it then fails: {fix.desc}" if fix else to_decide,
            references=fix.references if fix else None,
        )

    def compliance(self, finding: FindingRecord) -> ComplianceResult:
        """The policy as the control, the status it found, and the framework controls it evidences."""
        policy = self.policies.get(finding.policy_id)
        underlying = finding.underlying_status if finding.status is Status.WAIVED else finding.status
        status_id = COMPLIANCE_STATUS.get(underlying, ComplianceStatusID.Unknown)
        requirements = [
            (label, control)
            for name, label in self.frameworks.items()
            for control in finding.controls.get(name, [])
        ]
        return ComplianceResult(
            control=finding.policy_id,
            desc=(policy.expected or None) if policy else None,  # the control's criteria
            category=policy.family if policy else None,
            status_id=status_id,
            status=COMPLIANCE_CAPTIONS.get(status_id, "Unknown"),
            status_code=finding.status.value,
            status_detail=_status_detail(finding),
            requirements=[f"{label} {control}" for label, control in requirements] or None,
            standards=list(dict.fromkeys(label for label, _ in requirements)) or None,
            control_parameters=self._parameters.get(finding.policy_id),
        )

    def unmapped(self, finding: FindingRecord, omitted: int) -> dict[str, Any]:
        """What OCSF has no attribute for; for a finding whose evidence was not read (reference form
        without the inventory), where that evidence is: `evidence_refs`."""
        data = _unmapped(finding, omitted)
        if self.unresolved and (refs := finding.refs_only) is not None:
            data["evidence_refs"] = {
                "inventory": self.run.inventory,
                "inventory_digest": self.run.inventory_digest,
                "indexes": refs,
            }
        return data

    def event(self, finding: FindingRecord) -> dict[str, Any]:
        """The OCSF event of one finding, as its JSON object."""
        policy = self.policies.get(finding.policy_id)
        title = policy.title if policy else finding.policy_id
        resource = finding.resource
        uid = finding_fingerprint(finding)
        severity_id = SEVERITY_IDS[finding.severity]
        status_id = StatusID.Suppressed if finding.status is Status.WAIVED else StatusID.New
        times = sorted(t for t in (_epoch_ms(e.get("at")) for e in finding.evidence) if t is not None)
        first_seen, last_seen = (times[0], times[-1]) if times else (None, None)
        evidences, omitted = _evidence(finding)
        label = PROVIDER_LABELS.get(resource.provider, resource.provider)
        event = CloudComplianceFinding(
            activity_id=ActivityID.Create,
            activity_name="Create",
            class_name=CLASS_NAME,
            type_uid=ComplianceFindingTypeID.Create,
            type_name=f"{CLASS_NAME}: Create",
            time=self.time,
            start_time=first_seen,
            end_time=last_seen,
            severity_id=severity_id,
            severity=CAPTIONS[severity_id],
            status_id=status_id,
            status=CAPTIONS[status_id],
            status_code=finding.status.value,
            status_detail=_status_detail(finding),
            message=finding.message,
            metadata=Metadata(
                version=OCSF_VERSION,
                product=self.product,
                profiles=PROFILES,
                uid=f"{self.run.id}/{uid}",
                correlation_uid=self.run.id,
                event_code=finding.policy_id,
            ),
            finding_info=FindingInformation(
                uid=uid,
                title=title,
                desc=(policy.description if policy else "") or title,
                types=[policy.family] if policy else None,
                created_time=self.time,
                first_seen_time=first_seen,
                last_seen_time=last_seen,
                src_url=self._sources.get(finding.policy_id),
                analytic=self._analytics.get(finding.policy_id),
            ),
            compliance=self.compliance(finding),
            resources=[_resource(finding)],
            cloud=Cloud(
                provider=label,
                region=resource.regions[0] if resource.regions else None,
                account=Account(
                    uid=resource.account, name=resource.account, type_id=TypeID.Other, type=f"{label} account"
                ),
            ),
            evidences=evidences or None,
            remediation=self.remediation(finding),
            unmapped=self.unmapped(finding, omitted),
        )
        data: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
        return data


class OcsfRenderer(Renderer):
    """OCSF 1.5.0 Compliance Finding events, one JSON object a line (JSON Lines)."""

    format = "ocsf"
    extension = ".ocsf.jsonl"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write one event per finding, each line as soon as it is made (findings read one at a time)."""
        events = OcsfEvents(report)
        for finding in report.findings():
            out.write(visible_json(events.event(finding)))
            out.write(b"\n")
