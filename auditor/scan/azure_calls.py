"""How the Azure scanner makes its calls: clients, retries, the last raw answer, what a failure means.

Both planes (ARM and the blob data plane) retry 408/429/500/502/503/504 and connection errors,
honouring `Retry-After` up to a bound (`AzureClients` builds every client with them); the last
answer each thread received is kept (`LastAnswer`) so an answer that cannot be parsed becomes
bounded evidence; `unknown_from` maps an SDK error to an `Unknown` through the shared status table
(`auditor.scan.calls.HTTP_STATUS`). Every request, each page of a listing included (`pages`), is
one `CallRecorder.call`: counted, timed and evidenced on the shared path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from auditor.model import CoverageGap, Unknown, UnknownCode
from auditor.scan.azure_credentials import ACCOUNT_KEYS_ENV, redact, valid_shared_key
from auditor.scan.base import CallCounter
from auditor.scan.calls import (
    TRANSPORT,
    Answer,
    CallRecorder,
    RawAnswer,
    RawShape,
    TransportFailure,
    retry_after,
    status_code,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import PipelineRequest, PipelineResponse

BlobCredentialMode = Literal["token", "shared-key", "none"]

OP_ACCOUNTS = "storage:StorageAccounts.List"
OP_BLOB_LIST = "blob:ListContainers"
OP_ARM_LIST = "storage:BlobContainers.List"
OP_ARM_GET = "storage:BlobContainers.Get"
OP_SCOPES = "storage:EncryptionScopes.List"
OP_VAULT = "resources:Resources.List"

# How much of an answer that could not be parsed is kept as evidence, and how it shows there.
RAW_EVIDENCE_BYTES = 2048
RAW_SHAPE = RawShape(
    status="status",
    size="bytes",
    body="body",
    truncated="truncated",
    errors="backslashreplace",
    limit=RAW_EVIDENCE_BYTES,
    scrub=redact,
)
# Statuses retried on both planes (with the Retry-After a service sends, up to `retry_after_max`).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class MalformedAnswer(Exception):
    """An answer that arrived whole but parses to nothing the API can mean."""


class LastAnswer(threading.local):
    """The last HTTP answer this thread received, kept so an unparsable one can become evidence."""

    status: int | None = None
    body: bytes | None = None

    def clear(self) -> None:
        self.status, self.body = None, None

    def on_request(self, request: PipelineRequest[Any]) -> None:
        """`raw_request_hook`: a new request forgets the previous answer."""
        self.clear()

    def on_response(self, response: PipelineResponse[Any, Any]) -> None:
        """`raw_response_hook`: remember the status and body of every answer."""
        http = response.http_response
        self.status = http.status_code
        try:
            self.body = http.body()
        except Exception:  # a streamed or broken body: nothing to keep
            self.body = None

    def evidence(self) -> dict[str, Any]:
        """The last answer, bounded to RAW_EVIDENCE_BYTES and with secrets redacted."""
        return RawAnswer(self.status, self.body).excerpt(RAW_SHAPE)


class ArmRetry(RetryPolicy[Any, Any]):
    """azure-core's retry, with the wait a `Retry-After` asks for bounded by `retry_after_max`.

    A service asking for a longer wait ends the retries (the call reports `throttled`) instead of
    holding a worker for as long as it asks.
    """

    def __init__(self, *, retry_after_max: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._retry_after_max = retry_after_max

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        wait = self.get_retry_after(response)
        if wait is not None and wait > self._retry_after_max:
            return False
        return bool(super().is_retry(settings, response))

    def _sleep_for_retry(self, response: PipelineResponse[Any, Any], transport: Any) -> bool:
        wait = self.get_retry_after(response)
        if wait:
            transport.sleep(min(wait, self._retry_after_max))
            return True
        return False


class BlobRetry(ExponentialRetry):
    """The data plane's retry: like ARM's, 408/429/500/502/503/504 and connection errors are retried.

    azure-storage-blob's own policy does not retry 429 and waits whole seconds; this one honours
    `Retry-After` (bounded by `retry_after_max`) and backs off `backoff * 2**n` capped at `backoff_max`.
    """

    def __init__(
        self, *, retry_total: int, backoff: float, backoff_max: float, retry_after_max: float
    ) -> None:
        super().__init__(initial_backoff=0, increment_base=0, retry_total=retry_total, random_jitter_range=0)
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return float(min(self._backoff * 2 ** max(int(settings["count"]) - 1, 0), self._backoff_max))

    def _pause(self, settings: dict[str, Any], transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            transport.sleep(backoff)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        settings = self.configure_retries(request)
        transport: Any = request.context.transport
        while True:
            try:
                response = self.next.send(request)
            except ClientAuthenticationError:
                raise  # a signing or token failure does not heal by retrying
            except AzureError as err:
                if not self.increment(settings, request=request.http_request, error=err):
                    raise
                self._pause(settings, transport)
                continue
            if response.http_response.status_code in RETRY_STATUSES:
                wait = retry_after(response.http_response.headers)
                if (wait is None or wait <= self._retry_after_max) and self.increment(
                    settings, request=request.http_request, response=response.http_response
                ):
                    if wait is not None:
                        transport.sleep(wait)
                    else:
                        self._pause(settings, transport)
                    continue
            break
        if settings["history"]:
            response.context["history"] = settings["history"]
        response.http_response.location_mode = settings["mode"]
        return response


def first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def error_text(exc: BaseException) -> tuple[str, str]:
    """(error code, one-line message) of an Azure SDK exception, with secrets redacted."""
    code: str | None = None
    message: str | None = None
    if isinstance(exc, HttpResponseError):
        odata = exc.error
        if odata is not None:
            code, message = odata.code, odata.message
        if not code:
            raw_code = getattr(exc, "error_code", None)
            code = str(getattr(raw_code, "value", raw_code)) if raw_code else None
        code = code or (f"HTTP{exc.status_code}" if exc.status_code else None)
    message = message or str(getattr(exc, "message", None) or exc)
    return redact(code or type(exc).__name__), redact(first_line(message))


def is_malformed(exc: BaseException) -> bool:
    """True if `exc` says an answer arrived but could not be understood (not a transport error)."""
    if isinstance(exc, IncompleteReadError):
        return False  # the connection broke mid-answer
    return isinstance(exc, MalformedAnswer | DecodeError) or not isinstance(exc, AzureError)


def malformed_unknown(exc: BaseException, operation: str) -> Unknown:
    """The `Unknown` an answer that could not be parsed (or parsed to nothing) makes."""
    detail = first_line(str(exc))[:200]
    detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return Unknown(
        code=UnknownCode.ERROR,
        reason=redact(f"MalformedAnswer: malformed/empty answer to {operation} ({detail}) ({operation})"),
    )


def unknown_from(exc: BaseException, operation: str) -> Unknown:
    """The `Unknown` an SDK exception makes of the attributes it prevented reading."""
    if is_malformed(exc):
        return malformed_unknown(exc, operation)
    code, message = error_text(exc)
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    timed_out = isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError) or (
        isinstance(exc, ServiceRequestError | ServiceResponseError) and "timed out" in str(exc).lower()
    )
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # No HTTP answer at all: the credential produced no token (nothing configured, CLI logged out).
        kind = TRANSPORT[TransportFailure.NO_CREDENTIALS].code
    elif timed_out:
        kind = TRANSPORT[TransportFailure.TIMEOUT].code
    else:
        kind = status_code(status)
    return Unknown(code=kind, reason=f"{code}: {message} ({operation})")


def evidence_error(exc: BaseException) -> str:
    if is_malformed(exc):
        return malformed_unknown(exc, "the call").reason
    code, message = error_text(exc)
    return f"{code}: {message}"


def jsonable(value: Any) -> Any:
    """An SDK value as plain JSON (enums to their values, datetimes to ISO text)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):  # the SDKs' (str, Enum) types print as 'Class.MEMBER'
        return jsonable(value.value)
    return value


