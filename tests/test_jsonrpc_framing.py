"""The JSON-RPC framing (`knot._jsonrpc`): what every pipe and endpoint builds its messages with.

The text builders splice JSON that is encoded already; they must give exactly what encoding
the dict builders' messages gives, and `request_id_of` must read back every id the runtime
frames. The sandbox workers import the framing, so it must import nothing of the runtime.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from knot import MethodFailed
from knot._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RpcError,
    decode_line,
    encode,
    encode_line,
    error_object,
    error_response,
    notification,
    notification_text,
    plain_result,
    plain_result_line,
    request,
    request_id_of,
    request_text,
    response,
    response_text,
    with_member,
)
from knot.methods import JSONRPCError
from knot.sandbox.process import _KNOT_DIR, WORKER_FLAGS, RemoteError

from .fuzzing import fuzz, texts

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
params_values = st.one_of(st.dictionaries(texts, values, max_size=5), st.lists(values, max_size=5))
runtime_ids = st.integers(min_value=0, max_value=10**18 - 1)  # up to 18 digits
ids = st.one_of(runtime_ids, texts, st.sampled_from(["w1", "w12345", ""]))
methods = st.one_of(texts, st.sampled_from(["run", "call", "emit", "result", "a.b", 'we"ird']))


@fuzz(200)
@given(request_id=ids, method=methods, params=params_values)
def test_request_text_is_the_encoded_request(
    request_id: int | str, method: str, params: Any
) -> None:
    text = request_text(request_id, method, encode(params))
    assert text == encode(request(request_id, method, params))
    assert json.loads(text) == {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": params,
    }


@fuzz(100)
@given(method=methods, params=params_values)
def test_notification_text_is_the_encoded_notification(method: str, params: Any) -> None:
    text = notification_text(method, encode(params))
    assert text == encode(notification(method, params))
    assert json.loads(text) == {"jsonrpc": "2.0", "method": method, "params": params}


@fuzz(100)
@given(request_id=st.one_of(ids, st.none()), result=values)
def test_response_text_is_the_encoded_response(request_id: int | str | None, result: Any) -> None:
    text = response_text(request_id, encode(result))
    assert text == encode(response(request_id, result))
    assert json.loads(text) == {"jsonrpc": "2.0", "id": request_id, "result": result}


@fuzz(200)
@given(request_id=runtime_ids, method=methods, params=params_values)
@example(request_id=0, method="run", params={})
@example(request_id=10**18 - 1, method="call", params=[])
def test_request_id_of_reads_back_what_the_runtime_frames(
    request_id: int, method: str, params: Any
) -> None:
    """Both builders, as the runtime writes them to a worker's pipe (one line each)."""
    assert (
        request_id_of(encode_line(request_text(request_id, method, encode(params)))) == request_id
    )
    assert request_id_of(encode_line(encode(request(request_id, method, params)))) == request_id


@pytest.mark.parametrize(
    "line",
    [
        request_text("w1", "emit", "{}"),  # a worker's id: never one the runtime waits for
        request_text(10**18, "run", "{}"),  # 19 digits: past what the reader takes
        encode(notification("cancel", {"id": 3})),
        encode(response(3, {})),
        encode(error_response(3, PARSE_ERROR)),
        json.dumps(request(3, "run", {})),  # not compact: not the runtime's framing
        "",
        "{",
    ],
)
def test_request_id_of_reads_nothing_else(line: str) -> None:
    assert request_id_of(encode_line(line)) is None


def test_request_without_params_leaves_the_member_out() -> None:
    assert request(1, "m") == {"jsonrpc": "2.0", "id": 1, "method": "m"}
    assert request(1, "m", None) == {"jsonrpc": "2.0", "id": 1, "method": "m", "params": None}
    assert notification("m") == {"jsonrpc": "2.0", "method": "m"}


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("{}", {"payload": {"a": 1}}),
        ('{"index":0,"type":"x"}', {"index": 0, "type": "x", "payload": {"a": 1}}),
        ('{ "index": 0 } ', {"index": 0, "payload": {"a": 1}}),
        ("{ }", {"payload": {"a": 1}}),
    ],
)
def test_with_member_splices_encoded_json(encoded: str, expected: Any) -> None:
    assert json.loads(with_member(encoded, "payload", '{"a":1}')) == expected


