"""Taking a sink over from another runtime (the cluster's claims, on any store).

Found by the three-NATS-server fault test: a node taking a sink over routed new events to it
before it had read the sink's backlog, and when that read timed out (JetStream re-electing a
leader) the sink was left attached without its backlog; the next events were delivered and
moved its cursor past the ones it never got. The backlog is now read before anything routes
to the sink, and a failed take-over leaves it parked, to be taken again whole.
"""

from __future__ import annotations

import pytest

from knot import RecordingSink, Runtime, SinkSpec
from knot._exceptions import StoreError

from .conftest import recording

pytestmark = pytest.mark.anyio


class Gate:
    """A cluster's answer to "does this runtime serve the sink?": only those in `serving`."""

    def __init__(self) -> None:
        self.serving: set[str] = set()

    def holds(self, spec: SinkSpec) -> bool:
        return spec.name in self.serving

    def parked(self, spec: SinkSpec) -> None:
        pass

    def holder(self, spec: SinkSpec) -> str:
        return "here" if spec.name in self.serving else "elsewhere"


async def test_a_take_over_whose_backlog_read_fails_routes_nothing_and_can_be_taken_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = runtime.registry
    await runtime.add_sink(recording("rec", "custom.t.*"))
    registry.gate = Gate()
    await registry.release("rec")  # another runtime serves it now
    sent = [await runtime.emit("t.n", {"n": n}) for n in range(5)]
    await runtime.wait_idle()
    cursor = runtime.store.load_cursors()["rec"]  # what the taking runtime reads

    read_backlog = registry._backlog
    assert read_backlog is not None
    failures = [StoreError("NATS did not answer within 10 s; is the server reachable?")]

    def flaky(name: str, after: int, upto: int) -> list[object]:
        if failures:
            raise failures.pop()
        return list(read_backlog(name, after, upto))

    monkeypatch.setattr(registry, "_backlog", flaky)
    with pytest.raises(StoreError):
        await registry.claim("rec", cursor)
    assert registry.parked() == ["rec"]
    assert "rec" not in runtime.delivery.workers
    sent.append(await runtime.emit("t.n", {"n": 5}))  # reaches nobody here: it is parked
    await runtime.wait_idle()

    assert await registry.claim("rec", cursor)  # the next round takes it whole
    sent.append(await runtime.emit("t.n", {"n": 6}))
    sink = registry.sink("rec")
    assert isinstance(sink, RecordingSink)
    got = await sink.wait_for(len(sent))
    assert [e.id for e in got] == sent
