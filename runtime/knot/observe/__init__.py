"""Seeing inside the runtime: causation traces, delivery history, metrics and tracing.

    trace.py     deliveries of an event and the tree of its chain (`knot trace`), as JSON
    metrics.py   Prometheus metrics from the runtime's hooks (`GET /metrics`)
    tracing.py   OpenTelemetry tracing (the `otel` extra): trace contexts on the event path,
                 records of what happened for the spans
    spans.py     the spans built from those records, after the fact
    exporter.py  the process that builds and exports them, and the pipe to it

Everything here hangs off the runtime's hooks (`engine/hooks.py`) and reads the store through
the Storage Protocol; nothing on the event path imports it.
"""
