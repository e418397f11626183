"""A loopback server speaking the Org Policy v2 and Vertex AI REST APIs, and Google's OAuth token
endpoint, from in-memory projects.

Routes (the subset the scanner uses, shaped like the public endpoints):
  POST /token                                                   (OAuth 2.0 JWT bearer grant)
  GET  /v2/projects/<p>/policies/<constraint>:getEffectivePolicy (orgpolicy.googleapis.com)
  GET  /v1/projects/<p>/locations[?pageToken=T]                  (aiplatform.googleapis.com)
  GET  /v1/projects/<p>/locations/<l>/endpoints[?pageToken=T]    (<l>-aiplatform.googleapis.com)
  GET  /v1/projects/<p>/cacheConfig                              (aiplatform.googleapis.com)

Every API route wants ``Authorization: Bearer`` with a token this server issued, or a self-signed
JWT of the test service account (what google-auth sends when a client uses JWT access); anything
else is 401 UNAUTHENTICATED. Errors are google.rpc.Status bodies
(https://cloud.google.com/apis/design/errors#http_mapping) with an ErrorInfo detail; 429
RESOURCE_EXHAUSTED carries ``Retry-After``. A project this server does not know answers 403
PERMISSION_DENIED on every route, as a project the caller may not read does. Lists are paged by
``pageToken`` (``page_size`` entries per page) and an empty list is ``{}`` (proto3 JSON).

A `Fault` answers matching requests with an error status, or with raw bytes (a garbled or empty
answer), ``times`` times or always. Requests are counted by route, project and constraint or
location (`count`).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import LoopbackServer

SERVICE_ACCOUNT = "auditor@loopback-project.iam.gserviceaccount.com"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_DOMAIN = {"policy": "orgpolicy.googleapis.com", "token": "oauth2.googleapis.com"}


def error_body(status: int, message: str, route: str = "", reason: str | None = None) -> dict[str, Any]:
    """A google.rpc.Status error document with an ErrorInfo detail."""
    detail = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason
        or {403: "IAM_PERMISSION_DENIED", 429: "RATE_LIMIT_EXCEEDED"}.get(
            status, _STATUS.get(status, "UNKNOWN")
        ),
        "domain": _DOMAIN.get(route, "aiplatform.googleapis.com"),
    }
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, "UNKNOWN"),
            "details": [detail],
        }
    }


@dataclass
class Fault:
    """An injected answer: which requests it matches, what it answers, how many times."""

    route: str  # policy | locations | endpoints | cache | token
    status: int = 200
    project: str | None = None
    key: str | None = None  # the constraint (policy) or the location (endpoints)
    page: int | None = None
    times: int | None = None
    body: bytes | None = None  # raw bytes answered with `status` instead of an error document
    retry_after: str | None = None
    reason: str | None = None
    fired: int = 0

    def matches(self, route: str, project: str | None, key: str | None, page: int) -> bool:
        """Whether this fault answers the request (and has not used up its count)."""
        if self.route != route or (self.times is not None and self.fired >= self.times):
            return False
        if self.project is not None and self.project != project:
            return False
        if self.key is not None and self.key != key:
            return False
        return self.page is None or self.page == page


@dataclass
class VertexProject:
    """One project as the APIs describe it."""

    project: str
    number: str = "100000000001"
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # constraint -> {"spec": ...}
    locations: list[str] = field(default_factory=lambda: ["europe-west4", "us-central1"])
    endpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # location -> Endpoint
    disable_cache: bool = False
    page_size: int = 2


def endpoint(project: VertexProject, location: str, endpoint_id: str, models: list[str]) -> dict[str, Any]:
    """An Endpoint resource as endpoints.list answers it."""
    return {
        "name": f"projects/{project.number}/locations/{location}/endpoints/{endpoint_id}",
        "displayName": f"endpoint-{endpoint_id}",
        "deployedModels": [
            {
                "id": f"{endpoint_id}{index}",
                "model": f"projects/{project.number}/locations/{location}/models/{model}",
                "displayName": model,
                "modelVersionId": "1",
                "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-4"}, "minReplicaCount": 1},
            }
            for index, model in enumerate(models)
        ],
        "trafficSplit": {f"{endpoint_id}0": 100} if models else {},
        "etag": "AMEw9yN",
        "createTime": "2026-01-01T00:00:00.000000Z",
        "updateTime": "2026-01-02T00:00:00.000000Z",
    }


def _token(owner: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{owner}\x00{offset}".encode()).decode().rstrip("=")


def _offset(owner: str, token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        who, offset = text.split("\x00")
        return int(offset) if who == owner else None
    except (ValueError, UnicodeDecodeError):
        return None


def _jwt_issuer(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


class GoogleApiServer(LoopbackServer):
    """Serves `VertexProject`s on 127.0.0.1 and counts what it was asked."""

    def __init__(self) -> None:
        self.projects: dict[str, VertexProject] = {}
        self.faults: list[Fault] = []
        self.requests: Counter[str] = Counter()
        self.issued: set[str] = set()
        self.presented: set[str] = set()  # every bearer token an API request carried
        self.lock = threading.Lock()
        super().__init__(_make_handler(self), "google-apis")

    def load(self, *projects: VertexProject, faults: list[Fault] | None = None) -> None:
        """Serve these projects and faults from now on, with the counters zeroed."""
        with self.lock:
            self.projects = {p.project: p for p in projects}
            self.faults = list(faults or [])
            self.requests.clear()

    def count(self, route: str, project: str | None = None, key: str | None = None) -> int:
        """Requests of `route` (for `project`, and the constraint or location `key`) served so far."""
        prefix = ":".join(part for part in (route, project, key) if part is not None)
        with self.lock:
            return sum(
                n for name, n in self.requests.items() if name == prefix or name.startswith(prefix + ":")
            )

    def api_requests(self) -> int:
        """Every Org Policy and Vertex AI request (the token endpoint aside)."""
        with self.lock:
            return sum(n for name, n in self.requests.items() if not name.startswith("token"))

    # request handling --------------------------------------------------------------------------

    def _fault(self, route: str, project: str | None, key: str | None, page: int) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(route, project, key, page):
                    fault.fired += 1
                    return fault
        return None

    def token(self, form: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        """The OAuth token endpoint: a JWT bearer grant of the test service account."""
        with self.lock:
            self.requests["token"] += 1
        fault = self._fault("token", None, None, 1)
        if fault is not None:
            return self._faulted(fault, "token")
        assertion = (form.get("assertion") or [""])[0]
        if _jwt_issuer(assertion) != SERVICE_ACCOUNT:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
        token = f"ya29.loopback-{secrets.token_hex(16)}"
        with self.lock:
            self.issued.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}, {}

    def authorized(self, header: str | None) -> bool:
        """Whether the Authorization header carries a token this server issued or the account's JWT."""
        if not header or not header.startswith("Bearer "):
            return False
        token = header.removeprefix("Bearer ")
        with self.lock:
            self.presented.add(token)
            if token in self.issued:
                return True
        return _jwt_issuer(token) == SERVICE_ACCOUNT

    def handle(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        """Answer one GET: (status, JSON document or raw bytes, headers)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        token = (query.get("pageToken") or [None])[0]
        if parts[:2] == ["v2", "projects"] and len(parts) == 5 and parts[3] == "policies":
            constraint, _, method = parts[4].partition(":")
            if method == "getEffectivePolicy":
                return self._policy(parts[2], constraint)
        if parts[:2] == ["v1", "projects"] and len(parts) == 4 and parts[3] == "locations":
            return self._locations(parts[2], token)
        if (
            parts[:2] == ["v1", "projects"]
            and len(parts) == 6
            and parts[3] == "locations"
            and parts[5] == "endpoints"
        ):
            return self._endpoints(parts[2], parts[4], token)
        if parts[:2] == ["v1", "projects"] and len(parts) == 4 and parts[3] == "cacheConfig":
            return self._cache(parts[2])
        return 404, error_body(404, f"The requested URL {path} was not found on this server."), {}

    def _count(self, name: str) -> None:
        with self.lock:
            self.requests[name] += 1

    def _faulted(self, fault: Fault, route: str) -> tuple[int, Any, dict[str, str]]:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return fault.status, fault.body, headers
        message = {
            429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'.",
            401: "Request had invalid authentication credentials.",
        }.get(fault.status, f"The caller does not have permission ({route})")
        return fault.status, error_body(fault.status, message, route, fault.reason), headers

    def _denied(self, route: str, permission: str, resource: str) -> tuple[int, Any, dict[str, str]]:
        message = f"Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
        return 403, error_body(403, message, route), {}

    def _policy(self, project_id: str, constraint: str) -> tuple[int, Any, dict[str, str]]:
        self._count(f"policy:{project_id}:{constraint}")
        fault = self._fault("policy", project_id, constraint, 1)
        if fault is not None:
            return self._faulted(fault, "policy")
        project = self.projects.get(project_id)
        if project is None:
            return self._denied(
                "policy", "orgpolicy.policy.get", f"projects/{project_id}/policies/{constraint}"
            )
        # Nothing set anywhere: the list constraint's default, allow all values.
        document = project.policies.get(constraint, {"spec": {"rules": [{"allowAll": True}]}})
        return 200, {"name": f"projects/{project.number}/policies/{constraint}", **document}, {}

    def _list(
        self,
        route: str,
        owner: str,
        key: str,
        entries: list[Any],
        size: int,
        token: str | None,
        fault_key: str | None,
        project: str,
    ) -> tuple[int, Any, dict[str, str]]:
        offset = 0
        if token:
            found = _offset(owner, token)
            if found is None:
                return 400, error_body(400, "Invalid page token."), {}
            offset = found
        fault = self._fault(route, project, fault_key, offset // size + 1)
        if fault is not None:
            return self._faulted(fault, route)
        body: dict[str, Any] = {}
        chunk = entries[offset : offset + size]
        if chunk:
            body[key] = chunk
        if offset + size < len(entries):
            body["nextPageToken"] = _token(owner, offset + size)
        return 200, body, {}

    def _locations(self, project_id: str, token: str | None) -> tuple[int, Any, dict[str, str]]:
        self._count(f"locations:{project_id}")
        project = self.projects.get(project_id)
        if project is None:
            return self._denied("locations", "aiplatform.locations.list", f"projects/{project_id}")
        entries = [
            {"name": f"projects/{project_id}/locations/{loc}", "locationId": loc, "displayName": loc}
            for loc in project.locations
        ]
        return self._list(
            "locations", project_id, "locations", entries, project.page_size, token, None, project_id
        )

    def _endpoints(
        self, project_id: str, location: str, token: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        self._count(f"endpoints:{project_id}:{location}")
        project = self.projects.get(project_id)
        if project is None:
            return self._denied(
                "endpoints", "aiplatform.endpoints.list", f"projects/{project_id}/locations/{location}"
            )
        entries = project.endpoints.get(location, [])
        owner = f"{project_id}/{location}"
        return self._list(
            "endpoints", owner, "endpoints", entries, project.page_size, token, location, project_id
        )

    def _cache(self, project_id: str) -> tuple[int, Any, dict[str, str]]:
        self._count(f"cache:{project_id}")
        fault = self._fault("cache", project_id, None, 1)
        if fault is not None:
            return self._faulted(fault, "cache")
        project = self.projects.get(project_id)
        if project is None:
            return self._denied("cache", "aiplatform.cacheConfigs.get", f"projects/{project_id}/cacheConfig")
        body: dict[str, Any] = {"name": f"projects/{project.number}/cacheConfig"}
        if project.disable_cache:  # proto3 JSON leaves a false bool out
            body["disableCache"] = True
        return 200, body, {}


def _make_handler(server: GoogleApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if not server.authorized(self.headers.get("Authorization")):
                body = error_body(401, "Request is missing required authentication credential.", "token")
                self._send(401, body, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
                return
            self._send(*server.handle(parts.path, parse_qs(parts.query)))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            if urlsplit(self.path).path != "/token":
                self._send(404, error_body(404, "Not found"), {})
                return
            self._send(*server.token(parse_qs(raw)))

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
