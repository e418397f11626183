"""The lifecycle every loopback API server of the tests shares: bind 127.0.0.1 on a free port,
serve in a daemon thread, stop and close the socket."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) that serves `handler` in a background thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, poll_interval: float = 0.5) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(poll_interval,), name=name, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, http://127.0.0.1:PORT."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
