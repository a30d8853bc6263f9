"""The worker's Prometheus endpoint (``errands[metrics]``).

``errands worker --metrics-port PORT`` (or ``WorkerOptions(metrics_port=...)``,
``run(..., metrics_port=...)``) serves ``GET /metrics`` from a thread of the
worker's process, on ``metrics_host`` (127.0.0.1 by default).  The endpoint has
no authentication: bind another address only on a network you trust.

The socket is bound when the worker starts (a busy port fails the start); the
thread waits for the first connection before it imports ``http.server`` and
``prometheus_client`` (:mod:`errands._prometheus`), so that a worker nobody
scrapes pays nothing for them.  The metrics are listed in docs/metrics.md; the
database-wide gauges are :mod:`errands.metrics_db`'s.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

from errands._worker_stats import WorkerStats

logger = logging.getLogger("errands.worker")

__all__ = ["CONTENT_TYPE", "MetricsServer", "serve"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MetricsServer:
    """The HTTP server of one worker's ``/metrics`` (stop it with :meth:`close`)."""

    def __init__(self, stats: WorkerStats, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._stats = stats
        self._lock = threading.Lock()
        self._stopping = False
        self._server: Any = None  # the http.server, from the first connection on
        self._thread = threading.Thread(target=self._serve, name="errands-metrics", daemon=True)
        self._thread.start()
        logger.info("errands: metrics on http://%s:%d/metrics", host, self.port)
        if host not in LOOPBACK:
            logger.warning(
                "errands: the metrics endpoint on %s has no authentication: anyone who "
                "reaches the port can read it", host,
            )  # fmt: skip

    def _serve(self) -> None:
        sock = self._sock
        sock.settimeout(0.5)  # close() wakes accept(); the timeout is a fallback
        while True:
            try:
                conn, address = sock.accept()
                break
            except TimeoutError:
                if self._stopping:
                    return
            except OSError:
                return  # closed
        from errands._prometheus import http_server

        with self._lock:
            if self._stopping:
                conn.close()
                return
            sock.settimeout(None)
            self._server = server = http_server(self._stats, sock)
        conn.settimeout(None)
        server.process_request(conn, address)
        # A shutdown() requested meanwhile makes this return at once; the poll
        # interval bounds how long close() waits for it.
        server.serve_forever(poll_interval=0.1)

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
        else:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._thread.join(timeout=1.0)
            self._sock.close()
        self._thread.join(timeout=5.0)


def serve(stats: WorkerStats, host: str, port: int) -> MetricsServer:
    """Serve ``stats`` at ``http://host:port/metrics`` (port 0: a free port)."""
    return MetricsServer(stats, host, port)
