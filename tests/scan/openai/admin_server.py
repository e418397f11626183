"""A loopback server speaking the OpenAI Admin API endpoints the scanner reads, as the real API does.

Routes (under /v1, like https://api.openai.com/v1):
  GET /v1/organization/projects?limit=&after=&include_archived=
      `{"object": "list", "data": [...], "first_id", "last_id", "has_more"}`; archived projects only
      with include_archived=true (the API's default is false); `limit` 1-100 (default 20), capped
      further by `max_page_size` so tests page with few projects; `after` is the id of the last
      project of the previous page.
  GET /v1/organization/external_keys/<id>
      An external key (Enterprise Key Management) object, or 404.
Anything else is 404 `Invalid URL (GET /v1/...)`. Every answer carries the headers the real API
sends (`openai-organization`, `openai-version`, `openai-processing-ms`, `x-request-id`). The
Authorization header is checked like the real API: missing -> 401 without a key, another key ->
401 `invalid_api_key` quoting the key masked (first 8 and last 4 characters). Error bodies are
`{"error": {"message", "type", "param", "code"}}`.

`faults` queue answers served before the real one on a route: an error status (429 with
Retry-After, 403, 500), a raw body (garbled or truncated JSON), or a delay. Every request is logged
(method, path, query, whether it was authorized, when), so tests can assert what was asked.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackServer

PREFIX = "/v1"
PROJECTS = f"{PREFIX}/organization/projects"
EXTERNAL_KEYS = f"{PREFIX}/organization/external_keys/"
MAX_LIMIT = 100
DEFAULT_LIMIT = 20

# Messages as the real API words them.
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
    "if you're accessing the API from your browser and are prompted for a username and password. You "
    "can obtain an API key from https://platform.openai.com/account/api-keys."
)
MISSING_SCOPE = (
    "You have insufficient permissions for this operation. Missing scopes: api.management.read. Check "
    "that you have the correct role in your organization, and if you're using a restricted API key, "
    "that it has the necessary scopes."
)
RATE_LIMITED = "Rate limit reached for requests. Please try again in 1s."


def error_body(
    message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error document."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def masked(key: str) -> str:
    """A key as the API quotes it in an invalid_api_key message."""
    return f"{key[:8]}{'*' * 20}{key[-4:]}"


def project(
    project_id: str,
    name: str | None,
    *,
    residency: Any = "GLOBAL",
    status: str = "active",
    external_key_id: str | None = None,
    omit: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A project object as the Admin API returns it; `omit` leaves fields out of the answer."""
    archived = status == "archived"
    entry: dict[str, Any] = {
        "id": project_id,
        "object": "organization.project",
        "name": name,
        "created_at": 1_730_000_000,
        "archived_at": 1_740_000_000 if archived else None,
        "status": status,
        "residency": residency,
        "external_key_id": external_key_id,
    }
    return {k: v for k, v in entry.items() if k not in omit}


@dataclass
class Fault:
    """One queued answer for a route ('projects' or 'external_keys'), served `times` times."""

    route: str
    status: int = 200
    body: Any = None  # a JSON document, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    page: int | None = None  # projects: only this page (1-based, by `after`)


@dataclass
class Request:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorized: bool
    at: float
    organization: str | None = None  # the OpenAI-Organization header sent, if any


