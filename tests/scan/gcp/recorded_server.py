"""A loopback server speaking the Cloud Storage JSON API for bucket metadata, from recorded JSON.

No emulator models bucket location faithfully (see the shared emulators reference), so location,
locationType, customPlacementConfig, ``nextPageToken`` paging, ``unreachable`` buckets and the
403 / 429 error bodies are served from recorded bucket resources (fixtures/recorded/gcs/*.json).

Routes (the subset the scanner uses, shaped like https://storage.googleapis.com):
  GET /storage/v1/b?project=P[&pageToken=T][&maxResults=N][&projection=noAcl|full]
      [&returnPartialSuccess=true]
  GET /storage/v1/b/<bucket>[?projection=...]
  GET /_stats  (test-only: requests served, by route)

A fixture file describes one project::

  {"project": "p", "max_page_size": 3, "buckets": [<bucket resource>, ...],
   "unreachable": ["projects/_/buckets/x"], "get": {"x": <bucket resource>},
   "faults": [{"op": "list"|"get", "page": 2, "bucket": "x", "status": 429, "times": 1,
               "message": "..."}]}

A fault without "times" fires on every matching request. A fault with a "body" answers that JSON
document with its status (e.g. 200 and a listing page without items), instead of an error body. Self-contained (stdlib only) so the
benchmark can load it by path.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import LoopbackServer

API_PREFIX = "/storage/v1/b"
STATS_PATH = "/_stats"  # not part of the real API: request counts, for the benchmark
MAX_PAGE = 1000  # the real service caps maxResults at 1,000
_ACL_FIELDS = ("acl", "defaultObjectAcl", "owner")

# Error bodies in the documented JSON API shape:
# https://cloud.google.com/storage/docs/json_api/v1/status-codes
_REASONS = {
    400: ("global", "invalid", "Invalid argument."),
    403: ("global", "forbidden", "Forbidden"),
    404: ("global", "notFound", "Not Found"),
    429: (
        "usageLimits",
        "rateLimitExceeded",
        "The rate of requests exceeds the rate limit for this project.",
    ),
    500: ("global", "backendError", "Backend Error"),
    503: ("global", "backendError", "We encountered an internal error. Please try again."),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The JSON API error document for `status`."""
    domain, reason, default = _REASONS.get(status, ("global", "unknown", "Error"))
    text = message or default
    return {
        "error": {
            "code": status,
            "message": text,
            "errors": [{"message": text, "domain": domain, "reason": reason}],
        }
    }


@dataclass
class Fault:
    """An injected error: which requests it matches, what it returns, how many times."""

    op: str
    status: int
    page: int | None = None
    bucket: str | None = None
    times: int | None = None
    message: str | None = None
    body: Any = None
    fired: int = 0

    def answer(self) -> tuple[int, Any]:
        """The status and JSON document this fault answers with."""
        return self.status, self.body if self.body is not None else error_body(self.status, self.message)

    def matches(self, op: str, page: int | None, bucket: str | None) -> bool:
        """Whether this fault answers the request (and has not used up its count)."""
        if self.op != op or (self.times is not None and self.fired >= self.times):
            return False
        if self.page is not None and self.page != page:
            return False
        return self.bucket is None or self.bucket == bucket


@dataclass
class RecordedProject:
    """The recorded buckets of one project and its injected faults."""

    project: str
    buckets: list[dict[str, Any]]
    max_page_size: int = MAX_PAGE
    unreachable: list[str] = field(default_factory=list)
    get: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedProject:
        """Build from a fixture document."""
        return cls(
            project=data["project"],
            buckets=list(data.get("buckets", [])),
            max_page_size=int(data.get("max_page_size", MAX_PAGE)),
            unreachable=list(data.get("unreachable", [])),
            get=dict(data.get("get", {})),
            faults=[Fault(**f) for f in data.get("faults", [])],
        )


def load_projects(directory: Path) -> dict[str, RecordedProject]:
    """Every fixture file of `directory` (one project each)."""
    projects: dict[str, RecordedProject] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded = RecordedProject.from_json(data)
        projects[recorded.project] = recorded
    return projects


