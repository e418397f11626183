"""A loopback HTTPS server replaying recorded Azure Resource Manager JSON, for tests and benchmarks.

Documents are keyed by URL path (case-insensitive, as ARM paths are). A document ``{"value": [...]}``
is served in pages of `page_size` with a ``nextLink`` carrying ``$skipToken``, as ARM does; a document
``{"$status": 403, "$headers": {...}, "body": {...}}`` is an error answer. `faults` queues one-shot
answers (e.g. 429 with Retry-After, or raw bytes that are not JSON) served before the document;
`latency` delays every answer. The generic resources list (``/subscriptions/{id}/resources``)
honours ``$filter`` on ``resourceType`` and ``name``. A resource provider listed in `API_VERSIONS`
refuses an api-version it does not serve, as ARM does (400 ``NoRegisteredProviderFound``).
The certificate is self-signed, made at start; clients trust it with ``connection_verify=ca_file``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_FILTER_TERM = re.compile(r"(\w+)\s+eq\s+'([^']*)'", re.IGNORECASE)
# api-versions a provider serves (the stable ones of azure-rest-api-specs); others are refused.
API_VERSIONS: dict[str, frozenset[str]] = {
    "microsoft.cognitiveservices": frozenset(
        {"2023-05-01", "2024-10-01", "2025-06-01", "2025-09-01", "2025-12-01", "2026-03-01"}
    ),
}
_PROVIDER = re.compile(r"/providers/([^/]+)/", re.IGNORECASE)


def load_recorded(root: Path) -> dict[str, Any]:
    """Every ``*.json`` under `root` keyed by its ARM path: ``a/b/c.json`` answers ``GET /a/b/c``."""
    documents: dict[str, Any] = {}
    for file in sorted(root.rglob("*.json")):
        path = "/" + file.relative_to(root).with_suffix("").as_posix()
        documents[path.lower()] = json.loads(file.read_text(encoding="utf-8"))
    return documents


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1/localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auditor test ARM")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "arm-cert.pem", directory / "arm-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass(frozen=True)
class Fault:
    """A one-shot answer served instead of the document, after `delay` seconds."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None  # sent as it is instead of `body` (a garbled or truncated answer)


def throttled(retry_after: int = 1) -> Fault:
    """ARM's 429 answer."""
    return Fault(
        429,
        {"error": {"code": "TooManyRequests", "message": "The request is being throttled."}},
        {"Retry-After": str(retry_after)},
    )


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int


class ArmServer:
    """Serves `documents` over HTTPS on a free loopback port; use as a context manager."""

    def __init__(
        self,
        documents: Mapping[str, Any],
        *,
        token: str,
        cert_dir: Path,
        page_size: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.documents = {k.lower(): v for k, v in documents.items()}
        self.latency = latency
        self.token = token
        self.page_size = page_size
        self.faults: dict[str, list[Fault]] = {}
        self.requests: list[SeenRequest] = []
        self._generation = 0  # a request still answering when `reset` runs is not seen after it
        self._lock = threading.Lock()
        self.ca_file, key_file = make_certificate(cert_dir)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="arm-server", daemon=True)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ArmServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def add_fault(self, path: str, *faults: Fault) -> None:
        """Queue one-shot answers for `path`."""
        with self._lock:
            self.faults.setdefault(path.lower(), []).extend(faults)

    def reset(self) -> None:
        """Forget seen requests and pending faults."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._generation += 1

    def seen(self, path_part: str) -> list[SeenRequest]:
        """Requests whose path contains `path_part` (case-insensitive)."""
        with self._lock:
            return [r for r in self.requests if path_part.lower() in r.path.lower()]

    def answer(
        self, method: str, raw_path: str, authorization: str | None
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) for one request."""
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            generation = self._generation
        status, headers, body = self._answer(method, parts.path.rstrip("/"), query, authorization)
        with self._lock:
            if generation == self._generation:
                self.requests.append(SeenRequest(method, parts.path, query, status))
        return status, headers, body

    def _answer(
        self, method: str, raw_path: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, str], Any]:
        path = raw_path.lower()
        if self.latency:
            time.sleep(self.latency)
        if authorization != f"Bearer {self.token}":
            return 401, {}, _error("AuthenticationFailed", "Authentication failed: missing or wrong token.")
        if method != "GET":
            return 405, {}, _error("MethodNotAllowed", f"{method} is not recorded.")
        if not query.get("api-version"):
            return (
                400,
                {},
                _error("MissingApiVersionParameter", "The api-version query parameter is required."),
            )
        provider = _PROVIDER.search(path + "/")
        served = API_VERSIONS.get(provider.group(1)) if provider else None
        if served is not None and query["api-version"][0] not in served:
            return (
                400,
                {},
                _error(
                    "NoRegisteredProviderFound",
                    f"No registered resource provider found for API version '{query['api-version'][0]}'. "
                    f"The supported api-versions are '{', '.join(sorted(served))}'.",
                ),
            )
        with self._lock:
            pending = self.faults.get(path)
            fault = pending.pop(0) if pending else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            return fault.status, fault.headers, RawBody(fault.raw) if fault.raw is not None else fault.body
        document = self.documents.get(path)
        if document is None:
            return 404, {}, _error("ResourceNotFound", f"The resource '{path}' was not found.")
        if isinstance(document, dict) and "$status" in document:
            return int(document["$status"]), dict(document.get("$headers") or {}), document.get("body")
        if isinstance(document, dict) and isinstance(document.get("value"), list):
            return 200, {}, self._page(raw_path, query, document["value"])
        return 200, {}, document

    def _page(self, path: str, query: dict[str, list[str]], items: list[Any]) -> dict[str, Any]:
        if path.lower().endswith("/resources") and query.get("$filter"):
            terms = {k.lower(): v.lower() for k, v in _FILTER_TERM.findall(query["$filter"][0])}
            items = [
                item
                for item in items
                if all(
                    str(item.get("type" if k == "resourcetype" else k, "")).lower() == v
                    for k, v in terms.items()
                )
            ]
        size = self.page_size or max(len(items), 1)
        if query.get("$maxpagesize"):
            size = min(size, int(query["$maxpagesize"][0]))
        start = int((query.get("$skipToken") or ["0"])[0])
        page: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            next_query = {k: v[0] for k, v in query.items() if k != "$skipToken"}
            next_query["$skipToken"] = str(start + size)
            page["nextLink"] = f"{self.base_url}{path}?{urlencode(next_query)}"
        return page


@dataclass(frozen=True)
class RawBody:
    """An answer body sent byte for byte (not JSON-encoded)."""

    data: bytes


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _handler_for(server: ArmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; without TCP_NODELAY every answer waits for
        # the client's delayed ACK (about 40 ms on Linux).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._reply()

        def do_POST(self) -> None:
            self._reply()

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = server.answer(self.command, self.path, self.headers.get("Authorization"))
            if isinstance(body, RawBody):
                payload = body.data
            else:
                payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
            for name, value in headers.items():
                self.send_header(name, value)
            try:
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.close_connection = True  # the client gave up (read timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
