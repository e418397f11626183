"""One recorded API call, the shared status-to-unknown table, the time source and retry settings.

Every scanner makes its API calls through `CallRecorder.call`: the call is counted, timed and
recorded as `Evidence` (call name, time, attributes, request, and the answer or the error with a
bounded excerpt of a malformed answer's raw bytes), and it never raises: the `Answer` holds either
the value or the `Unknown` the failure makes of the attributes it feeds. How a source's errors
become unknowns starts from one table, `HTTP_STATUS` (and `TRANSPORT` for failures without an
HTTP answer); what a source's own error codes mean (S3's `NoSuchBucketPolicy`: explicitly absent)
stays in the source as a small table of its own.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from auditor.errors import InputError
from auditor.model import Evidence, Unknown, UnknownCode
from auditor.scan.base import CallCounter
from auditor.sources import ScanOptions

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

# How much of an answer that could not be parsed the evidence keeps, and of any error message.
BODY_LIMIT = 2048
MESSAGE_LIMIT = 600


def now() -> datetime:
    """The current UTC time: the one clock of every scanner (evidence, records, gaps)."""
    return datetime.now(UTC)


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` cut to `limit` characters (an error message may carry a whole answer body)."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


# --- what a failure means -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusMeaning:
    """What an HTTP status (or a transport failure) says about the attributes a call feeds."""

    code: UnknownCode
    wording: str


# One table for every source: the status of an answer after the client's retries are spent.
HTTP_STATUS: Mapping[int, StatusMeaning] = {
    401: StatusMeaning(UnknownCode.ACCESS_DENIED, "not authenticated"),
    403: StatusMeaning(UnknownCode.ACCESS_DENIED, "access denied"),
    408: StatusMeaning(UnknownCode.TIMEOUT, "the server timed out waiting for the request"),
    429: StatusMeaning(UnknownCode.THROTTLED, "throttled: too many requests, retries spent"),
    504: StatusMeaning(UnknownCode.TIMEOUT, "a gateway timed out"),
}
OTHER_STATUS = StatusMeaning(UnknownCode.ERROR, "the service answered with an error")


class TransportFailure(Enum):
    """A call that got no (whole) HTTP answer."""

    TIMEOUT = "timeout"
    RESET = "reset"
    SHORT_READ = "short_read"
    TLS = "tls"
    NO_CREDENTIALS = "no_credentials"


TRANSPORT: Mapping[TransportFailure, StatusMeaning] = {
    TransportFailure.TIMEOUT: StatusMeaning(UnknownCode.TIMEOUT, "no answer within the timeout"),
    TransportFailure.RESET: StatusMeaning(UnknownCode.ERROR, "the connection was reset"),
    TransportFailure.SHORT_READ: StatusMeaning(UnknownCode.ERROR, "the answer ended early"),
    TransportFailure.TLS: StatusMeaning(UnknownCode.ERROR, "the TLS handshake failed"),
    TransportFailure.NO_CREDENTIALS: StatusMeaning(UnknownCode.NO_CREDENTIALS, "no credentials to sign with"),
}


def status_meaning(status: int | None, overrides: Mapping[int, UnknownCode] | None = None) -> StatusMeaning:
    """The meaning of an HTTP status: `HTTP_STATUS`, with a source's `overrides` (its own quirks)."""
    if status is not None and overrides and status in overrides:
        base = HTTP_STATUS.get(status, OTHER_STATUS)
        return StatusMeaning(overrides[status], base.wording)
    return HTTP_STATUS.get(status, OTHER_STATUS) if status is not None else OTHER_STATUS


def status_code(status: int | None, overrides: Mapping[int, UnknownCode] | None = None) -> UnknownCode:
    """The `UnknownCode` of an HTTP status (see `status_meaning`)."""
    return status_meaning(status, overrides).code


