"""JSON-RPC 2.0 framing: the one place messages are built, error codes named and lines encoded.

Every pipe and endpoint frames its messages here: `POST /json-rpc` (`methods/rpc.py`, the
dispatcher), the sandbox workers (`sandbox/worker/`) and the runtime's side of their pipes
(`sandbox/process.py`, `sandbox/method_process.py`), and the HTTP client (`_client.py`).

It imports only the standard library and `knot._json`: a sandbox worker boots with a bare
`knot` package and may import nothing of the runtime, and it needs this module too. Decoding
with the runtime's ingress rules (`_jsontext.loads_json`: no NaN, a depth limit) is the
dispatcher's business, not the framing's.

Two forms of each builder:

- `request`, `notification`, `response`, `error_response` build a message as a dict, for
  `encode` (or an HTTP JSON response) to turn into text;
- `request_text`, `notification_text`, `response_text` take params or a result that are JSON
  text already and splice them in, so a hot path (a batch of events, a method's result)
  never encodes the same value twice.

Both forms put the members in one order, `jsonrpc` and `id` first. `request_id_of` relies on
that order to read the id of a request whose line cannot be decoded; the two live together
here so that they cannot drift apart.

On the pipes a message is one line: `encode_line` adds the newline, `decode_line` reads one.
Both use `surrogatepass`: a lone surrogate a script put in a string must not end a worker,
and it reads back as JSON over HTTP would give it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, Self

from ._json import JSONObject, compact

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LOAD_FAILED",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SCRIPT_REJECTED",
    "SERVER_ERROR",
    "UNKNOWN_SCRIPT",
    "VERSION",
    "RpcError",
    "decode_line",
    "encode",
    "encode_line",
    "error_object",
    "error_response",
    "notification",
    "notification_text",
    "plain_result",
    "plain_result_line",
    "request",
    "request_id_of",
    "request_text",
    "response",
    "response_text",
    "with_member",
]

VERSION: Final = "2.0"

# The specification's codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_ERROR: Final = -32000  # a handler (a method) raised
# Ours, in the specification's range for implementation-defined server errors; only the
# sandbox workers answer them, to the runtime.
SCRIPT_REJECTED: Final = -32001  # the script breaks the sandbox's rules (data: the rules)
UNKNOWN_SCRIPT: Final = -32002  # a sink worker was asked to run a version it has not loaded
LOAD_FAILED: Final = -32003  # a method script's top level raised

_MESSAGES: Final = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    SERVER_ERROR: "Server error",
}

_ABSENT: Any = object()  # "no params": a request without the member, not one with null


class RpcError(Exception):
    """A JSON-RPC error object as an exception: raise one from a handler to answer with it.

    `message` defaults to the specification's text for the code."""

    def __init__(self, code: int, message: str | None = None, data: Any = None) -> None:
        text = _MESSAGES.get(code, "Server error") if message is None else message
        super().__init__(text)
        self.code = code
        self.message = text
        self.data = data

    def to_dict(self) -> JSONObject:
        return error_object(self.code, self.message, self.data)

    @classmethod
    def from_object(cls, error: Mapping[str, Any], *, message: str = "") -> Self:
        """The error object of an answer we received (`message` when it has none)."""
        return cls(
            int(error.get("code", INTERNAL_ERROR)),
            str(error.get("message") or message),
            error.get("data"),
        )


def error_object(code: int, message: str | None = None, data: Any = None) -> JSONObject:
    """`{"code", "message", "data"?}`: `data` is left out when None, as the specification
    allows; `message` defaults to the specification's text for the code."""
    error: JSONObject = {
        "code": code,
        "message": _MESSAGES.get(code, "Server error") if message is None else message,
    }
    if data is not None:
        error["data"] = data
    return error


# -- messages as dicts ------------------------------------------------------------------------


def request(request_id: Any, method: str, params: Any = _ABSENT) -> JSONObject:
    """A request; without `params` the member is left out (the specification allows it)."""
    message: JSONObject = {"jsonrpc": VERSION, "id": request_id, "method": method}
    if params is not _ABSENT:
        message["params"] = params
    return message


def notification(method: str, params: Any = _ABSENT) -> JSONObject:
    """A request without an id: nobody answers it."""
    message: JSONObject = {"jsonrpc": VERSION, "method": method}
    if params is not _ABSENT:
        message["params"] = params
    return message


def response(request_id: Any, result: Any) -> JSONObject:
    return {"jsonrpc": VERSION, "id": request_id, "result": result}