def test_error_objects() -> None:
    assert error_object(PARSE_ERROR) == {"code": -32700, "message": "Parse error"}
    assert error_object(-32099) == {"code": -32099, "message": "Server error"}
    assert error_object(SERVER_ERROR, "boom", None) == {"code": -32000, "message": "boom"}
    assert error_object(SERVER_ERROR, "", {"x": 1}) == {
        "code": -32000,
        "message": "",
        "data": {"x": 1},
    }
    answer = error_response(None, METHOD_NOT_FOUND, data={"method": "m"})
    assert json.loads(encode(answer)) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32601, "message": "Method not found", "data": {"method": "m"}},
    }


def test_one_error_type_for_every_side() -> None:
    error = RpcError.from_object({"code": INVALID_PARAMS, "message": "no", "data": [1]})
    assert (error.code, error.message, error.data) == (INVALID_PARAMS, "no", [1])
    assert error.to_dict() == {"code": -32602, "message": "no", "data": [1]}
    odd = RemoteError.from_object({}, message="the worker said nothing")
    assert isinstance(odd, RemoteError)
    assert (odd.code, odd.message, odd.data) == (INTERNAL_ERROR, "the worker said nothing", None)
    assert issubclass(JSONRPCError, RpcError)
    assert JSONRPCError(-32001, "x").to_dict() == {"code": -32001, "message": "x"}
    assert MethodFailed("m").code == SERVER_ERROR


def test_encode_is_strict_and_compact() -> None:
    assert encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="JSON compliant"):
            encode({"x": bad})


def test_lines_carry_lone_surrogates() -> None:
    """A lone surrogate a script put in a string crosses the pipe (and comes back) as is."""
    text = encode(response(1, "a\ud800b"))
    line = encode_line(text)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_line(line) == {"jsonrpc": "2.0", "id": 1, "result": "a\ud800b"}


def test_sandbox_workers_import_nothing_of_the_runtime() -> None:
    """Booted as the runtime boots them (a bare `knot` package), the workers' modules load
    only the standard library, their own package, `knot._json` and the framing."""
    code = (
        "import sys, types; pkg = types.ModuleType('knot'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['knot'] = pkg; "
        "import knot.sandbox.worker.sink, knot.sandbox.worker.method; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'knot')))"
    )
    out = subprocess.run(
        [sys.executable, *WORKER_FLAGS, "-c", code, _KNOT_DIR],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert "knot._jsonrpc" in out
    allowed = {"knot", "knot._json", "knot._jsonrpc", "knot.sandbox", "knot.sandbox.worker"}
    outside = [m for m in out if m not in allowed and not m.startswith("knot.sandbox.worker.")]
    assert outside == []


@given(
    index=st.integers(min_value=0, max_value=10**9 - 1),
    at=st.floats(min_value=0, max_value=10**12, allow_nan=False),
)
def test_a_plain_result_line_is_the_result_notification_and_reads_back(
    index: int, at: float
) -> None:
    line = plain_result_line(index, at)
    assert line.endswith(b"\n")
    assert decode_line(line[:-1]) == notification("result", {"index": index, "at": round(at, 6)})
    assert plain_result(line[:-1]) == (index, round(at, 6))


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":2.5,"output":["x"]}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":-1,"at":2.5}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1.5,"at":2.5}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":"1","at":2.5}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":-2.5}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":2}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":2.5e3}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":"2.5"}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":12345678901,"at":2.5}}',
        b'{"jsonrpc":"2.0","method":"result","params":{"index":1,"at":2.5}} ',
        b'{"jsonrpc":"2.0","method":"emit","params":{"index":1,"at":2.5}}',
        b'{"jsonrpc":"2.0","id":"w1","method":"result","params":{"index":1,"at":2.5}}',
    ],
)
def test_any_other_line_is_no_plain_result(line: bytes) -> None:
    """Everything but the exact shape is decoded as JSON (and redacted) as before."""
    assert plain_result(line) is None
