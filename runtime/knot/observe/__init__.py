"""Seeing inside the runtime: causation traces, delivery history, metrics and tracing.

    trace.py     deliveries of an event and the tree of its chain (`knot trace`), as JSON
    metrics.py   Prometheus metrics from the runtime's hooks (`GET /metrics`)
    tracing.py   OpenTelemetry spans and W3C trace context (the `otel` extra)

Everything here hangs off the runtime's hooks (`engine/hooks.py`) and reads the store through
the Storage Protocol; nothing on the event path imports it.
"""