class AdminApiServer(LoopbackServer):
    """The OpenAI Admin API on 127.0.0.1 for one organization and one Admin API key."""

    def __init__(self, admin_key: str, organization: str = "org-auditortest01") -> None:
        self.admin_key = admin_key
        self.organization = organization
        self.projects: list[dict[str, Any]] = []
        self.external_keys: dict[str, dict[str, Any]] = {}
        self.max_page_size = MAX_LIMIT
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.send_organization_header = True
        self._lock = threading.Lock()
        super().__init__(self._handler(), "openai-admin", poll_interval=0.05)

    @property
    def base_url(self) -> str:
        """The base URL clients use (OPENAI_BASE_URL)."""
        return f"{self.url}{PREFIX}"

    def reset(self) -> None:
        """Forget projects, keys, faults and the request log."""
        with self._lock:
            self.projects = []
            self.external_keys = {}
            self.max_page_size = MAX_LIMIT
            self.faults = []
            self.requests = []
            self.send_organization_header = True

    def served(self, path: str | None = None) -> list[Request]:
        """The requests received (on `path` only, when given)."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    # --- answering --------------------------------------------------------------------------------

    def _fault(self, route: str, page: int | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0 and (fault.page is None or fault.page == page):
                    fault.times -= 1
                    return fault
        return None

    def _projects_page(self, query: dict[str, list[str]]) -> tuple[int, Any, int | None]:
        """(status, document, page number) of a projects listing."""
        raw_limit = query.get("limit", [str(DEFAULT_LIMIT)])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return (
                400,
                error_body(f"Invalid limit: {raw_limit}. Must be between 1 and {MAX_LIMIT}.", code=None),
                None,
            )
        include_archived = query.get("include_archived", ["false"])[0] == "true"
        with self._lock:
            listed = [p for p in self.projects if include_archived or p.get("status") != "archived"]
            size = min(int(raw_limit), self.max_page_size)
        start = 0
        after = query.get("after", [None])[0]
        if after is not None:
            ids = [p.get("id") for p in listed]
            if after not in ids:
                return 400, error_body(f"No project found with id '{after}'.", param="after"), None
            start = ids.index(after) + 1
        data = listed[start : start + size]
        document = {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + size < len(listed),
        }
        return 200, document, start // size + 1 if size else 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                if server.send_organization_header:
                    self.send_header("openai-organization", server.organization)
                self.send_header("openai-version", "2020-10-01")
                self.send_header("openai-processing-ms", "12")
                self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                auth = self.headers.get("Authorization")
                authorized = auth == f"Bearer {server.admin_key}"
                with server._lock:
                    server.requests.append(
                        Request(
                            "GET",
                            parts.path,
                            query,
                            authorized,
                            time.monotonic(),
                            self.headers.get("OpenAI-Organization"),
                        )
                    )
                if auth is None or not auth.startswith("Bearer "):
                    self._send(401, error_body(NO_KEY))
                    return
                if not authorized:
                    given = auth.removeprefix("Bearer ")
                    message = (
                        f"Incorrect API key provided: {masked(given)}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys."
                    )
                    self._send(401, error_body(message, code="invalid_api_key"))
                    return
                if parts.path == PROJECTS:
                    status, document, page = server._projects_page(query)
                    self._answer("projects", page, status, document)
                elif parts.path.startswith(EXTERNAL_KEYS) and parts.path != EXTERNAL_KEYS:
                    key_id = parts.path.removeprefix(EXTERNAL_KEYS)
                    with server._lock:
                        found = server.external_keys.get(key_id)
                    if found is None:
                        self._answer(
                            "external_keys",
                            None,
                            404,
                            error_body(f"No external key found with id '{key_id}'."),
                        )
                    else:
                        self._answer("external_keys", None, 200, found)
                else:
                    self._send(404, error_body(f"Invalid URL (GET {parts.path})"))

            def _answer(self, route: str, page: int | None, status: int, document: Any) -> None:
                fault = server._fault(route, page)
                if fault is None:
                    self._send(status, document)
                    return
                if fault.delay:
                    time.sleep(fault.delay)
                self._send(fault.status, fault.body if fault.body is not None else document, fault.headers)

        return Handler


def rate_limited(times: int, retry_after: str = "1", route: str = "projects") -> Fault:
    """429 answers with Retry-After, as the API sends when a rate limit is reached."""
    return Fault(
        route,
        status=429,
        body=error_body(RATE_LIMITED, kind="requests", code="rate_limit_exceeded"),
        headers={"retry-after": retry_after},
        times=times,
    )


def forbidden(route: str = "projects", times: int = 100) -> Fault:
    """403: a restricted Admin API key without Organization Administration read."""
    return Fault(route, status=403, body=error_body(MISSING_SCOPE), times=times)
