"""One vocabulary for the three Python handles: Runtime (async), SyncRuntime and Client.

The same act has the same verb and the same keywords on each (`limit=` for counts,
`audit_entries` for the audit read, `record_audit` for the write, `call_method`, `wait_idle`),
and the old spellings still work: the documented ones silently, the others with a
DeprecationWarning.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knot import AuditEntry, AuditKind, Client, NotFound, Runtime, SyncRuntime
from knot._events import new_event_id
from knot.notebook.backends import Backend, ConnectedBackend, EmbeddedBackend

from .helpers import start_server, wait_until

Handle = SyncRuntime | Client

# The verbs both blocking handles answer, each also on Runtime (awaited there) but `call`
# (SyncRuntime's and Client's short name for call_method) and `close` (Runtime stops).
SHARED = [
    "emit",
    "events",
    "audit_entries",
    "sinks",
    "add_sink",
    "update_sink",
    "remove_sink",
    "call_method",
    "wait_idle",
    "deliveries",
    "trace",
]
BLOCKING_ONLY = ["call", "close"]

# Keywords kept only as deprecated spellings of another (Client's counts were `n=`), and the
# keyword SyncRuntime.call still takes for its deprecated `call(coroutine)` form.
DEPRECATED_KEYWORDS = {("Client", "n"), ("SyncRuntime.call", "timeout")}

# Positional parameters that name what they take in each handle's own type (a Runtime takes a
# Sink object as well as a definition); nobody passes them by keyword.
POSITIONAL_NAMES = {"add_sink": {"item", "definition"}}

ECHO = """\
import knot.methods

@knot.methods.method
def echo(params):
    return params
"""


def _parameters(cls: type, verb: str) -> dict[str, inspect.Parameter]:
    """The parameters of `cls.verb` but `self` and the deprecated spellings."""
    owners = (cls.__name__, f"{cls.__name__}.{verb}")
    drop = {name for owner, name in DEPRECATED_KEYWORDS if owner in owners}
    params = inspect.signature(getattr(cls, verb)).parameters
    return {n: p for n, p in params.items() if n != "self" and n not in drop}


def _comparable(verb: str, params: dict[str, inspect.Parameter]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of the named parameters; **options stands for any keyword."""
    shown = []
    for p in params.values():
        if p.kind is p.VAR_KEYWORD:
            continue
        name = "<positional>" if p.name in POSITIONAL_NAMES.get(verb, ()) else p.name
        shown.append((name, p.kind, p.default))
    return shown


@pytest.mark.parametrize("verb", SHARED + BLOCKING_ONLY)
def test_the_blocking_handles_take_the_same_parameters(verb: str) -> None:
    sync = _parameters(SyncRuntime, verb)
    client = _parameters(Client, verb)
    if verb == "emit":
        # SyncRuntime passes every Runtime option on (owner, actor, id, ...); over HTTP only
        # `id` can be sent, and it is one of those options.
        assert any(p.kind is p.VAR_KEYWORD for p in sync.values())
        assert set(client) - set(sync) == {"id"}
        client.pop("id")
    assert _comparable(verb, sync) == _comparable(verb, client)


@pytest.mark.parametrize("verb", SHARED)
def test_runtime_takes_every_keyword_the_blocking_handles_take(verb: str) -> None:
    runtime = _parameters(Runtime, verb)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in runtime.values())
    for cls in (SyncRuntime, Client):
        for name, param in _parameters(cls, verb).items():
            if param.kind is param.VAR_KEYWORD or name in POSITIONAL_NAMES.get(verb, ()):
                continue
            if name not in runtime:
                assert takes_any, f"Runtime.{verb} has no {name}= ({cls.__name__} has)"
                continue
            assert runtime[name].default == param.default, f"{cls.__name__}.{verb}({name}=)"


def test_the_notebook_backends_answer_the_same_names() -> None:
    verbs = {n for n in vars(Backend) if not n.startswith("_") and callable(vars(Backend)[n])}
    for backend in (EmbeddedBackend, ConnectedBackend):
        assert verbs <= set(vars(backend)), backend.__name__
    for verb in ("events", "audit_entries", "call_method", "wait_idle", "sinks", "emit"):
        assert verb in verbs
    assert not {"audit", "call", "wait"} & verbs  # the old, ambiguous names are gone


# -- the same calls, against an embedded runtime and against `knot serve` -------------------


@pytest.fixture(params=["SyncRuntime", "Client"])
def handle(request: pytest.FixtureRequest, project: Path) -> Iterator[Handle]:
    methods = project / "scripts" / "methods"
    methods.mkdir(parents=True)
    (methods / "echo.py").write_text(ECHO, encoding="utf-8")
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    # A script sink without its `# events:` header: refused, with an audit entry to read.
    (sinks / "broken.py").write_text("print('no header')\n", encoding="utf-8")
    if request.param == "SyncRuntime":
        with SyncRuntime(project) as rt:
            yield rt
        return
    server = start_server(project, quiet=True)
    try:
        with Client(server.url) as client:
            yield client
    finally:
        server.kill()


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    """Value objects (Event, AuditEntry, SinkStatus) as the HTTP API's JSON rows."""
    return [item if isinstance(item, dict) else item.to_dict() for item in items]


