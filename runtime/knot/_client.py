"""A blocking HTTP client for a running `knot serve`: what the CLI and `knot.event` use."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from ._aliases import count_keyword, warn_renamed
from ._env import ApiAddress, api_token_from_env, find_api
from ._events import as_custom_type
from ._exceptions import (
    Conflict,
    EventError,
    InvalidInput,
    KnotError,
    MethodFailed,
    NotFound,
    PermissionDenied,
    RuntimeClosed,
    RuntimeUnavailable,
)
from ._json import JSONObject
from ._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from ._jsonrpc import request as rpc_request
from ._replay import ReplayReport

__all__ = ["Client", "Submitted"]

RECONNECT_SECONDS = 0.5  # between tries of a follower whose runtime went away


class Submitted(NamedTuple):
    id: str
    duplicate: bool = False  # an event with this id was raised before: this one was ignored


WAIT_POLL_SECONDS = 0.02  # how often `wait_idle` asks for the sinks' pending counts


class Client:
    """Talks to the runtime at `url` (default: KNOT_URL, or 127.0.0.1:KNOT_API_PORT, or the
    address the knot.toml of the current folder gives `knot serve`, or 127.0.0.1:12201)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        found = ApiAddress(url) if url else find_api()
        self.url = found.url.rstrip("/")
        self._config = found.config  # the knot.toml the address came from, for messages
        token = token if token is not None else api_token_from_env()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._streams: set[socket.socket] = set()
        self._closed = threading.Event()  # set by close(): a follower waiting to reconnect ends

    def close(self) -> None:
        """Close the connections; a `follow()` blocked on another thread ends at once."""
        self._closed.set()
        # Closing a socket does not wake a thread blocked reading it; shutting it down does.
        for sock in list(self._streams):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._http.close()

    def _nobody_answers(self) -> str:
        if self._config:
            return (
                f"No knot runtime answers at {self.url} (the address {self._config} gives "
                "`knot serve`); start one with `knot serve` in that folder (or set "
                "KNOT_API_PORT / KNOT_URL to where it runs)."
            )
        return (
            f"No knot runtime answers at {self.url}; start one with `knot serve` "
            "(or set KNOT_API_PORT / KNOT_URL to where it runs)."
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Any:
        content = headers = None
        if json_body is not None:
            try:
                content = encode_json(json_body)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"The request cannot be sent as JSON: {exc}.") from None
            headers = {"Content-Type": "application/json"}
        try:
            response = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.ConnectError:
            raise RuntimeUnavailable(self._nobody_answers(), url=self.url) from None
        except httpx.TimeoutException:
            raise RuntimeUnavailable(
                f"The knot runtime at {self.url} did not answer in time.", url=self.url
            ) from None
        except httpx.HTTPError as exc:
            raise RuntimeUnavailable(
                f"Cannot talk to the knot runtime at {self.url}: {exc}.", url=self.url
            ) from None
        if response.status_code in expect:
            return response.json() if response.content else None
        raise _error_from(response)

    # -- the agent API -------------------------------------------------------------------

    def emit(
        self, event_type: str, payload: JSONObject | None = None, *, id: str | None = None
    ) -> str:
        """Raise an event; its id (with `id` given twice, the first event's: nothing new)."""
        return self.submit(event_type, payload, id=id).id

    def submit(
        self, event_type: str, payload: JSONObject | None = None, *, id: str | None = None
    ) -> Submitted:
        """Raise an event, and say whether `id` was new (False: an event with that id was
        raised before, and this one was ignored, as idempotent ingress promises)."""
        try:
            encode_json(payload)
        except (TypeError, ValueError) as exc:  # what the embedded runtime says, and raises
            full_type = as_custom_type(event_type)  # a bad type is its first complaint
            raise EventError(
                f"The payload cannot be encoded as JSON: {exc}.", event_type=full_type
            ) from None
        body: JSONObject = {"type": event_type, "payload": payload if payload is not None else {}}
        if id is not None:
            body["id"] = id
        answer = self.request("POST", "/event", json_body=body, expect=(202,))
        return Submitted(str(answer["id"]), duplicate=bool(answer.get("duplicate")))

    def events(
        self,
        pattern: str | None = None,
        *,
        limit: int = 50,
        after: int = 0,
        n: int | None = None,
    ) -> list[JSONObject]:
        """The newest `limit` events, oldest first; or, `after` a seq, the first `limit` after
        it. `pattern` is one sink pattern; `n=` is the old spelling of `limit=` (deprecated)."""
        limit = count_keyword(limit, n, "Client.events")
        params: dict[str, Any] = {"n": limit}  # the HTTP API's own name stays `n`
        if pattern:
            params["pattern"] = pattern
        if after:
            params["after"] = after
        return list(self.request("GET", "/api/events", params=params)["events"])

    def event(self, event_id: str) -> JSONObject:
        return dict(self.request("GET", f"/api/events/{_segment(event_id)}"))

    def deliveries(self, event_id: str) -> JSONObject:
        """`{"event", "deliveries": [{"sink", "status", "attempts": [...]}]}` of one event."""
        return dict(self.request("GET", f"/api/events/{_segment(event_id)}/deliveries"))

    def trace(self, event_id: str) -> JSONObject:
        """The tree of the chain `event_id` belongs to (`GET /api/events/{id}/trace`)."""
        return dict(self.request("GET", f"/api/events/{_segment(event_id)}/trace"))

    def redeliver(self, event_id: str, sink: str) -> JSONObject:
        """Deliver a journaled event to `sink` again; its outcome once delivered or given up
        (`{"sink", "event_id", "status", "attempts", "error"?}`; may take the sink's whole
        retry schedule: give the Client a `timeout` that covers it)."""
        path = f"/api/events/{_segment(event_id)}/redeliver"
        return dict(self.request("POST", path, json_body={"sink": sink}))

    def audit_entries(self, *, limit: int = 50, sink: str | None = None) -> list[JSONObject]:
        """The newest `limit` audit entries, of `sink` or of every sink the caller may see."""
        params: dict[str, Any] = {"n": limit}
        if sink:
            params["sink"] = sink
        return list(self.request("GET", "/api/audit", params=params)["audit"])

    def audit(self, *, limit: int = 50, n: int | None = None) -> list[JSONObject]:
        """Deprecated alias of `audit_entries` (on Runtime, `audit` was the write)."""
        warn_renamed("Client.audit()", "Client.audit_entries()")
        return self.audit_entries(limit=count_keyword(limit, n, "Client.audit"))

    def sinks(self) -> list[JSONObject]:
        return list(self.request("GET", "/api/sinks")["sinks"])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no sink has events queued or in flight (the API's `pending` counts)."""
        deadline = time.monotonic() + timeout
        while any(sink.get("pending") for sink in self.sinks()):
            if time.monotonic() > deadline:
                raise KnotError(f"The sinks at {self.url} were still busy after {timeout} s.")
            time.sleep(WAIT_POLL_SECONDS)

    # -- Sky channels ----------------------------------------------------------------------

    def channels(self) -> list[JSONObject]:
        return list(self.request("GET", "/api/channels")["channels"])

    def create_channel(
        self,
        *,
        owner: str | None = None,
        name: str = "",
        allow: list[str] | None = None,
        deny: list[str] | None = None,
        eci: str | None = None,
    ) -> JSONObject:
        body: JSONObject = {"name": name}
        for key, value in (("owner", owner), ("allow", allow), ("deny", deny), ("eci", eci)):
            if value is not None:
                body[key] = value
        answer: JSONObject = self.request("POST", "/api/channels", json_body=body, expect=(201,))
        return answer

    def delete_channel(self, eci: str) -> JSONObject:
        answer: JSONObject = self.request("DELETE", f"/api/channels/{_segment(eci)}")
        return answer

    # -- sinks and users -----------------------------------------------------------------

    def sink(self, name: str) -> JSONObject:
        return dict(self.request("GET", f"/api/event-sinks/{_segment(name)}"))

    def add_sink(self, definition: JSONObject) -> JSONObject:
        """Create a sink; a webhook sink's answer holds its `secret`, this once."""
        return dict(self.request("POST", "/api/event-sinks", json_body=definition, expect=(201,)))

    def update_sink(self, name: str, changes: JSONObject) -> JSONObject:
        return dict(self.request("PATCH", f"/api/event-sinks/{_segment(name)}", json_body=changes))

    def remove_sink(self, name: str) -> JSONObject:
        return dict(self.request("DELETE", f"/api/event-sinks/{_segment(name)}")["removed"])

    def test_sink(
        self, name: str, *, event_type: str | None = None, payload: JSONObject | None = None
    ) -> JSONObject:
        """Deliver one test event to one sink; the answer says what the sink (receiver) did."""
        body: JSONObject = {}
        if event_type is not None:
            body["type"] = event_type
        if payload is not None:
            body["payload"] = payload
        return dict(self.request("POST", f"/api/event-sinks/{_segment(name)}/test", json_body=body))

    def replay(
        self,
        sink: str,
        *,
        since: str | None = None,
        from_seq: int | None = None,
        events: str | None = None,
        limit: int = 100,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplayReport:
        """`Runtime.replay` on the runtime: the sink's current script on journaled events,
        compared with what ran then; `progress(done, total)` as the events run."""
        body = {"since": since, "from_seq": from_seq, "events": events, "limit": limit}
        body["progress"] = True  # a line at least every few events: no long silent wait
        path = f"/api/event-sinks/{_segment(sink)}/replay"
        report: ReplayReport | None = None
        try:
            with self._http.stream(
                "POST",
                path,
                content=encode_json(body),
                headers={"Content-Type": "application/json"},
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise _error_from(response)
                for line in response.iter_lines():
                    if not line:
                        continue
                    message = json.loads(line)
                    if "progress" in message and progress is not None:
                        progress(message["progress"]["done"], message["progress"]["total"])
                    elif "report" in message:
                        report = ReplayReport.from_dict(message["report"])
                    elif "error" in message:
                        raise KnotError(str(message["error"]))
        except httpx.ConnectError:
            raise RuntimeUnavailable(self._nobody_answers(), url=self.url) from None
        except httpx.HTTPError as exc:
            raise RuntimeUnavailable(
                f"The knot runtime at {self.url} broke off the replay: {exc}.", url=self.url
            ) from None
        if report is None:
            raise RuntimeUnavailable(
                f"The knot runtime at {self.url} ended the replay without a report.", url=self.url
            )
        return report

    def sink_secret(self, name: str) -> str:
        return str(self.request("GET", f"/api/event-sinks/{_segment(name)}/secret")["secret"])

    def users(self) -> list[JSONObject]:
        return list(self.request("GET", "/api/users")["users"])

    def add_user(self, name: str, **permissions: bool) -> tuple[JSONObject, str]:
        """Create a user; returns it and its bearer token (shown this once)."""
        answer = self.request(
            "POST", "/api/users", json_body={"name": name, **permissions}, expect=(201,)
        )
        return dict(answer["user"]), str(answer["token"])

    def remove_user(self, name: str) -> JSONObject:
        return dict(self.request("DELETE", f"/api/users/{_segment(name)}")["removed"])

    def whoami(self) -> JSONObject:
        return dict(self.request("GET", "/api/whoami"))

    # -- methods -------------------------------------------------------------------------

    def call_method(self, method: str, params: Any = None) -> Any:
        """Call a method script's method (`POST /json-rpc`) and return its result.

        A JSON-RPC error answer raises NotFound (-32601) or MethodFailed (with .code, .data).
        """
        try:
            encode_json(params)
        except (TypeError, ValueError) as exc:  # what the embedded runtime says, and raises
            raise MethodFailed(
                f"The params are not JSON: {exc}.", method=method, code=INVALID_PARAMS
            ) from None
        body = rpc_request(1, method) if params is None else rpc_request(1, method, params)
        answer = self.request("POST", "/json-rpc", json_body=body, expect=(200,))
        if not isinstance(answer, dict):
            raise KnotError(f"The runtime at {self.url} answered the call with {answer!r}.")
        error = answer.get("error")
        if isinstance(error, dict):
            failure = RpcError.from_object(error, message="The call failed.")
            if failure.code == METHOD_NOT_FOUND:
                data = failure.data
                detail = data.get("detail") if isinstance(data, dict) else None
                raise NotFound(str(detail or f"There is no method named {method!r}."), what=method)
            raise MethodFailed(failure.message, method=method, code=failure.code, data=failure.data)
        return answer.get("result")

    def call(self, method: str, params: Any = None) -> Any:
        """The same as `call_method`, by the short name the docs use (kept as an alias)."""
        return self.call_method(method, params)

    def methods(self) -> JSONObject:
        """The methods and method scripts of the runtime (`GET /api/methods`)."""
        return dict(self.request("GET", "/api/methods"))

    # -- spaces --------------------------------------------------------------------------

    def spaces(self) -> list[JSONObject]:
        return list(self.request("GET", "/api/spaces")["spaces"])

    def space(self, name: str) -> JSONObject:
        return dict(self.request("GET", f"/api/spaces/{_segment(name)}"))

    def create_space(self, fields: JSONObject) -> JSONObject:
        return dict(self.request("POST", "/api/spaces", json_body=fields, expect=(201,)))

    def space_action(self, name: str, action: str) -> JSONObject:
        """`start` or `stop` a space."""
        return dict(self.request("POST", f"/api/spaces/{_segment(name)}/{action}"))

    def delete_space(self, name: str) -> JSONObject:
        return dict(self.request("DELETE", f"/api/spaces/{_segment(name)}"))

    def space_log(self, name: str, *, limit: int = 100, n: int | None = None) -> list[str]:
        """The last `limit` lines the space's process printed (`n=`: deprecated spelling)."""
        limit = count_keyword(limit, n, "Client.space_log")
        answer = self.request("GET", f"/api/spaces/{_segment(name)}/log", params={"n": limit})
        return list(answer["lines"])

    def follow(
        self,
        pattern: str | None = None,
        *,
        on_open: Callable[[], None] | None = None,
        reconnect: bool = False,
        on_status: Callable[[str, bool], None] | None = None,
    ) -> Iterator[JSONObject]:
        """Yield events as the runtime routes them (server-sent events), until interrupted.

        `on_open` is called once the runtime has subscribed the stream: every event routed
        after that is yielded (the notebook's live tail waits for it before returning). When
        the runtime goes away (it stopped or restarted, or the connection broke) the stream
        ends with RuntimeUnavailable saying so; with `reconnect` it is opened again as soon
        as the runtime answers, and the events routed meanwhile (as far as the journal keeps
        them) come first, in order. `on_status(sentence, away)` hears each of those turns.
        """
        last = floor = 0  # the newest seq yielded; the newest in the journal at the start
        caught: set[int] = set()  # what the last catching up yielded (the stream may repeat it)
        away = ""  # why the stream ended, while reconnecting
        while True:
            try:
                for item in self._stream(pattern):
                    if item is not None:
                        seq = int(item.get("seq") or 0)
                        if seq not in caught:
                            last = max(last, seq)
                            yield item
                        continue
                    if not away:  # the first opening
                        if reconnect:  # where catching up would start if nothing came
                            newest = self.events(pattern, limit=1)
                            floor = int(newest[-1]["seq"]) if newest else 0
                        if on_open is not None:
                            on_open()
                        continue
                    missed = self.events(pattern, limit=10_000, after=max(last, floor))
                    caught = {int(event["seq"]) for event in missed}
                    if on_status is not None:
                        on_status(
                            f"The knot runtime at {self.url} answers again; "
                            f"{len(missed)} event{'' if len(missed) == 1 else 's'} routed "
                            "meanwhile follow.",
                            False,
                        )
                    away = ""
                    for event in missed:
                        last = max(last, int(event["seq"]))
                        yield event
                reason = f"The knot runtime at {self.url} ended the stream (it stopped)."
            except RuntimeUnavailable as exc:
                reason = exc.message
            if self._closed.is_set():
                return
            if not reconnect:
                raise RuntimeUnavailable(reason, url=self.url)
            if not away and on_status is not None:
                on_status(f"{reason} Waiting for it to come back.", True)
            away = reason
            if self._closed.wait(RECONNECT_SECONDS):
                return

    def _stream(self, pattern: str | None) -> Iterator[JSONObject | None]:
        """One opening of the event stream: None once subscribed, then the events."""
        params = {"pattern": pattern} if pattern else {}
        try:
            with self._http.stream(
                "GET", "/api/events/stream", params=params, timeout=None
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise _error_from(response)
                stream = response.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if sock is not None:
                    self._streams.add(sock)
                try:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            yield json.loads(line[6:])
                        elif line == ": connected":
                            yield None
                finally:
                    self._streams.discard(sock)
        except httpx.ConnectError:
            raise RuntimeUnavailable(
                f"No knot runtime answers at {self.url}; start one with `knot serve`.",
                url=self.url,
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError):
            raise RuntimeUnavailable(
                f"The knot runtime at {self.url} closed the stream.", url=self.url
            ) from None


def encode_json(value: Any) -> bytes:
    """`value` as JSON, refusing NaN and Infinity (Python's extensions no receiver reads)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode()


def _error_from(response: httpx.Response) -> KnotError:
    try:
        message = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        message = ""
    message = message or f"The runtime answered HTTP {response.status_code}."
    status = response.status_code
    if status in (400, 413, 422):
        return InvalidInput(message)
    if status in (401, 403):
        return PermissionDenied(message, status=status)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 503:
        return RuntimeClosed(message)
    return KnotError(f"{message} (HTTP {status})")


def _segment(name: str) -> str:
    """`name` as one URL path segment: a name like `../users/bob` (or `..`) must not turn the
    request into another route's (httpx resolves dot segments before sending)."""
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted
