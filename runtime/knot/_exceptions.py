"""The one error tree of knot-runtime.

    KnotError
    ├── InvalidInput                  bad input from a user, a file or a client; never retried
    │   ├── EventError                a bad event type or payload (.event_type)
    │   ├── PatternError              a bad sink pattern (.pattern)
    │   ├── SinkError                 a bad sink definition (.sink)
    │   ├── TemplateError             a body template that does not parse (.template, .position)
    │   ├── ConfigError               a bad knot.toml (.path, .problems)
    │   ├── SpaceError                a bad space definition or a name taken (.space)
    │   └── KvError                   a knot.kv operation refused: a quota, not a number (.reason)
    ├── NotFound                      no such sink, event, method, channel, user or space (.what)
    ├── PermissionDenied              the caller may not do this (.status: 401 or 403)
    ├── Conflict                      the name is taken, or the thing is defined elsewhere (.what)
    ├── DeliveryFailed                one failed delivery attempt (.sink, .event, .reason)
    │   └── ScriptFailed              a script raised, hit a limit or broke a rule (.script)
    ├── MethodFailed                  a method call ended in a JSON-RPC error (.method, .code)
    ├── StoreError                    the SQLite store cannot be opened or written (.path)
    │   └── StoreLocked               another runtime holds the store (.pid; use its API)
    ├── RuntimeUnavailable            no runtime answers at the address a client used (.url)
    └── RuntimeClosed                 the runtime was used after it stopped

Every message is a full sentence that names what it is about, so that the CLI and the
notebook can print `str(error)` as the whole story.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._jsonrpc import SERVER_ERROR

__all__ = [
    "ConfigError",
    "Conflict",
    "DeliveryFailed",
    "EventError",
    "InvalidInput",
    "KnotError",
    "KvError",
    "MethodFailed",
    "NotFound",
    "PatternError",
    "PermissionDenied",
    "RuntimeClosed",
    "RuntimeUnavailable",
    "ScriptFailed",
    "SinkError",
    "SpaceError",
    "StoreError",
    "StoreLocked",
    "TemplateError",
]


class KnotError(Exception):
    """Base class of every error knot-runtime raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(KnotError):
    """Input that can never succeed as given; answered with HTTP 400."""


class EventError(InvalidInput):
    def __init__(self, message: str, *, event_type: str | None = None) -> None:
        super().__init__(message)
        self.event_type = event_type


class PatternError(InvalidInput):
    def __init__(self, message: str, *, pattern: str) -> None:
        super().__init__(message)
        self.pattern = pattern


class SinkError(InvalidInput):
    def __init__(self, message: str, *, sink: str | None = None) -> None:
        super().__init__(message)
        self.sink = sink


class TemplateError(InvalidInput):
    def __init__(self, message: str, *, template: str = "", position: int = 0) -> None:
        super().__init__(message)
        self.template = template
        self.position = position


class ConfigError(InvalidInput):
    def __init__(self, message: str, *, path: str = "", problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.problems = tuple(problems)


class SpaceError(InvalidInput):
    def __init__(self, message: str, *, space: str | None = None) -> None:
        super().__init__(message)
        self.space = space


class KvError(InvalidInput):
    """A script's key-value operation that cannot be done as asked.

    `reason` is "max_keys" (a new key past the script's quota), "not_integer" (incr on a value
    that is not an integer) or "overflow" (incr past a 64-bit integer)."""

    def __init__(self, message: str, *, reason: str, key: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.key = key


class NotFound(KnotError):
    def __init__(self, message: str, *, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class PermissionDenied(KnotError):
    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KnotError):
    """The request clashes with what exists: answered with HTTP 409."""

    def __init__(self, message: str, *, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class DeliveryFailed(KnotError):
    """One attempt to hand an event to a sink failed; the engine may retry it.

    `status` is the receiver's HTTP status when a webhook got an answer (else 0), `output` what
    the attempt printed (a script's lines): both go into the attempt's record.
    """

    def __init__(
        self,
        reason: str,
        *,
        sink: str = "",
        event: str = "",
        status: int = 0,
        output: Sequence[str] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sink = sink
        self.event = event
        self.status = status
        self.output = tuple(output)


class ScriptFailed(DeliveryFailed):
    def __init__(
        self,
        reason: str,
        *,
        script: str = "",
        sink: str = "",
        event: str = "",
        output: Sequence[str] = (),
    ) -> None:
        super().__init__(reason, sink=sink, event=event, output=output)
        self.script = script


class MethodFailed(KnotError):
    """A method call ended in a JSON-RPC error: the method raised, timed out, or its worker died.

    `code` is the JSON-RPC error code (-32602 invalid params, -32603 internal: timeout or a dead
    worker, -32000 the method raised, or the code a method chose), `data` its structured detail,
    `output` what the call printed before it failed.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        code: int = SERVER_ERROR,
        data: object = None,
        output: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.method = method
        self.code = code
        self.data = data
        self.output = tuple(output)


class StoreError(KnotError):
    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class StoreLocked(StoreError):
    """Another knot runtime has the store open; talk to that runtime instead."""

    def __init__(self, message: str, *, path: str = "", pid: int = 0) -> None:
        super().__init__(message, path=path)
        self.pid = pid  # the process holding the store (0: unknown)


class RuntimeUnavailable(KnotError):
    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class RuntimeClosed(KnotError):
    pass
