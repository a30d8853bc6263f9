"""Whether OpenTelemetry tracing is on (:mod:`errands.tracing`), readable without
importing it: enqueueing checks :data:`tracer` on every call, so tracing that is
off costs one attribute read and imports nothing."""

from __future__ import annotations

from typing import Any

tracer: Any = None
"""The ``opentelemetry.trace.Tracer`` of errands while tracing is enabled, else None."""
