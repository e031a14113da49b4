"""The event path: an event is journaled in the store, routed to sinks and delivered in order.

    storage.py       the storage seam: one Protocol for what the engine keeps durable
    store.py         the embedded SQLite store, the first Storage (events, cursors, audit, records)
    journal.py       group commit: one writer thread, one transaction per batch
    router.py        which sinks an event goes to
    dispatch.py      from journal to sinks: route freshly committed events in order
    delivery.py      one ordered, bounded queue and one worker per sink; retries and give-ups
    attempts.py      the record of every delivery attempt, as the store keeps it
    outcomes.py      what happened to an event at its sinks (outcomes, reports)
    hooks.py         the guarded observers of the event path, and the tracer's slot
    registry.py      the one place sinks are added, replaced and removed
    housekeeping.py  periodic chores: idle cursors move on, old rows are pruned

The engine imports no feature package: sinks reach it through `knot.sinks.base`, and what it
needs of the runtime through the Protocols in `knot.types`.
"""
