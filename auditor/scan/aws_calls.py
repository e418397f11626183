"""One AWS API call as the S3 scanner makes it: counted, evidenced, and its error classified.

A "not found" answer (`ABSENT_CODES`) is explicitly absent; any other failure becomes an `Unknown`
(access_denied, throttled after retries, timeout, error).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from auditor.model import Evidence, Unknown
from auditor.scan.aws_accounts import AccountSession, classify_error
from auditor.scan.base import CallCounter

# "Not found" answers mean "there is none": the attribute is explicitly absent, not unknown.
ABSENT_CODES: dict[str, frozenset[str]] = {
    "GetBucketPolicy": frozenset({"NoSuchBucketPolicy"}),
    "GetBucketTagging": frozenset({"NoSuchTagSet"}),
    "GetBucketReplication": frozenset({"ReplicationConfigurationNotFoundError"}),
    "GetBucketEncryption": frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
    "GetPublicAccessBlock": frozenset({"NoSuchPublicAccessBlockConfiguration"}),
}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")

K = TypeVar("K")
V = TypeVar("V")


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


class Memo(Generic[K, V]):
    """Compute each key once, however many threads ask for it at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[K, Future[V]] = {}

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value of `key`, computed by the first caller; the others wait for it."""
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
        return future.result()


class Answer:
    """One API answer: the parsed response, or the error and whether it means "there is none"."""

    __slots__ = ("absent", "error", "response", "unknown")

    def __init__(
        self,
        response: dict[str, Any] | None,
        error: Exception | None = None,
        absent: bool = False,
        unknown: Unknown | None = None,
    ) -> None:
        self.response = response
        self.error = error
        self.absent = absent
        self.unknown = unknown


Call = tuple[Answer, Evidence]


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
        self.keys: Memo[tuple[str, str], Call] = Memo()
        self.destinations: Memo[str, tuple[str | None, Unknown | None, Evidence]] = Memo()

    def client(self, service: str, region: str | None) -> Any:
        """A client for `service` in `region` (boto3 sessions are not thread-safe: made under a lock)."""
        key = (service, region or self.default_region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self.account.session.client(service, region_name=key[1], config=self.config)
                self._clients[key] = client
            return client

    def call(
        self, region: str | None, service: str, operation: str, attributes: list[str], **params: Any
    ) -> Call:
        """Make one call; return its answer and the evidence recording it (errors never raise)."""
        method = getattr(self.client(service, region), _SNAKE.sub("_", operation).lower())
        name = f"{service}:{operation}"
        self.calls.add(name)
        at = now()
        try:
            response = dict(method(**params))
        except (ClientError, BotoCoreError) as exc:
            raw: dict[str, Any] | None = None
            if isinstance(exc, ClientError):
                raw = {k: v for k, v in exc.response.items() if k != "ResponseMetadata"}
                details = exc.response.get("Error", {})
                code = str(details.get("Code") or "")
                message = f"{code}: {details.get('Message') or ''}"
            else:
                code, message = "", f"{type(exc).__name__}: {exc}"
            absent = code in ABSENT_CODES.get(operation, frozenset())
            evidence = Evidence(
                call=name, at=at, attributes=attributes, request=params, response=raw, error=message
            )
            return Answer(None, exc, absent, None if absent else classify_error(exc, name)), evidence
        response.pop("ResponseMetadata", None)
        return Answer(response), Evidence(
            call=name, at=at, attributes=attributes, request=params, response=response
        )
