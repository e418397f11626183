"""Effective organization policies, read through the Org Policy API v2 (`google-cloud-org-policy`).

One reader serves both constraints the GCP scanner needs, each read once per project:

* ``gcp.restrictTLSVersion``: the minimum TLS version of Cloud Storage (`TlsPolicies`), observed;
  the ``--tls-policy`` file attests it where the API cannot be read.
* ``gcp.restrictEndpointUsage``: whether the global Vertex AI endpoint ``aiplatform.googleapis.com``
  is denied (`endpoint_usage`).

`getEffectivePolicy` answers the policy merged down the hierarchy ("the result of merging policies in
the resource hierarchy and evaluating conditions",
https://cloud.google.com/resource-manager/docs/reference/orgpolicy/rest/v2/projects.policies/getEffectivePolicy),
so inherited rules are already among its rules. Only ``spec`` is enforced; ``dryRunSpec`` is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from auditor.model import AttestationRecord, Evidence, SourceLocation, Unknown, UnknownCode
from auditor.scan.calls import Answer, CallRecorder, Memo, now
from auditor.scan.gcp_errors import MalformedAnswer, NotCalled, describe_error, json_object
from auditor.scan.gcp_rest import CLOUD_PLATFORM_SCOPE, GoogleApis, RetryPolicy, SharedCredentials
from auditor.scan.gcp_tls_policy import TLS_CONSTRAINT, TlsPolicyEntry, V2Policy

CALL = "orgpolicy:policies.getEffectivePolicy"
ENDPOINT_CONSTRAINT = "gcp.restrictEndpointUsage"
GLOBAL_ENDPOINT = "aiplatform.googleapis.com"
TLS_POLICY_CALL = "file:gcp.restrictTLSVersion"
# https://cloud.google.com/assured-workloads/docs/restrict-tls-versions: a deny list that accepts
# only TLS_VERSION_1 and TLS_VERSION_1_1; everything not denied stays allowed.
RESTRICT_TLS_SOURCE = "https://cloud.google.com/assured-workloads/docs/restrict-tls-versions"
# https://cloud.google.com/assured-workloads/docs/restrict-endpoint-usage: "set using a denylist,
# allowing requests to any supported services' API endpoints that are not explicitly denied".
RESTRICT_ENDPOINT_SOURCE = "https://cloud.google.com/assured-workloads/docs/restrict-endpoint-usage"


@dataclass(frozen=True)
class EffectivePolicy:
    """One effective policy as read: its JSON document, or why it could not be read."""

    project: str
    constraint: str
    document: dict[str, Any] | None
    evidence: Evidence | None
    unknown: Unknown | None = None


class _LastBody(threading.local):
    """The body of the last answer this thread's Org Policy client received (for evidence)."""

    body: bytes = b""


