"""The fault proxy itself breaks answers exactly as documented (the scanner tests rely on it)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fault_proxy import GARBLE, FaultProxy, FaultRule, fault_proxy

BODY = b'{"items": ["a", "b", "c", "d"]}'


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with fault_proxy(f"http://127.0.0.1:{server.server_address[1]}", hang_seconds=2) as running:
        yield running
    server.shutdown()
    server.server_close()


def _get(proxy: FaultProxy, path: str = "/b/items", timeout: float = 5) -> tuple[int, bytes, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type")
    finally:
        connection.close()


def test_passes_through_without_rules(proxy: FaultProxy) -> None:
    assert _get(proxy) == (200, BODY, "application/json")
    assert proxy.requests == [("GET", "/b/items")]


def test_empty_truncated_garbled(proxy: FaultProxy) -> None:
    proxy.add(FaultRule("empty", path="/empty"))
    proxy.add(FaultRule("truncated", path="/half"))
    proxy.add(FaultRule("garbled", path="/garbled"))
    assert _get(proxy, "/empty")[:2] == (200, b"")
    assert _get(proxy, "/half")[:2] == (200, BODY[: len(BODY) // 2])
    assert _get(proxy, "/garbled")[:2] == (200, GARBLE)


def test_short_read_breaks_the_promised_length(proxy: FaultProxy) -> None:
    proxy.add(FaultRule("short_read"))
    with pytest.raises(http.client.IncompleteRead):
        _get(proxy)


def test_reset_and_hang(proxy: FaultProxy) -> None:
    proxy.add(FaultRule("reset", path="/reset"))
    proxy.add(FaultRule("hang", path="/hang"))
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        _get(proxy, "/reset")
    with pytest.raises(socket.timeout):
        _get(proxy, "/hang", timeout=0.3)


def test_transient_status_then_pass(proxy: FaultProxy) -> None:
    rule = proxy.add(FaultRule("status", status=429, times=2, headers={"Retry-After": "0"}, body=b"slow"))
    assert _get(proxy)[:2] == (429, b"slow")
    assert _get(proxy)[:2] == (429, b"slow")
    assert _get(proxy)[:2] == (200, BODY)
    assert proxy.hits_of(rule) == 2