def status_unknown(status: int, operation: str, detail: str = "") -> Unknown:
    """An `Unknown` for an HTTP status: 'HTTP <status>: <wording>[: detail] (<operation>)'."""
    meaning = status_meaning(status)
    text = f"HTTP {status}: {meaning.wording}" + (f": {detail}" if detail else "")
    return Unknown(code=meaning.code, reason=f"{text} ({operation})")


def transport_unknown(failure: TransportFailure, operation: str, detail: str = "") -> Unknown:
    """An `Unknown` for a call without a whole answer: '<wording>[: detail] (<operation>)'."""
    meaning = TRANSPORT[failure]
    text = meaning.wording + (f": {detail}" if detail else "")
    return Unknown(code=meaning.code, reason=f"{text} ({operation})")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a service asks to wait (`retry-after-ms`, `x-ms-retry-after-ms`, `Retry-After`)."""
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, (when - now()).total_seconds())
    return None


# --- raw answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawShape:
    """How a source writes a raw answer into `Evidence.response` (its keys are a public format)."""

    size: str
    body: str
    truncated: str
    status: str | None = None
    errors: str = "replace"
    limit: int = BODY_LIMIT
    scrub: Callable[[str], str] | None = None


@dataclass(frozen=True)
class RawAnswer:
    """The HTTP status and body of an answer, as it arrived."""

    status: int | None
    body: bytes | None

    def excerpt(self, shape: RawShape) -> dict[str, Any]:
        """The answer for `Evidence.response`: status, size and the first `shape.limit` bytes."""
        out: dict[str, Any] = {} if shape.status is None else {shape.status: self.status}
        if self.body is None:
            out.update({shape.size: None, shape.body: None})
            return out
        head = self.body[: shape.limit].decode("utf-8", errors=shape.errors)
        out.update(
            {
                shape.size: len(self.body),
                shape.body: shape.scrub(head) if shape.scrub is not None else head,
                shape.truncated: len(self.body) > shape.limit,
            }
        )
        return out


# --- one recorded call ----------------------------------------------------------------------------


@dataclass
class Answer(Generic[T]):
    """What one call gave: the value, or the error and the `Unknown` it makes; and its evidence."""

    value: T | None
    evidence: Evidence
    error: Exception | None = None
    unknown: Unknown | None = None
    absent: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the call answered (its value may still be empty)."""
        return self.error is None


def _never(_: Exception) -> bool:
    return False


def _plain_error(exc: Exception, name: str = "") -> tuple[Any, str]:
    return None, bounded(f"{type(exc).__name__}: {exc}")


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class CallRecorder:
    """How one source records its calls: counted, timed, evidenced, and never raising.

    `classify(error, call)` turns a failure into the `Unknown` of the attributes the call feeds;
    `error_evidence(error, call)` gives the evidence's `response` (a bounded raw excerpt for a
    malformed answer) and `error` text; `absent` says whether a failure means "there is none"
    (the source's own codes).
    """

    counter: CallCounter
    classify: Callable[[Exception, str], Unknown]
    error_evidence: Callable[[Exception, str], tuple[Any, str]] = _plain_error
    absent: Callable[[Exception], bool] = _never

    def call(
        self,
        name: str,
        attributes: list[str],
        request: dict[str, Any] | None,
        perform: Callable[[], T],
        *,
        shown: Callable[[T], Any] = _same,
        counted: Callable[[T], bool] | None = None,
    ) -> Answer[T]:
        """Make the call `perform`; count it (unless `counted` says the value is no call) and record it."""
        at = now()
        started = time.perf_counter()
        try:
            value = perform()
        except Exception as exc:
            seconds = time.perf_counter() - started
            self.counter.add(name)
            try:
                response, message = self.error_evidence(exc, name)
            except Exception:  # the evidence of a failure never hides the failure
                response, message = _plain_error(exc)
            evidence = Evidence(
                call=name, at=at, attributes=attributes, request=request, response=response, error=message
            )
            if self.absent(exc):
                return Answer(None, evidence, exc, None, True, seconds)
            try:
                unknown = self.classify(exc, name)
            except Exception:
                unknown = Unknown(code=UnknownCode.ERROR, reason=f"{_plain_error(exc)[1]} ({name})")
            return Answer(None, evidence, exc, unknown, False, seconds)
        seconds = time.perf_counter() - started
        if counted is None or counted(value):
            self.counter.add(name)
        evidence = Evidence(call=name, at=at, attributes=attributes, request=request, response=shown(value))
        return Answer(value, evidence, seconds=seconds)