def _audited(handle: Handle, **options: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def read() -> bool:
        found[:] = _rows(handle.audit_entries(**options))
        return any(row["kind"] == "script_rejected" for row in found)

    wait_until(read)
    return found


def test_the_handles_answer_the_same_calls(handle: Handle) -> None:
    added = handle.add_sink({"name": "rec", "type": "recording", "events": "custom.vocab.*"})
    assert _rows([added])[0]["name"] == "rec"
    changed = handle.update_sink("rec", {"description": "what the vocabulary test saw"})
    assert _rows([changed])[0]["description"] == "what the vocabulary test saw"

    first = handle.emit("vocab.hello", {"n": 1})
    chosen = new_event_id()
    assert handle.emit("vocab.hello", {"n": 2}, id=chosen) == chosen
    handle.wait_idle(timeout=10)

    newest = _rows(handle.events("custom.vocab.*", limit=1))
    assert [(e["id"], e["data"]) for e in newest] == [(chosen, {"n": 2})]
    assert [e["id"] for e in _rows(handle.events(limit=2))] == [first, chosen]
    rec = next(s for s in _rows(handle.sinks()) if s["name"] == "rec")
    assert rec["delivered"] == 2

    entries = _audited(handle, limit=10)
    assert {e["sink"] for e in entries if e["kind"] == "script_rejected"} == {"broken"}
    assert _audited(handle, limit=10, sink="broken") == [
        e for e in entries if e["sink"] == "broken"
    ]
    assert handle.audit_entries(limit=10, sink="rec") == []

    wait_until(lambda: _answers(lambda: handle.call_method("echo.echo", {"a": 1})))
    assert handle.call_method("echo.echo", {"a": 1}) == {"a": 1}
    assert handle.call_method(method="echo", params=[1, 2]) == [1, 2]
    assert handle.call("echo.echo", {"b": 2}) == {"b": 2}  # the short name, on both

    removed = handle.remove_sink("rec")
    assert _rows([removed])[0]["name"] == "rec"
    assert "rec" not in {s["name"] for s in _rows(handle.sinks())}


def _answers(call: Callable[[], object]) -> bool:
    """Whether the method script's worker is up (the reloader starts it in the background)."""
    try:
        call()
    except Exception:
        return False
    return True


def test_the_old_audit_read_still_reads_with_a_warning(handle: Handle) -> None:
    entries = _audited(handle, limit=5)
    with pytest.warns(DeprecationWarning, match=r"audit_entries"):
        assert _rows(handle.audit(limit=5)) == entries


# -- the old spellings ---------------------------------------------------------------------


def test_client_counts_spelt_n_still_work_with_a_warning(project: Path) -> None:
    server = start_server(project, quiet=True)
    try:
        with Client(server.url) as client:
            ids = [client.emit("vocab.n", {"i": i}) for i in range(3)]
            with pytest.warns(DeprecationWarning, match=r"Client\.events\(limit=\.\.\.\)"):
                assert [e["id"] for e in client.events(n=2)] == ids[1:]
            with pytest.warns(DeprecationWarning, match=r"Client\.audit") as caught:
                assert client.audit(n=1) == client.audit_entries(limit=1)
            assert {str(w.message).split(" is ")[0] for w in caught} == {
                "Client.audit()",
                "Client.audit(n=...)",
            }
            client.create_space({"name": "web", "cmd": "echo hello", "start": True})
            # The log's first line is the runtime's own ("--- TS knot: starting space ...").
            wait_until(lambda: client.space_log("web", limit=1) == ["hello"])
            with pytest.warns(DeprecationWarning, match=r"space_log\(limit=\.\.\.\)"):
                assert client.space_log("web", n=1) == ["hello"]
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the documented short name does not warn
                with pytest.raises(NotFound, match="no method"):
                    client.call("nowhere.nothing")
    finally:
        server.kill()


def test_sync_runtime_call_with_a_coroutine_is_run_with_a_warning(project: Path) -> None:
    with SyncRuntime(project) as rt:
        assert rt.run(rt.runtime.events(limit=1)) == []
        with pytest.warns(DeprecationWarning, match=r"SyncRuntime\.run\(coroutine\)"):
            assert rt.call(rt.runtime.events(limit=1), timeout=5) == []


@pytest.mark.anyio
async def test_record_audit_writes_and_the_old_name_still_does(runtime: Runtime) -> None:
    runtime.record_audit(AuditEntry.new(AuditKind.SECURITY, "written by record_audit"))
    with pytest.warns(DeprecationWarning, match=r"Runtime\.record_audit\(entry\)"):
        runtime.audit(AuditEntry.new(AuditKind.SECURITY, "written by audit"))
    await runtime.flush()
    messages = [e.message for e in await runtime.audit_entries(limit=5)]
    assert messages == ["written by record_audit", "written by audit"]