class OrgPolicyReader:
    """Reads effective policies of projects, once per (project, constraint), counted and evidenced."""

    def __init__(
        self,
        apis: GoogleApis,
        credentials: SharedCredentials,
        retry: RetryPolicy,
        recorder: CallRecorder,
    ) -> None:
        self.apis = apis
        self.credentials = credentials
        self.retry = retry
        self.recorder = recorder
        self._memo: Memo[tuple[str, str], EffectivePolicy] = Memo()
        self._local = threading.local()
        self._last = _LastBody()

    def effective(self, project: str, constraint: str) -> EffectivePolicy:
        """The effective `constraint` policy of `project` (read on the first request only)."""
        return self._memo.get((project, constraint), lambda: self._read(project, constraint))

    def _read(self, project: str, constraint: str) -> EffectivePolicy:
        name = f"projects/{project}/policies/{constraint}"
        try:
            endpoint = self.apis.base("orgpolicy")
        except NotCalled as exc:  # not sent, so not counted: nothing but the reason is known
            return EffectivePolicy(project, constraint, None, None, describe_error(exc, CALL))
        request = {"name": name, "endpoint": endpoint}
        answer: Answer[dict[str, Any]] = self.recorder.call(
            CALL, [], request, lambda: self.retry.run(lambda: self._get(endpoint, name, constraint))
        )
        if answer.value is None:
            unknown = answer.unknown or Unknown(code=UnknownCode.ERROR, reason=f"no answer ({CALL})")
            return EffectivePolicy(project, constraint, None, answer.evidence, unknown)
        return EffectivePolicy(project, constraint, answer.value, answer.evidence)

    def _client(self, endpoint: str) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from google.cloud import orgpolicy_v2

            client = orgpolicy_v2.OrgPolicyClient(
                transport="rest",
                credentials=self.credentials.scoped([CLOUD_PLATFORM_SCOPE]),
                client_options={"api_endpoint": endpoint},
            )
            # The REST transport parses the answer into a proto and drops what it does not know;
            # the raw body is kept (a requests response hook) for the evidence and the evaluation.
            session = getattr(client._transport, "_session", None)
            if session is not None:
                session.hooks["response"].append(self._remember)
            self._local.client = client
        return client

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._last.body = response.content
        return response

    def _get(self, endpoint: str, name: str, constraint: str) -> dict[str, Any]:
        from google.protobuf import json_format
        from google.protobuf.json_format import MessageToDict

        client = self._client(endpoint)
        self._last.body = b""
        try:
            policy = client.get_effective_policy(name=name, retry=None, timeout=self.retry.timeout)
        except json_format.ParseError as exc:
            raise MalformedAnswer(CALL, f"policy is not a Policy ({exc})", self._last.body) from None
        body = self._last.body
        # Without the raw body (a client without the hook), the parsed policy is the document.
        document = json_object(CALL, body, "policy") if body else MessageToDict(type(policy).pb(policy))
        named = document.get("name")
        if not isinstance(named, str) or not named.endswith(f"/policies/{constraint}"):
            raise MalformedAnswer(
                CALL, f"policy names {named!r}, not {constraint}", body or orjson.dumps(document)
            )
        return document


# --- gcp.restrictEndpointUsage -------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Values(_Strict):
    allowedValues: list[str] | None = None
    deniedValues: list[str] | None = None


class _Rule(_Strict):
    values: _Values | None = None
    allowAll: bool | None = None
    denyAll: bool | None = None
    enforce: bool | None = None
    condition: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class _Spec(_Strict):
    etag: str | None = None
    updateTime: str | None = None
    rules: list[_Rule] | None = None
    inheritFromParent: bool | None = None
    reset: bool | None = None


class _Policy(_Strict):
    name: str
    spec: _Spec | None = None
    dryRunSpec: dict[str, Any] | None = None
    alternate: dict[str, Any] | None = None
    etag: str | None = None


@dataclass(frozen=True)
class EndpointUsage:
    """Whether an endpoint is denied: True, False, or None (cannot be told offline) and why."""

    denied: bool | None
    why: str


def _value(raw: str) -> tuple[str, str]:
    """('is' | 'in' | another prefix, the value) of a list-policy value, lower case."""
    text = raw.strip().lower()
    prefix, colon, rest = text.partition(":")
    if not colon:
        return "is", text
    return prefix, rest


def endpoint_usage(document: Mapping[str, Any], endpoint: str = GLOBAL_ENDPOINT) -> EndpointUsage:
    """Whether the effective gcp.restrictEndpointUsage `document` denies `endpoint`.

    A deny-list constraint: an endpoint is denied when a rule lists it in ``deniedValues`` (bare or
    with ``is:``) or says ``denyAll``; ``allowAll``, ``reset``, no rule or no ``spec`` deny nothing.
    What cannot be evaluated offline leaves it undecided: a rule with a ``condition``, a value group
    (``in:``) or another prefix, ``allowedValues`` (the constraint takes no allow list), a boolean
    ``enforce``, or a field this reader does not know.
    """
    try:
        policy = _Policy.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return EndpointUsage(
            None, f"the policy has {where}: {first['msg']}, which this reader cannot evaluate"
        )
    spec = policy.spec
    if spec is None or spec.reset or not spec.rules:
        return EndpointUsage(False, f"no rule of {ENDPOINT_CONSTRAINT} denies {endpoint}")
    undecided: list[str] = []
    for index, rule in enumerate(spec.rules, 1):
        if rule.condition:
            undecided.append(f"rule {index} has a condition, which cannot be evaluated offline")
            continue
        if rule.denyAll:
            return EndpointUsage(True, f"rule {index} of {ENDPOINT_CONSTRAINT} denies all endpoints")
        if rule.enforce is not None:
            undecided.append(f"rule {index} sets 'enforce', which a list constraint does not take")
        values = rule.values or _Values()
        if values.allowedValues:
            undecided.append(f"rule {index} has allowedValues, which this deny-list constraint does not take")
        for raw in values.deniedValues or ():
            prefix, value = _value(raw)
            if prefix == "is" and value == endpoint:
                return EndpointUsage(True, f"rule {index} of {ENDPOINT_CONSTRAINT} denies {raw!r}")
            if prefix != "is":
                undecided.append(f"rule {index} denies {raw!r}, which cannot be expanded offline")
    if undecided:
        return EndpointUsage(None, "; ".join(undecided))
    return EndpointUsage(False, f"no rule of {ENDPOINT_CONSTRAINT} denies {endpoint}")