def check_arm_page(answer: LastAnswer, operation: str) -> None:
    """Raise `MalformedAnswer` unless the answer just read is an ARM list page: {"value": [...]}."""
    body = answer.body
    if body is None:
        return  # nothing captured (no hook on this path): trust the SDK's parse
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise MalformedAnswer(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise MalformedAnswer(f"{operation} answered without a 'value' list")


def recorder(calls: CallCounter, answer: LastAnswer) -> CallRecorder:
    """How the Azure scanner records a call: an unreadable answer keeps its raw bytes (bounded)."""

    def error_evidence(exc: Exception, operation: str) -> tuple[Any, str]:
        if is_malformed(exc):
            return answer.evidence(), unknown_from(exc, operation).reason
        return None, evidence_error(exc)

    return CallRecorder(calls, unknown_from, error_evidence)


# --- paged listings -------------------------------------------------------------------------------


class Listing:
    """The pages of one listing, each page fetched as one recorded call.

    Iterating yields each page's items (converted by `item` inside the call, so an entry the
    conversion refuses fails that page's call); a failed page ends the iteration and is kept in
    `failure` (its `Answer`: the `Unknown` and the evidence, with the raw answer of a malformed one).
    `request` is the evidence's request; each call adds its page number.
    """

    def __init__(
        self,
        recorder: CallRecorder,
        answer: LastAnswer,
        operation: str,
        attributes: list[str],
        request: dict[str, Any],
        open_pages: Callable[[], Iterator[Any]],
        *,
        check: Callable[[], None] | None = None,
        item: Callable[[Any], Any] = jsonable,
    ) -> None:
        self.recorder = recorder
        self.answer = answer
        self.operation = operation
        self.attributes = attributes
        self.request = request
        self.open_pages = open_pages
        self.check = check
        self.item = item
        self.failure: Answer[list[Any] | None] | None = None
        self.pages_read = 0

    def __iter__(self) -> Iterator[list[Any]]:
        pages: Iterator[Any] | None = None

        def fetch() -> list[Any] | None:
            nonlocal pages
            if pages is None:
                pages = iter(self.open_pages())
            try:
                page = next(pages)
            except StopIteration:
                return None  # the last page said there is no next one: no request was made
            if self.check is not None:
                self.check()
            return [self.item(entry) for entry in page]

        self.answer.clear()
        while True:
            got = self.recorder.call(
                self.operation,
                list(self.attributes),
                {**self.request, "page": self.pages_read + 1},
                fetch,
                shown=_nothing,
                counted=lambda value: value is not None,
            )
            if not got.ok:
                self.failure = got  # the failed answer stays in `answer` until the next request
                return
            if got.value is None:
                return
            self.pages_read += 1
            yield got.value
            self.answer.clear()

    def entries(
        self, subscription: str, scope: str, what: str, emit_gap: Callable[[CoverageGap], None]
    ) -> Iterator[tuple[Any, datetime]]:
        """Each listed item with the time its page was read; a failed listing then emits its gap."""
        listed = 0
        for page in self:
            at = datetime.now(UTC)
            for entry in page:
                listed += 1
                yield entry, at
        gap = self._gap(subscription, scope, listed, what)
        if gap is not None:
            emit_gap(gap)

    def _gap(self, subscription: str, scope: str, listed: int, what: str) -> CoverageGap | None:
        """The coverage gap a failed listing leaves (None if it did not fail): its code and reason,
        the size of a malformed answer, how many `what` were listed before it stopped."""
        failed = self.failure
        if failed is None:
            return None
        assert failed.unknown is not None
        reason = failed.unknown.reason
        raw = failed.evidence.response
        if (
            failed.error is not None
            and is_malformed(failed.error)
            and isinstance(raw, dict)
            and raw.get("bytes")
        ):
            reason = f"{reason}; answer of {raw['bytes']} bytes on page {self.pages_read + 1}"
        if listed:
            reason = f"{what} listing stopped after {listed} {what.split()[-1]}s: {reason}"
        return CoverageGap(
            provider="azure",
            account=subscription,
            scope=scope,
            code=failed.unknown.code,
            reason=reason,
            at=datetime.now(UTC),
            evidence=[failed.evidence],
        )


def _nothing(_: Any) -> None:
    return None  # a page's items become records (with their own evidence), not one big response


# --- clients --------------------------------------------------------------------------------------


class AzureClients:
    """The clients of one scan: one ARM client per subscription, one data-plane client per account.

    They share one connection pool, the scan's timeouts and retries, and the hooks that keep each
    thread's last answer (`LastAnswer`).
    """

    def __init__(
        self,
        *,
        credential: TokenCredential,
        arm_endpoint: str,
        verify: str | bool,
        pool_size: int,
        answer: LastAnswer,
        retry_total: int,
        retry_backoff: float,
        retry_backoff_max: float,
        retry_after_max: float,
        connection_timeout: float,
        read_timeout: float,
        call_bound: float,
        blob_credential: BlobCredentialMode,
        blob_endpoint_template: str | None,
        account_keys: Mapping[str, str],
    ) -> None:
        self.credential = credential
        self.arm_endpoint = arm_endpoint
        self.verify = verify
        self.answer = answer
        self.retry_total = retry_total
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_after_max = retry_after_max
        self.connection_timeout = connection_timeout
        self.read_timeout = read_timeout
        self.call_bound = call_bound
        self.blob_credential = blob_credential
        self.blob_endpoint_template = blob_endpoint_template
        self.account_keys = account_keys
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=64,
            pool_maxsize=pool_size,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._clients: dict[str, StorageManagementClient] = {}
        self._lock = threading.Lock()

    def _transport(self) -> RequestsTransport:
        return RequestsTransport(
            session=self._session,
            session_owner=False,
            connection_verify=self.verify,
            connection_timeout=self.connection_timeout,
            read_timeout=self.read_timeout,
        )

    def arm(self, subscription: str) -> StorageManagementClient:
        """The ARM client of `subscription` (made once, shared by every thread)."""
        with self._lock:
            client = self._clients.get(subscription)
            if client is None:
                client = StorageManagementClient(
                    self.credential,
                    subscription,
                    base_url=self.arm_endpoint,
                    credential_scopes=[f"{self.arm_endpoint}/.default"],
                    transport=self._transport(),
                    retry_policy=ArmRetry(
                        retry_total=self.retry_total,
                        retry_backoff_factor=self.retry_backoff,
                        retry_backoff_max=self.retry_backoff_max,
                        retry_after_max=self.retry_after_max,
                        timeout=self.call_bound,
                    ),
                    raw_request_hook=self.answer.on_request,
                    raw_response_hook=self.answer.on_response,
                )
                self._clients[subscription] = client
        return client

    def blob(self, account: str, endpoint: str | None) -> tuple[BlobServiceClient | None, str | None, str]:
        """A data-plane client for `account`, or None and why the data plane is not tried."""
        if self.blob_credential == "none":
            return None, None, "the data plane is disabled (--blob-credential none)"
        if self.blob_endpoint_template:
            url = self.blob_endpoint_template.format(account=account)
        elif endpoint:
            url = endpoint
        else:
            return None, None, "ARM returned no primaryEndpoints.blob for the account"
        credential: Any
        if self.blob_credential == "shared-key":
            key = self.account_keys.get(account)
            if key is None:
                return None, url, f"no shared key for account '{account}' in {ACCOUNT_KEYS_ENV}"
            if not valid_shared_key(key):
                return None, url, f"the shared key for account '{account}' is not base64"
            credential = {"account_name": account, "account_key": key}
        else:
            credential = self.credential
        client = BlobServiceClient(
            url,
            credential=credential,
            transport=self._transport(),
            retry_policy=BlobRetry(
                retry_total=self.retry_total,
                backoff=self.retry_backoff,
                backoff_max=self.retry_backoff_max,
                retry_after_max=self.retry_after_max,
            ),
            raw_request_hook=self.answer.on_request,
            raw_response_hook=self.answer.on_response,
        )
        return client, url, ""

    def close(self) -> None:
        """Close every ARM client and the shared session."""
        for client in self._clients.values():
            client.close()
        self._session.close()