class Memo(Generic[K, V]):
    """Compute each key once, however many threads ask for it at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[K, Future[V]] = {}

    def get(self, key: K, compute: Callable[[], V], timeout: float | None = None) -> V:
        """The value of `key`, computed by the first caller; the others wait (at most `timeout`).

        A waiter that runs out of time gets `concurrent.futures.TimeoutError`; a failed
        computation is raised to every caller, so nobody waits for ever.
        """
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = self._futures[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result(timeout=timeout)


# --- retries and timeouts -------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySettings:
    """The retry/timeout vocabulary of every `auditor scan <cloud>` (None: the source's default).

    `max_attempts` counts every attempt of one call, the first included; `timeout` is the wait
    for each response and `connect_timeout` for each connection; `retry_deadline` bounds all
    attempts of one call in time; `retry_backoff` is the first wait of the exponential backoff;
    `retry_after_max` is the longest `Retry-After` a source honours (a longer one ends the retries).
    """

    max_attempts: int | None = None
    timeout: float | None = None
    connect_timeout: float | None = None
    retry_deadline: float | None = None
    retry_backoff: float | None = None
    retry_after_max: float | None = None

    def merged(self, **defaults: Any) -> RetrySettings:
        """These settings, with each unset one taken from the source's `defaults`."""
        values = {
            name: getattr(self, name) if getattr(self, name) is not None else defaults.get(name)
            for name in RETRY_SETTINGS
        }
        return RetrySettings(**values)

    def refuse_unsupported(self, source: str, supported: frozenset[str]) -> None:
        """Raise `InputError` (exit 2) for a setting given that `source` has no use for."""
        for name in RETRY_SETTINGS:
            if getattr(self, name) is not None and name not in supported:
                raise InputError(_flag(name), unused_setting(source, name))


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def unused_setting(source: str, setting: str) -> str:
    """Why a retry/timeout `setting` is refused for `source` (one wording, flag or auditor.yaml)."""
    return f"{source} scans do not use {_flag(setting)} (see docs/scanners/{source}.md)"


RETRY_SETTINGS: tuple[str, ...] = (
    "max_attempts",
    "timeout",
    "connect_timeout",
    "retry_deadline",
    "retry_backoff",
    "retry_after_max",
)
# The settings' old names (auditor.scan.command.RETRY_ALIASES) -> the setting each sets.
RETRY_OLD_NAMES: dict[str, str] = {"read_timeout": "timeout", "max_retries": "max_attempts"}


class RetryScopedOptions(ScanOptions):
    """A scanner's `options:` that accept only the retry/timeout settings it uses (`retry_used`).

    A setting the scanner has no use for is refused when the section is checked (the audit's
    up-front validation), with the words `auditor scan <source>` refuses its flag with.
    """

    retry_source: ClassVar[str] = ""
    retry_used: ClassVar[frozenset[str]] = frozenset(RETRY_SETTINGS)

    @field_validator(*RETRY_SETTINGS, *RETRY_OLD_NAMES)
    @classmethod
    def _refuse_unused(cls, value: Any, info: ValidationInfo) -> Any:
        name = str(info.field_name)
        setting = RETRY_OLD_NAMES.get(name, name)
        if value is not None and setting not in cls.retry_used:
            raise PydanticCustomError("unused_setting", unused_setting(cls.retry_source, setting))
        return value