def error_response(
    request_id: Any, code: int, message: str | None = None, data: Any = None
) -> JSONObject:
    """An error answer; `request_id` is None when the request's id could not be read."""
    return {"jsonrpc": VERSION, "id": request_id, "error": error_object(code, message, data)}


# -- messages as text, around JSON that is encoded already ------------------------------------


def request_text(request_id: int | str, method: str, params_json: str) -> str:
    """A request whose params are JSON text already (an object or an array)."""
    name = f'"{method}"' if method.isidentifier() else encode(method)  # see _string
    return f'{{"jsonrpc":"2.0","id":{_id_text(request_id)},"method":{name},"params":{params_json}}}'


def notification_text(method: str, params_json: str) -> str:
    # A sink worker sends one per event: _string is inlined, a call costs as much as the rest.
    if method.isidentifier():
        return f'{{"jsonrpc":"2.0","method":"{method}","params":{params_json}}}'
    return f'{{"jsonrpc":"2.0","method":{encode(method)},"params":{params_json}}}'


# A sink worker's report that one event of a `run` succeeded with nothing to say, and when
# (its clock, CLOCK_MONOTONIC): the most frequent message from a worker, so both ends treat it
# as bytes of a fixed shape (the notification `result` with params {"index": N, "at": T}).
_PLAIN_RESULT = b'{"jsonrpc":"2.0","method":"result","params":{"index":'
_AT = b',"at":'


def plain_result_line(index: int, at: float) -> bytes:
    """The line reporting that event `index` of a run succeeded at `at`, saying nothing."""
    return b'%s%d,"at":%.6f}}\n' % (_PLAIN_RESULT, index, at)


def plain_result(line: bytes) -> tuple[int, float] | None:
    """(index, at) of a `plain_result_line` (without its newline), read without decoding it;
    None for any other line."""
    if not (line.startswith(_PLAIN_RESULT) and line.endswith(b"}}")):
        return None
    index, found, at = line[len(_PLAIN_RESULT) : -2].partition(_AT)
    if not (found and index.isdigit() and len(index) < 10):
        return None
    whole, dot, fraction = at.partition(b".")
    if not (whole.isdigit() and dot and fraction.isdigit() and len(whole) < 16):
        return None
    return int(index), float(at)


def response_text(request_id: Any, result_json: str) -> str:
    """An answer whose result is JSON text already."""
    return f'{{"jsonrpc":"2.0","id":{_id_text(request_id)},"result":{result_json}}}'


def with_member(object_json: str, name: str, value_json: str) -> str:
    """`object_json` (a JSON object, as text) with one more member whose value is JSON text
    already: a payload a script encoded once on its way out is not decoded to be re-encoded."""
    head = object_json.rstrip()[:-1].rstrip()  # the object without its closing brace
    comma = "" if head.endswith("{") else ","
    return f"{head}{comma}{_string(name)}:{value_json}}}"


_REQUEST_ID: Final = re.compile(rb'\{"jsonrpc":"2\.0","id":(\d{1,18}),"method":')


def request_id_of(line: bytes) -> int | None:
    """The id of a request the runtime framed (`request` or `request_text`, with an int id:
    both start the same way), read without decoding the line; None when it is not one.

    A worker answers a line it cannot decode with a parse error for this id, so the runtime's
    request fails at once instead of waiting for an answer that never comes."""
    match = _REQUEST_ID.match(line)
    return int(match.group(1)) if match else None


# -- encoding ---------------------------------------------------------------------------------


def encode(value: Any) -> str:
    """Compact JSON text, non-ASCII as is, and strict: NaN and Infinity are not JSON (the other
    end's decoder, or a browser's, would refuse them), so they raise ValueError here."""
    return compact(value)


def encode_line(text: str) -> bytes:
    """One message's text as a line of a pipe."""
    return text.encode("utf-8", "surrogatepass") + b"\n"


def decode_line(line: bytes) -> Any:
    """One line of a pipe, decoded (ValueError when it is not JSON; RecursionError when it
    nests deeper than the interpreter's recursion limit allows)."""
    return json.loads(line.decode("utf-8", "surrogatepass"))


def _id_text(request_id: Any) -> str:
    # The ids we make are ints (the runtime's) and short strings ("w12", the workers'): both
    # skip the encoder, which costs more than the rest of a message's framing together.
    if type(request_id) is int:
        return str(request_id)
    if isinstance(request_id, str):
        return _string(request_id)
    return encode(request_id)


def _string(text: str) -> str:
    # An identifier holds no character JSON must escape (quotes, backslashes, controls), so
    # it can be quoted as it is; anything else goes through the encoder.
    return f'"{text}"' if text.isidentifier() else encode(text)
