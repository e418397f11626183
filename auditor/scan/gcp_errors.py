"""What a failed Google API call means, for every API the GCP scanner calls (Cloud Storage, Org Policy,
Vertex AI): the `Unknown` a failure makes, and the bounded raw answer kept as its evidence."""

from __future__ import annotations

import re
from typing import Any

import orjson
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from auditor.model import Unknown, UnknownCode
from auditor.scan.calls import RawAnswer, RawShape, status_code

# A 2xx answer that cannot be parsed, or parses to nothing where the API always answers something.
MALFORMED = "malformed/empty answer"
# How much of a raw answer an Evidence (or a gap reason) keeps.
RAW_EVIDENCE_BYTES = 2048
RAW_REASON_BYTES = 96
# How a raw answer shows in `Evidence.response` (docs/scanners/gcp.md, "Errors").
RAW_SHAPE = RawShape(size="bytes", body="head", truncated="head_truncated", errors="backslashreplace")
_REQUEST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD) \S+: ")


class MalformedAnswer(Exception):
    """A 2xx answer that cannot be parsed, or parses to nothing where the API always answers something."""

    def __init__(self, operation: str, problem: str, body: bytes) -> None:
        super().__init__(f"{MALFORMED}: {problem}")
        self.operation = operation
        self.problem = problem
        self.body = body


class NotCalled(Exception):
    """A call the scan does not make (no endpoint to send it to): what it feeds is `not_supported`."""


def raw_excerpt(body: bytes, limit: int = RAW_EVIDENCE_BYTES) -> dict[str, Any]:
    """A raw answer for Evidence: its size and its first `limit` bytes (undecodable bytes escaped)."""
    shape = RAW_SHAPE if limit == RAW_SHAPE.limit else RawShape(**{**RAW_SHAPE.__dict__, "limit": limit})
    return RawAnswer(None, body).excerpt(shape)


def short_repr(body: bytes) -> str:
    """The first bytes of an answer, for a reason."""
    head = repr(body[:RAW_REASON_BYTES])
    return head + ("..." if len(body) > RAW_REASON_BYTES else "")


def json_object(operation: str, body: bytes, what: str) -> dict[str, Any]:
    """`body` parsed as a JSON object, or `MalformedAnswer` (empty, not JSON, not an object)."""
    if not body.strip():
        raise MalformedAnswer(operation, f"{what} has an empty body ({len(body)} bytes)", body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(
            operation, f"{what} is not JSON ({exc}; {len(body)} bytes: {short_repr(body)})", body
        ) from None
    if not isinstance(data, dict):
        raise MalformedAnswer(
            operation, f"{what} is a JSON {type(data).__name__}, not an object: {short_repr(body)}", body
        )
    return data


def malformed_cause(exc: BaseException) -> MalformedAnswer | None:
    """The malformed answer behind `exc` (itself, or the last attempt of a retry that gave up)."""
    if isinstance(exc, MalformedAnswer):
        return exc
    if isinstance(exc, api_exceptions.RetryError) and isinstance(exc.cause, MalformedAnswer):
        return exc.cause
    return None


def _status_label(exc: api_exceptions.GoogleAPICallError) -> str:
    status = int(exc.code) if exc.code is not None else 0
    reason = None
    if exc.errors and isinstance(exc.errors[0], dict):
        reason = exc.errors[0].get("reason")
    # APIs answering google.rpc.Status bodies name the reason in an ErrorInfo detail instead
    # (IAM_PERMISSION_DENIED, SERVICE_DISABLED, ...): https://cloud.google.com/apis/design/errors
    detail = getattr(exc, "reason", None)
    label = f"{status} {reason or type(exc).__name__}"
    return f"{label} ({detail})" if detail and not reason else label


def describe_error(exc: BaseException, operation: str) -> Unknown:
    """An API failure as an `Unknown`: '<code>: <message> (<operation>)'."""
    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause
        if cause is None:
            return Unknown(code=UnknownCode.TIMEOUT, reason=f"RetryError: {exc.message} ({operation})")
        inner = describe_error(cause, operation)
        return Unknown(code=inner.code, reason=f"{inner.reason}; retries gave up: {exc.message}")
    if isinstance(exc, NotCalled):
        return Unknown(code=UnknownCode.NOT_SUPPORTED, reason=f"{exc} ({operation})")
    if isinstance(exc, MalformedAnswer):
        return Unknown(code=UnknownCode.ERROR, reason=f"{MALFORMED}: {exc.problem} ({operation})")
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        status = int(exc.code) if exc.code is not None else 0
        # google-cloud-core prefixes the message with "<METHOD> <url>: "; the operation says it.
        message = _REQUEST_PREFIX.sub("", exc.message or "")
        return Unknown(code=status_code(status), reason=f"{_status_label(exc)}: {message} ({operation})")
    if isinstance(exc, requests.Timeout):
        return Unknown(code=UnknownCode.TIMEOUT, reason=f"Timeout: {exc} ({operation})")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        # The connection closed (or the encoding broke) before the whole answer arrived.
        return Unknown(
            code=UnknownCode.ERROR,
            reason=f"{MALFORMED}: the answer ended early ({type(exc).__name__}: {exc}) ({operation})",
        )
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return Unknown(code=UnknownCode.NO_CREDENTIALS, reason=f"{type(exc).__name__}: {exc} ({operation})")
    if isinstance(exc, auth_exceptions.TransportError) or (
        isinstance(exc, auth_exceptions.RefreshError) and exc.retryable
    ):
        # The token endpoint could not be reached or answered 429/5xx: not a refusal.
        return Unknown(code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {exc} ({operation})")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return Unknown(code=UnknownCode.ACCESS_DENIED, reason=f"{type(exc).__name__}: {exc} ({operation})")
    return Unknown(code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {exc} ({operation})")


def error_text(exc: BaseException) -> str:
    """The reason of `exc` without an operation."""
    return describe_error(exc, "").reason.removesuffix(" ()")


def error_evidence(exc: Exception, call: str) -> tuple[Any, str]:
    """The evidence of a failed call: the raw excerpt of a malformed answer, and the error text."""
    malformed = malformed_cause(exc)
    return (raw_excerpt(malformed.body) if malformed is not None else None), error_text(exc)


def entry_excerpt(entry: Any) -> dict[str, Any]:
    """A listing entry that could not be read, as a bounded raw excerpt."""
    return raw_excerpt(orjson.dumps(entry, default=str))
