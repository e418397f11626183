"""A loopback reverse proxy that adds a fixed delay to every request: simulated network latency.

Local emulators answer in microseconds to milliseconds, which hides what concurrency buys against a
real cloud endpoint. Point a client at the proxy instead of the emulator:

    python benchmarks/latency_proxy.py --upstream http://127.0.0.1:5000 --delay-ms 40 [--port 0]

It prints ``listening on http://127.0.0.1:PORT`` once ready. ``GET /__latency_proxy__/count``
returns ``{"requests": N}`` (requests proxied so far) and ``POST`` to it resets the count. From
Python: ``start_proxy(upstream, delay_ms)`` runs it in a background thread.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CONTROL_PATH = "/__latency_proxy__/count"
# rewrite(method, path, status, payload) -> payload: lets a benchmark patch an emulator's answers.
Rewrite = Callable[[str, str, int, bytes], bytes]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


class LatencyProxy(ThreadingHTTPServer):
    """Forwards every request to `upstream` after sleeping `delay_ms`; counts the requests."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, upstream: str, delay_ms: float, rewrite: Rewrite | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("upstream must be http://HOST:PORT")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.delay = delay_ms / 1000.0
        self.rewrite = rewrite
        self.requests = 0
        self.count_lock = threading.Lock()
        self.local = threading.local()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        """Where clients should send their requests."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def connection(self) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to the upstream."""
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
            self.local.conn = conn
        return conn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LatencyProxy

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _control(self) -> None:
        with self.server.count_lock:
            count = self.server.requests
            if self.command == "POST":
                self.server.requests = 0
        body = json.dumps({"requests": count}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        if self.path == CONTROL_PATH:
            self._control()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with self.server.count_lock:
            self.server.requests += 1
        time.sleep(self.server.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in (1, 2):
            conn = self.server.connection()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if self.server.rewrite is not None:
                    payload = self.server.rewrite(self.command, self.path, response.status, payload)
                break
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self.server.local.conn = None
                if attempt == 2:
                    self.send_error(502, "upstream connection failed")
                    return
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward


def start_proxy(
    upstream: str, delay_ms: float, port: int = 0, rewrite: Rewrite | None = None
) -> LatencyProxy:
    """Start a proxy in a background thread; `proxy.url` is its address, `proxy.shutdown()` stops it."""
    proxy = LatencyProxy(port, upstream, delay_ms, rewrite)
    threading.Thread(target=proxy.serve_forever, name="latency-proxy", daemon=True).start()
    return proxy


def main(argv: list[str] | None = None) -> int:
    """Run the proxy in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=40.0, help="added to every request (default 40)")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.port, args.upstream, args.delay_ms)
    print(f"listening on {proxy.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
