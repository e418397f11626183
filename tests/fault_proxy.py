"""A fault-injecting reverse proxy on loopback, for every cloud's scanner tests.

Point a client's endpoint at `FaultProxy.url`; each request is forwarded to the real emulator
(moto_server, the GCS emulator, Azurite, the fake ARM server) and its answer relayed, unless a
`FaultRule` matches the request, in which case the proxy breaks the answer the way real networks
and overloaded services do:

======================  ===================================================================
fault                   what the client sees
======================  ===================================================================
``empty``               200 with the upstream's headers and an empty body
``truncated``           200, the first half of the upstream's body (Content-Length matches)
``garbled``             200, the body replaced by bytes that parse as nothing
``short_read``          200 whose Content-Length promises the whole body; the connection
                        closes after half of it
``reset``               the connection is reset (RST) before any byte of an answer
``hang``                nothing at all until `hang_seconds` pass (the client must time out)
``status``              `status` (429, 503 ...) with `body` and `headers` (e.g. Retry-After),
                        without calling upstream
======================  ===================================================================

A rule applies to the first `times` matching requests (every one when `times` is None), so a
transient fault (``times=1``) and a persistent one are the same rule. `hits` counts requests per
rule; `requests` lists every (method, path) seen, so tests can assert which calls were made.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["empty", "truncated", "garbled", "short_read", "reset", "hang", "status"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "empty",
    "truncated",
    "garbled",
    "short_read",
    "reset",
    "hang",
    "status",
)

# Not JSON, not XML, not UTF-8: a parser can make nothing of it.
GARBLE = b"\xff\xfe<\x00{\x9c]]\x00\x81garbled\xc3("

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass
class FaultRule:
    """Break the answers to requests whose method matches and whose path (with query) matches `path`."""

    fault: FaultKind
    path: str = ".*"
    method: str | None = None
    times: int | None = None
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    _pattern: re.Pattern[str] = field(init=False, repr=False)
    _used: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def claims(self, method: str, path: str) -> bool:
        """True (and counted) if this rule breaks this request."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if not self._pattern.search(path):
            return False
        if self.times is not None and self._used >= self.times:
            return False
        self._used += 1
        return True


class FaultProxy:
    """A threaded loopback reverse proxy in front of `upstream` (http:// or https://)."""

    def __init__(
        self,
        upstream: str,
        *,
        server_ssl: ssl.SSLContext | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_https = parts.scheme == "https"
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or (443 if self.upstream_https else 80)
        self._upstream_context: ssl.SSLContext | None = None
        self.hang_seconds = hang_seconds
        self.rules: list[FaultRule] = []
        self.hits: Counter[int] = Counter()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        if server_ssl is not None:
            self._server.socket = server_ssl.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if server_ssl is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to give the client instead of the upstream's."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def add(self, rule: FaultRule) -> FaultRule:
        """Install a rule (rules are tried in the order added)."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and forget the counts."""
        with self._lock:
            self.rules.clear()
            self.hits.clear()
            self.requests.clear()

    def hits_of(self, rule: FaultRule) -> int:
        """How many requests `rule` broke."""
        return rule._used

    def start(self) -> FaultProxy:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release hanging requests."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _claim(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            self.requests.append((method, path))
            for index, rule in enumerate(self.rules):
                if rule.claims(method, path):
                    self.hits[index] += 1
                    return rule
        return None

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection: http.client.HTTPConnection
        if self.upstream_https:
            if self._upstream_context is None:
                # Made once: create_default_context() loads the system CA store (tens of ms).
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # loopback emulator with a test certificate
                self._upstream_context = context
            connection = http.client.HTTPSConnection(
                self.upstream_host, self.upstream_port, timeout=60, context=self._upstream_context
            )
        else:
            connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.reason, list(response.getheaders()), payload
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stall

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rule = proxy._claim(self.command, self.path)
            if rule is not None and rule.fault in ("reset", "hang", "status"):
                self._break_without_upstream(rule)
                return
            status, reason, headers, payload = proxy._forward(
                self.command, self.path, list(self.headers.items()), body
            )
            if rule is None:
                self._answer(status, reason, headers, payload)
                return
            if rule.fault == "empty":
                self._answer(200, "OK", headers, b"")
            elif rule.fault == "truncated":
                self._answer(200, "OK", headers, payload[: len(payload) // 2])
            elif rule.fault == "garbled":
                self._answer(200, "OK", headers, GARBLE)
            elif rule.fault == "short_read":
                self._answer(200, "OK", headers, payload[: len(payload) // 2], promised=max(len(payload), 2))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def _break_without_upstream(self, rule: FaultRule) -> None:
            if rule.fault == "reset":
                # SO_LINGER 0 makes close() send RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if rule.fault == "hang":
                proxy._stopping.wait(proxy.hang_seconds)
                self.close_connection = True
                return
            extra = [(k, v) for k, v in rule.headers.items()]
            self._answer(rule.status, http.client.responses.get(rule.status, "Error"), extra, rule.body)

        def _answer(
            self,
            status: int,
            reason: str,
            headers: list[tuple[str, str]],
            payload: bytes,
            promised: int | None = None,
        ) -> None:
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload) if promised is None else promised))
            self.end_headers()
            if payload:
                self.wfile.write(payload)
            self.wfile.flush()

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _relay

        def do_HEAD(self) -> None:
            # HEAD answers carry no body, so only reset, hang and status faults change them.
            rule = proxy._claim(self.command, self.path)
            if rule is not None and rule.fault in ("reset", "hang", "status"):
                self._break_without_upstream(rule)
                return
            status, reason, headers, _ = proxy._forward(
                self.command, self.path, list(self.headers.items()), b""
            )
            if rule is not None:
                status, reason = 200, "OK"
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def fault_proxy(
    upstream: str, *, server_ssl: ssl.SSLContext | None = None, hang_seconds: float = 30.0
) -> Iterator[FaultProxy]:
    """A started `FaultProxy` in front of `upstream`, stopped on exit."""
    proxy = FaultProxy(upstream, server_ssl=server_ssl, hang_seconds=hang_seconds).start()
    try:
        yield proxy
    finally:
        proxy.stop()
