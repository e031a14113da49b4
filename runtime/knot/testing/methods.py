"""`call_method`: call a method script's methods in its sandboxed worker, as the runtime does.

A `MethodHarness` runs an embedded runtime of its own (on a folder of its own, without sinks)
and loads each method script it is given into a real worker, once: module state carries over
from call to call, as in `knot serve`, until the script's text changes (then it is loaded
again, with fresh state). A call returns its result, what the method printed, its directives
and the events it raised; a failing call raises `knot.MethodFailed` with the JSON-RPC error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import Config, MethodSettings, load_config
from .._events import LOCAL_ACTOR, SYSTEM_ACTOR, SYSTEM_EVENT_TYPES, Event
from .._exceptions import InvalidInput, ScriptFailed
from .._json import JSONObject
from ..methods.declarations import MethodInfo
from .clock import FakeClock
from .runtime import RuntimeHarness

__all__ = ["MethodCall", "MethodHarness"]


@dataclass(frozen=True, slots=True)
class MethodCall:
    """One call: the method's result, what it printed, its directives, the events it raised."""

    method: str  # script.method
    result: Any
    output: tuple[str, ...] = ()
    directives: tuple[JSONObject, ...] = ()
    emitted: tuple[Event, ...] = ()  # journaled events; each has .type and .data


@dataclass
class _Loaded:
    path: Path
    source: str
    methods: dict[str, MethodInfo] = field(default_factory=dict)


class MethodHarness:
    """Calls method scripts' methods in real workers: `harness(path, "count", {...})`.

    `folder` is where its runtime keeps its store (a temporary folder; nothing else is read
    there). `project` lends the `[methods]` limits of that project's knot.toml.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        project: str | Path | None = None,
        settings: MethodSettings | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.folder = Path(folder)
        if settings is None and project is not None:
            settings = load_config(project).raise_for_errors().methods
        self.settings = settings or MethodSettings()
        self.clock = clock
        self._runtime: RuntimeHarness | None = None
        self._loaded: dict[str, _Loaded] = {}
        self._seen: list[Event] = []

    @property
    def runtime(self) -> RuntimeHarness:
        """The harness's own runtime, started at the first call."""
        if self._runtime is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Settings given as data: no knot.toml is read, so no [[sinks]] of the tested
            # project (webhooks, say) receive what the methods emit.
            config = Config(methods=self.settings)
            runtime = RuntimeHarness(self.folder, config=config, clock=self.clock).start()

            async def listen() -> None:
                runtime.runtime.on_event(lambda event, sinks: self._seen.append(event))

            runtime.run(listen())
            self._runtime = runtime
        return self._runtime

    def load(self, script: str | Path) -> list[MethodInfo]:
        """Load (or, when its text changed, reload) a method script; its methods.

        Raises ScriptFailed, with every `file:line:col: problem`, for a script the runtime
        would refuse.
        """
        path = Path(script)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"The method script {path} cannot be read: {exc}.") from None
        name = path.stem
        known = self._loaded.get(name)
        if known is not None and known.path.resolve() != path.resolve():
            raise InvalidInput(
                f"Two method scripts named {name!r} ({known.path} and {path}): a runtime "
                "names a method script after its file, so one harness can hold only one."
            )
        if known is None or known.source != source:
            runtime = self.runtime
            done = runtime.run(runtime.runtime.methods.load(name, source, path=str(path)))
            if not done.ok:
                raise ScriptFailed(done.message or "\n".join(done.problems), script=str(path))
            known = self._loaded[name] = _Loaded(path, source, {m.name: m for m in done.methods})
        return list(known.methods.values())

    def __call__(
        self,
        script: str | Path,
        method: str,
        params: Any = None,
        *,
        event_type: str | None = None,
        event_data: JSONObject | None = None,
        timeout: float | None = None,
    ) -> MethodCall:
        """Call `method` of `script` (a path) with `params`.

        With `event_type`, the call runs as a subscribed call for that event (type taken as
        given; `event_data` its payload): inside it `knot.event` is the event, and what the
        method emits are its children. Without, it is a direct call (`knot call`).
        """
        infos = {info.name: info for info in self.load(script)}
        info = infos.get(method)
        if info is None:
            declared = ", ".join(sorted(infos)) or "none"
            raise InvalidInput(
                f"The method script {script} declares no method {method!r} (it declares: "
                f"{declared})."
            )
        runtime = self.runtime
        event = None
        if event_type is not None:
            # Taken as given, as `run_sink` takes it, so space.* handlers can be called too.
            actor = SYSTEM_ACTOR if event_type in SYSTEM_EVENT_TYPES else LOCAL_ACTOR
            event = runtime.runtime.make_event(
                event_type, event_data or {}, system=True, actor=actor
            )
        before = len(self._seen)
        done = runtime.run(
            runtime.runtime.methods.invoke(info, params, event=event, timeout=timeout)
        )
        runtime.wait_idle()  # every event the call raised is journaled and routed
        raised = self._seen[before:]
        if event is not None:
            emitted = tuple(e for e in raised if e.parent == event.id)
        else:
            emitted = tuple(e for e in raised if not e.parent)
        return MethodCall(info.full_name, done.result, done.output, done.directives, emitted)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