def _token(project: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{project}\x00{offset}".encode()).decode().rstrip("=")


def _offset(project: str, token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        owner, offset = text.split("\x00")
        return int(offset) if owner == project else None
    except (ValueError, UnicodeDecodeError):
        return None


class RecordedGcsServer(LoopbackServer):
    """Serves recorded projects on 127.0.0.1; counts requests; optional per-request delay."""

    def __init__(self, projects: dict[str, RecordedProject] | None = None, delay: float = 0.0) -> None:
        self.projects: dict[str, RecordedProject] = dict(projects or {})
        self.delay = delay
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(_make_handler(self), "recorded-gcs")

    def load(self, projects: dict[str, RecordedProject]) -> None:
        """Replace the served projects (faults start afresh) and reset the counters."""
        with self.lock:
            self.projects = dict(projects)
            self.requests.clear()

    # request handling --------------------------------------------------------------------------

    def _fault(
        self, project: RecordedProject | None, op: str, page: int | None, bucket: str | None
    ) -> Fault | None:
        candidates = project.faults if project is not None else []
        with self.lock:
            for fault in candidates:
                if fault.matches(op, page, bucket):
                    fault.fired += 1
                    return fault
        return None

    def handle(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """Answer one GET: (status, JSON body)."""

        def arg(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        projection = arg("projection") or "noAcl"
        if path == STATS_PATH:
            with self.lock:
                return 200, dict(self.requests)
        if path.rstrip("/") == API_PREFIX:
            with self.lock:
                self.requests["buckets.list"] += 1
            return self._list(
                arg("project"), arg("pageToken"), arg("maxResults"), projection, arg("returnPartialSuccess")
            )
        if path.startswith(API_PREFIX + "/") and "/" not in path[len(API_PREFIX) + 1 :]:
            with self.lock:
                self.requests["buckets.get"] += 1
            return self._get(unquote(path[len(API_PREFIX) + 1 :]), projection)
        return 404, error_body(404)

    def _list(
        self,
        project_id: str | None,
        token: str | None,
        max_results: str | None,
        projection: str,
        partial: str | None,
    ) -> tuple[int, Any]:
        if not project_id:
            return 400, error_body(400, "Required parameter: project")
        project = self.projects.get(project_id)
        if project is None:
            return 403, error_body(
                403,
                f"scanner@{project_id}.iam.gserviceaccount.com does not have storage.buckets.list access to "
                "the Google Cloud project. Permission 'storage.buckets.list' denied on resource (or it may "
                "not exist).",
            )
        offset = 0
        if token:
            found = _offset(project_id, token)
            if found is None:
                return 400, error_body(400, "Invalid page token.")
            offset = found
        size = min(int(max_results) if max_results else MAX_PAGE, project.max_page_size, MAX_PAGE)
        page_number = offset // size + 1 if size else 1
        fault = self._fault(project, "list", page_number, None)
        if fault is not None:
            return fault.answer()
        items = [_project(b, projection) for b in project.buckets[offset : offset + size]]
        body: dict[str, Any] = {"kind": "storage#buckets"}
        if items:
            body["items"] = items
        if offset + size < len(project.buckets):
            body["nextPageToken"] = _token(project_id, offset + size)
        if (partial or "").lower() == "true" and offset == 0 and project.unreachable:
            body["unreachable"] = list(project.unreachable)
        return 200, body

    def _get(self, name: str, projection: str) -> tuple[int, Any]:
        for project in self.projects.values():
            resource = project.get.get(name) or next(
                (b for b in project.buckets if b.get("name") == name), None
            )
            if resource is None:
                continue
            fault = self._fault(project, "get", None, name)
            if fault is not None:
                return fault.answer()
            return 200, _project(resource, projection)
        return 404, error_body(404, f"The specified bucket does not exist: {name}")


def _project(resource: dict[str, Any], projection: str) -> dict[str, Any]:
    if projection == "full":
        return resource
    return {k: v for k, v in resource.items() if k not in _ACL_FIELDS}


def _make_handler(server: RecordedGcsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if server.delay:
                time.sleep(server.delay)
            parts = urlsplit(self.path)
            status, body = server.handle(parts.path, parse_qs(parts.query))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _unsupported(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            payload = json.dumps(error_body(403, "The recorded server is read-only.")).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_PATCH = do_DELETE = _unsupported

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
