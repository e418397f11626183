"""How the GCP scanner reaches Google APIs besides Cloud Storage (Org Policy, Vertex AI): the endpoint
of each API, one set of Application Default Credentials for all of them, and one retry loop.

Endpoints are the public ones unless `--api-endpoint SERVICE=URL` (or `api_endpoints:` in auditor.yaml)
names another base URL; an `aiplatform` URL serves the regional Vertex AI endpoints too. With
``STORAGE_EMULATOR_HOST`` set (a test or a local emulator), no call goes to a public Google endpoint:
an API without a given URL is not called, and what it feeds is `not_supported`.

Each call is retried on 408, 429, 5xx, connection errors, timeouts and malformed answers with
exponential backoff from `--retry-backoff`, waiting what a `Retry-After` asks for, until
`--retry-deadline`: a wait that would end past the deadline ends the retries instead.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from auditor.scan.calls import retry_after
from auditor.scan.gcp_errors import MalformedAnswer, NotCalled

T = TypeVar("T")

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# The APIs whose endpoint `--api-endpoint SERVICE=URL` may replace (auditor.scan.gcp_source too).
PUBLIC_ENDPOINTS: Mapping[str, str] = {
    "orgpolicy": "https://orgpolicy.googleapis.com",
    "aiplatform": "https://aiplatform.googleapis.com",
}
# Vertex AI regional endpoints: https://cloud.google.com/vertex-ai/docs/reference/rest#service-endpoint
REGIONAL_AIPLATFORM = "https://{location}-aiplatform.googleapis.com"
GLOBAL_LOCATION = "global"
# The Org Policy v2 and Vertex AI APIs accept only this scope for their methods (discovery documents).
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Statuses worth asking again; anything else (401, 403, 404, 400) will not change on retry.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_LOCATION = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class GoogleApis:
    """Where each API is reached: the given base URLs, else the public endpoints (never under an emulator)."""

    given: Mapping[str, str] = field(default_factory=dict)
    emulator: bool = False

    @classmethod
    def from_environment(cls, given: Mapping[str, str]) -> GoogleApis:
        """The endpoints for `given`, in emulator mode when ``STORAGE_EMULATOR_HOST`` is set."""
        return cls({k: v.rstrip("/") for k, v in given.items()}, bool(os.environ.get(EMULATOR_ENV)))

    def base(self, service: str) -> str:
        """The base URL of `service` (`NotCalled` when the scan must not call its public endpoint)."""
        if service in self.given:
            return self.given[service]
        if self.emulator:
            raise NotCalled(
                f"{EMULATOR_ENV} is set and no --api-endpoint {service}=URL was given, "
                f"so {PUBLIC_ENDPOINTS[service]} is not called"
            )
        return PUBLIC_ENDPOINTS[service]

    def vertex(self, location: str) -> str:
        """The Vertex AI endpoint serving `location` (a given `aiplatform` URL serves every location)."""
        if "aiplatform" in self.given or self.emulator or location == GLOBAL_LOCATION:
            return self.base("aiplatform")
        if not _LOCATION.match(location):
            raise NotCalled(f"{location!r} is not a Vertex AI location name")
        return REGIONAL_AIPLATFORM.format(location=location)


class SharedCredentials:
    """Application Default Credentials, loaded once on first use and scoped per API.

    A failure to load them (no ADC, a missing key file) is kept and raised to every caller, so the
    metadata server is probed at most once per scan.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: Any = None
        self._error: Exception | None = None
        self._scoped: dict[tuple[str, ...], Any] = {}

    def scoped(self, scopes: Sequence[str]) -> Any:
        """The credentials with `scopes` (raises google-auth's error when there are none)."""
        key = tuple(scopes)
        with self._lock:
            if self._error is not None:
                raise self._error
            if key in self._scoped:
                return self._scoped[key]
            if self._base is None:
                import google.auth

                try:
                    self._base, _ = google.auth.default()
                except Exception as exc:
                    self._error = exc
                    raise
            from google.auth.credentials import with_scopes_if_required

            scoped = with_scopes_if_required(self._base, list(scopes))  # type: ignore[no-untyped-call]
            self._scoped[key] = scoped
            return scoped


def transient(exc: BaseException) -> bool:
    """True for a failure the next attempt may not have."""
    if isinstance(exc, MalformedAnswer):
        return True
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code is not None and int(exc.code) in RETRY_STATUSES
    if isinstance(
        exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    ):
        return True
    if isinstance(exc, auth_exceptions.TransportError):
        return True
    return isinstance(exc, auth_exceptions.RefreshError) and bool(exc.retryable)


def asked_wait(exc: BaseException) -> float | None:
    """Seconds the service asked to wait (`Retry-After` of the failed answer), if it did."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return retry_after(headers)


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts per attempt and the retry loop around one call."""

    timeout: float | tuple[float, float]
    deadline: float
    backoff: float = 1.0
    max_backoff: float = 32.0
    sleep: Callable[[float], None] = time.sleep

    def run(self, attempt: Callable[[], T]) -> T:
        """`attempt()` until it succeeds, fails for good, or the deadline leaves no time for a wait.

        The last failure is raised as it is, so its status decides the unknown code (`throttled`
        for a 429 whose retries ran out).
        """
        ends = time.monotonic() + self.deadline
        delay = self.backoff
        while True:
            try:
                return attempt()
            except Exception as exc:
                if not transient(exc):
                    raise
                asked = asked_wait(exc)
                wait = asked if asked is not None else min(delay, self.max_backoff)
                if time.monotonic() + wait > ends:
                    raise
                self.sleep(wait)
                delay *= 2
