"""One AWS API call as the S3 scanner makes it: counted, evidenced, and its error classified.

A "not found" answer (`ABSENT_CODES`, auditor.scan.aws_absent) is explicitly absent; any
other failure becomes an `Unknown` (access_denied, throttled after retries, timeout, no_credentials,
error). So does an answer that cannot be parsed, or that parses to nothing where the API always
says something (`REQUIRED`): an empty, truncated or garbled body is `MalformedAnswer`, never "there
is none", and its raw bytes (bounded, `BODY_LIMIT`) go into the call's evidence.

The raw body of every answer is captured by a botocore ``before-parse`` hook into a thread-local
slot (clients are shared by the worker threads; each call runs in one thread, so the slot holds
the last attempt of that thread's current call).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import xml.etree.ElementTree as ETree
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from auditor.model import Evidence, Unknown, UnknownCode
from auditor.scan.aws_absent import ABSENT_CODES
from auditor.scan.base import CallCounter
from auditor.scan.calls import (
    BODY_LIMIT,
    MESSAGE_LIMIT,
    TRANSPORT,
    Answer,
    CallRecorder,
    Memo,
    RawAnswer,
    RawShape,
    TransportFailure,
    bounded,
    now,
    status_code,
)

if TYPE_CHECKING:
    from auditor.scan.aws_accounts import AccountSession

__all__ = ["BODY_LIMIT", "MESSAGE_LIMIT", "Answer", "Memo", "RawAnswer", "bounded", "now"]

# What every well-formed successful answer carries (dotted paths into the parsed answer). A path
# that is missing, null, or an empty string/object means the body was empty or cut short: botocore
# parses an empty 200 body of S3 to `{}` (or `{"Policy": ""}`), never to an error. Lists may be
# empty (`<Buckets/>` is an account without buckets, `<TagSet/>` a bucket without tags).
REQUIRED: dict[str, tuple[str, ...]] = {
    "ListBuckets": ("Buckets",),
    "GetBucketTagging": ("TagSet",),
    "GetBucketReplication": ("ReplicationConfiguration.Rules",),
    "GetBucketEncryption": ("ServerSideEncryptionConfiguration.Rules",),
    "GetBucketPolicy": ("Policy",),
    "GetPublicAccessBlock": ("PublicAccessBlockConfiguration",),
    "HeadBucket": ("BucketRegion",),
    "DescribeKey": ("KeyMetadata.KeyId", "KeyMetadata.Arn"),
    "GetCallerIdentity": ("Account", "Arn"),
    "AssumeRole": ("Credentials.AccessKeyId", "Credentials.SecretAccessKey", "Credentials.SessionToken"),
    "ListAccounts": ("Accounts",),
    "DescribeRegions": ("Regions",),
    "ListInferenceProfiles": ("inferenceProfileSummaries",),
    "GetInferenceProfile": ("inferenceProfileArn",),
    "ListAgents": ("agentSummaries",),
    "GetAgent": ("agent.agentId",),
    "DescribeEffectivePolicy": ("EffectivePolicy.PolicyContent",),
}
# The protocols whose every answer is XML (S3, STS, EC2), as botocore's service models name them.
XML_PROTOCOLS = frozenset({"rest-xml", "query", "ec2"})
# Answers without a body by design (HEAD): their emptiness says nothing.
BODYLESS: frozenset[str] = frozenset({"HeadBucket"})

# How a raw answer shows in `Evidence.response` (docs/scanners/aws.md, "Malformed answers").
RAW_SHAPE = RawShape(status="http_status", size="body_bytes", body="body", truncated="body_truncated")
# S3 answers 503 SlowDown when throttling; a bare 401/408/504 carries no AWS code to go by.
STATUS_OVERRIDES: dict[int, UnknownCode] = {
    401: UnknownCode.ERROR,
    408: UnknownCode.ERROR,
    503: UnknownCode.THROTTLED,
    504: UnknownCode.ERROR,
}

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_RAW_HOOK_ID = "auditor-raw-answer"

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "AWSOrganizationsNotInUseException",
    }
)
_THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
    }
)
# No credentials to sign with: one code for this failure in every cloud.
_NO_CREDENTIALS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound)


def transport_failure(error: Exception) -> TransportFailure | None:
    """What kind of transport failure a botocore error is (None: not one the table names)."""
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return TransportFailure.TIMEOUT
    if isinstance(error, _NO_CREDENTIALS):
        return TransportFailure.NO_CREDENTIALS
    return None


class MalformedAnswer(Exception):
    """An answer that could not be parsed, or parsed to nothing where the API always says something."""

    def __init__(self, what: str, raw: RawAnswer | None) -> None:
        super().__init__(f"malformed answer: {what}")
        self.raw = raw


def classify_error(error: Exception, operation: str) -> Unknown:
    """Map a failed AWS call to an `Unknown`: denied, throttled (retries spent), timeout or error."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "Unknown")
        message = bounded(str(details.get("Message") or ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        by_status = status_code(status, STATUS_OVERRIDES)
        if code in _DENIED_CODES or by_status is UnknownCode.ACCESS_DENIED:
            kind = UnknownCode.ACCESS_DENIED
        elif code in _THROTTLED_CODES or by_status is UnknownCode.THROTTLED:
            kind = UnknownCode.THROTTLED
        else:
            kind = UnknownCode.ERROR
        return Unknown(code=kind, reason=f"{code}: {message} ({operation})")
    if isinstance(error, MalformedAnswer):
        return Unknown(code=UnknownCode.ERROR, reason=f"{bounded(str(error))} ({operation})")
    failure = transport_failure(error)
    kind = TRANSPORT[failure].code if failure is not None else UnknownCode.ERROR
    return Unknown(code=kind, reason=f"{type(error).__name__}: {bounded(str(error))} ({operation})")


def client_config(
    concurrency: int, retry_mode: str, max_attempts: int, connect_timeout: float, read_timeout: float
) -> Config:
    """The botocore settings of every client: retries, timeouts and a pool sized to the workers.

    Both timeouts are always set, so a server that accepts and never answers costs at most
    `max_attempts` x (`connect_timeout` + `read_timeout`) plus the retry backoff per call.
    """
    return Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max(10, concurrency),
        user_agent_extra="auditor-scan",
    )


# --- the raw answer of each call ------------------------------------------------------------------

_last = threading.local()


def _remember_raw(response_dict: dict[str, Any] | None = None, **_: Any) -> None:
    if response_dict is None:
        return
    body = response_dict.get("body")
    _last.raw = RawAnswer(response_dict.get("status_code"), body if isinstance(body, bytes) else b"")


def instrument(client: Any) -> Any:
    """Make `client` capture every raw answer for `invoke` (idempotent); return it.

    For S3 it also removes botocore's own GetBucketLocation body parser: that handler runs after
    every attempt, even on an error status, and raises a bare XML ParseError for an empty body,
    which would hide a 503 (throttled) behind a parse error. `invoke` reads the raw body instead.
    """
    events = client.meta.events
    events.register("before-parse", _remember_raw, unique_id=_RAW_HOOK_ID)
    if client.meta.service_model.service_name == "s3":
        from botocore.handlers import parse_get_bucket_location

        with contextlib.suppress(ValueError):  # already removed
            events.unregister("after-call.s3.GetBucketLocation", parse_get_bucket_location)
    return client


def _location_constraint(response: dict[str, Any], raw: RawAnswer | None) -> dict[str, Any]:
    # `<LocationConstraint/>` (us-east-1) is a valid answer with no text; an empty body is not XML.
    if raw is None:
        raise MalformedAnswer("no answer body was captured", raw)
    if not (raw.body or b"").strip():
        raise MalformedAnswer("empty body", raw)
    try:
        root = ETree.fromstring(raw.body or b"")
    except ETree.ParseError as exc:
        raise MalformedAnswer(f"the body is not well-formed XML ({exc})", raw) from exc
    if root.tag.rsplit("}", 1)[-1] != "LocationConstraint":
        raise MalformedAnswer(f"unexpected XML element <{root.tag}>", raw)
    return {**response, "LocationConstraint": root.text.strip() if root.text else None}


def _policy_document(response: dict[str, Any], raw: RawAnswer | None) -> dict[str, Any]:
    # The bucket policy is the whole body: a cut or garbled one is not JSON, or not an object.
    text = response.get("Policy")
    if not text:
        return response  # REQUIRED reports it
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MalformedAnswer(f"the bucket policy is not JSON ({exc})", raw) from exc
    if not isinstance(document, dict):
        raise MalformedAnswer("the bucket policy is not a JSON object", raw)
    return response


def _json_document(response: dict[str, Any], raw: RawAnswer | None) -> dict[str, Any]:
    # botocore parses an empty JSON body to {}: for GetModelInvocationLoggingConfiguration that
    # would read as "no configuration", so an empty body must be told apart from `{}`.
    if raw is None:
        raise MalformedAnswer("no answer body was captured", raw)
    if not (raw.body or b"").strip():
        raise MalformedAnswer("empty body", raw)
    return response


# Operations whose answer botocore does not model (or models as bare text), or whose empty body
# botocore parses to a valid-looking answer: read and checked from the raw body, raising
# MalformedAnswer.
BODY_READERS: dict[str, Callable[[dict[str, Any], RawAnswer | None], dict[str, Any]]] = {
    "GetBucketLocation": _location_constraint,
    "GetBucketPolicy": _policy_document,
    "ListInferenceProfiles": _json_document,
    "GetInferenceProfile": _json_document,
    "GetModelInvocationLoggingConfiguration": _json_document,
    "ListTagsForResource": _json_document,
    "ListAgents": _json_document,
    "GetAgent": _json_document,
    "DescribeEffectivePolicy": _json_document,
}


def _present(response: dict[str, Any], path: str) -> bool:
    value: Any = response
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return False
        value = value[key]
    return not (isinstance(value, str | dict) and not value)


def _well_formed_xml(body: bytes) -> bool:
    try:
        ETree.fromstring(body)
    except ETree.ParseError:
        return False
    return True


def request(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Make one call on an `instrument`ed client: the parsed answer (without ResponseMetadata).

    Raises the botocore error, or `MalformedAnswer` for a body that could not be parsed or parsed
    to nothing (carrying the raw answer of the last attempt).
    """
    response, error, _ = invoke(client, operation, params)
    if error is not None:
        raise error
    assert response is not None
    return response


def invoke(
    client: Any, operation: str, params: dict[str, Any]
) -> tuple[dict[str, Any] | None, Exception | None, RawAnswer | None]:
    """Make one call on an `instrument`ed client; never raises.

    Returns the parsed answer (without ResponseMetadata), or the error: a botocore error, or
    `MalformedAnswer` for a body that could not be parsed or parsed to nothing; and the raw answer
    of the last attempt (None when no answer arrived: connection errors, timeouts).
    """
    _last.raw = None
    method = getattr(client, _SNAKE.sub("_", operation).lower())
    try:
        response = dict(method(**params))
    except ClientError as exc:
        raw = _last.raw
        # botocore turns an S3 200 whose body is not XML into a 500 (and retries it): after the
        # retries it is still a malformed answer, not a server error. (A JSON service's error body
        # is not XML by design: the rule is for the XML protocols only.)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        body = raw.body if raw is not None else None
        xml = client.meta.service_model.protocol in XML_PROTOCOLS
        if xml and status == 500 and body and body.strip() and not _well_formed_xml(body):
            return None, MalformedAnswer("the body is not well-formed XML", raw), raw
        return None, exc, raw
    except BotoCoreError as exc:  # connection closed, timeouts, no credentials, ...
        return None, exc, _last.raw
    except Exception as exc:  # a parser choking on the body: ResponseParserError, UnicodeDecodeError ...
        raw = _last.raw
        if raw is not None and raw.status is not None and raw.status >= 400:
            # An error status whose body botocore could not parse (its query parser fails on an
            # empty 429): the status still says what happened (throttled, denied, ...).
            problem = f"HTTP {raw.status} with an unparseable error body ({type(exc).__name__})"
            details = {"Code": str(raw.status), "Message": problem}
            metadata = {"HTTPStatusCode": raw.status}
            return None, ClientError({"Error": details, "ResponseMetadata": metadata}, operation), raw
        return None, MalformedAnswer(f"{type(exc).__name__}: {bounded(str(exc), 300)}", raw), raw
    raw = _last.raw
    response.pop("ResponseMetadata", None)
    try:
        reader = BODY_READERS.get(operation)
        if reader is not None:
            response = reader(response, raw)
        missing = [path for path in REQUIRED.get(operation, ()) if not _present(response, path)]
        if missing:
            empty = operation not in BODYLESS and raw is not None and not (raw.body or b"").strip()
            raise MalformedAnswer("empty body" if empty else f"the answer has no {', '.join(missing)}", raw)
    except MalformedAnswer as exc:
        return None, exc, raw
    return response, None, raw


def evidence_of_error(error: Exception, raw: RawAnswer | None = None) -> tuple[Any, str]:
    """The `response` and `error` fields of the evidence of a failed call (both bounded)."""
    if isinstance(error, ClientError):
        response = {k: v for k, v in error.response.items() if k != "ResponseMetadata"}
        details = error.response.get("Error", {})
        return response, bounded(f"{details.get('Code') or ''}: {details.get('Message') or ''}")
    if isinstance(error, MalformedAnswer):
        raw = raw or error.raw
        return (raw.excerpt(RAW_SHAPE) if raw is not None else None), bounded(str(error))
    return None, bounded(f"{type(error).__name__}: {error}")


class AccountClients:
    """One account being scanned: a thread-safe client cache and the per-account answer caches."""

    def __init__(
        self, account: AccountSession, config: Config, default_region: str, calls: CallCounter
    ) -> None:
        self.account = account
        self.config = config
        self.default_region = default_region
        self.calls = calls
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self.recorder = recorder(calls)
        self.keys: Memo[tuple[str, str], Answer[dict[str, Any]]] = Memo()
        self.destinations: Memo[str, tuple[str | None, Unknown | None, Evidence]] = Memo()

    def client(self, service: str, region: str | None) -> Any:
        """A client for `service` in `region` (boto3 sessions are not thread-safe: made under a lock)."""
        key = (service, region or self.default_region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self.account.session.client(service, region_name=key[1], config=self.config)
                self._clients[key] = instrument(client)
            return client

    def call(
        self,
        region: str | None,
        service: str,
        operation: str,
        attributes: list[str],
        *,
        shown: Callable[[dict[str, Any]], Any] | None = None,
        **params: Any,
    ) -> Answer[dict[str, Any]]:
        """Make one call; its answer carries the evidence recording it (errors never raise).

        `shown` picks what of a successful answer the evidence keeps (default: all of it).
        """
        client = self.client(service, region)
        name = f"{service}:{operation}"
        perform = functools.partial(request, client, operation, params)
        if shown is None:
            return self.recorder.call(name, attributes, params, perform)
        return self.recorder.call(name, attributes, params, perform, shown=shown)


def recorder(calls: CallCounter) -> CallRecorder:
    """How the AWS scanner records its calls: S3's "not found" codes are explicitly absent."""

    def absent(error: Exception) -> bool:
        if not isinstance(error, ClientError):
            return False
        code = str(error.response.get("Error", {}).get("Code") or "")
        operation = str(getattr(error, "operation_name", "") or "")
        return code in ABSENT_CODES.get(operation, frozenset())

    return CallRecorder(calls, classify_error, lambda error, _: evidence_of_error(error), absent)