# --- gcp.restrictTLSVersion ----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFinding:
    """A project's minimum TLS version for Cloud Storage, where it comes from, and its evidence."""

    min_version: str | None
    evidence: list[Evidence] = field(default_factory=list)
    unknown: Unknown | None = None


def tls_from_document(document: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(minimum version, None) of an effective gcp.restrictTLSVersion, or (None, why not)."""
    try:
        policy = V2Policy.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        return None, f"{where}: {first['msg']}"
    denied, problem = policy.effect(effective=True)
    if problem is not None:
        return None, problem
    return next(v for v in ("1.0", "1.1", "1.2") if v not in denied), None


class TlsPolicies:
    """Each project's effective gcp.restrictTLSVersion: observed, else attested by the --tls-policy file.

    The observation wins. Where the API cannot be read (denied, throttled, not reachable) or its
    answer cannot be evaluated offline, the file's entry for the project is the value, with an
    evidence item of kind attestation; without an entry the version is unknown with both reasons.
    """

    def __init__(
        self,
        reader: OrgPolicyReader | None,
        file_entries: Mapping[str, TlsPolicyEntry] | None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.reader = reader
        self.file_entries = file_entries
        self.clock = clock
        self._memo: Memo[str, TlsFinding] = Memo()

    def of(self, project: str) -> TlsFinding:
        """The finding for `project` (its policy is read once)."""
        return self._memo.get(project, lambda: self._resolve(project))

    def _resolve(self, project: str) -> TlsFinding:
        attributes = ["transport.min_tls_version", "transport.min_tls_enforced_by"]
        observed: list[Evidence] = []
        why: str
        code = UnknownCode.NOT_SUPPORTED
        if self.reader is None:
            why, code = "no loaded policy reads it", UnknownCode.NOT_COLLECTED
        else:
            read = self.reader.effective(project, TLS_CONSTRAINT)
            if read.evidence is not None:
                observed.append(read.evidence.model_copy(update={"attributes": attributes}))
            if read.document is not None:
                version, problem = tls_from_document(read.document)
                if version is not None:
                    return TlsFinding(version, observed)
                why = f"the effective policy cannot be evaluated: {problem}"
            else:
                unknown = read.unknown or Unknown(code=UnknownCode.ERROR, reason=f"no answer ({CALL})")
                why, code = unknown.reason, unknown.code
        entry = self.file_entries.get(project) if self.file_entries is not None else None
        if entry is None:
            missing = (
                "no --tls-policy file was given"
                if self.file_entries is None
                else f"project '{project}' is not in the --tls-policy file"
            )
            reason = f"{TLS_CONSTRAINT} not readable: {why}; {missing}"
            return TlsFinding(None, observed, Unknown(code=code, reason=reason))
        attested = self._attested(project, entry, attributes)
        if entry.min_version is None:
            reason = f"{TLS_CONSTRAINT} not readable: {why}; {entry.problem} ({entry.where})"
            return TlsFinding(None, [*observed, attested], Unknown(code=code, reason=reason))
        return TlsFinding(entry.min_version, [*observed, attested])

    def _attested(self, project: str, entry: TlsPolicyEntry, attributes: list[str]) -> Evidence:
        return Evidence(
            call=TLS_POLICY_CALL,
            at=self.clock(),
            attributes=attributes,
            request={"file": entry.where, "project": project, "source": RESTRICT_TLS_SOURCE},
            response=entry.raw,
            error=entry.problem,
            location=SourceLocation(file=entry.file, line=entry.line),
            attestation=AttestationRecord(
                attested_by=entry.attested_by,
                attested_on=entry.attested_on,
                reference=entry.where,
                expires=entry.expires,
            ),
        )
