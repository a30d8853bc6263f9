"""The worker's Prometheus endpoint (``errands[metrics]``).

``errands worker --metrics-port PORT`` (or ``WorkerOptions(metrics_port=...)``,
``run(..., metrics_port=...)``) serves ``GET /metrics`` from a thread of the
worker's process, on ``metrics_host`` (127.0.0.1 by default).  The endpoint has
no authentication: bind another address only on a network you trust.

The socket is bound when the worker starts (a busy port fails the start);
``prometheus_client`` is imported by the server's thread at the first scrape,
so that a worker's start-up does not pay for it.  The metrics are listed in
docs/metrics.md; the database-wide gauges are :mod:`errands.metrics_db`'s.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from errands._worker_stats import WorkerStats

logger = logging.getLogger("errands.worker")

__all__ = ["CONTENT_TYPE", "MetricsServer", "serve"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""


class MetricsServer:
    """The HTTP server of one worker's ``/metrics`` (stop it with :meth:`close`)."""

    def __init__(self, stats: WorkerStats, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"stats": stats})
        server_class = _Server6 if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="errands-metrics", daemon=True
        )
        self._thread.start()
        logger.info("errands: metrics on http://%s:%d/metrics", host, self.port)
        if host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "errands: the metrics endpoint on %s has no authentication: anyone who "
                "reaches the port can read it", host,
            )  # fmt: skip

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    stats: WorkerStats

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        from errands._prometheus import render  # the first scrape imports prometheus_client

        body = render(self.stats)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape on stderr is noise


def serve(stats: WorkerStats, host: str, port: int) -> MetricsServer:
    """Serve ``stats`` at ``http://host:port/metrics`` (port 0: a free port)."""
    return MetricsServer(stats, host, port)
