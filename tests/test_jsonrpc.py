"""JSON-RPC 2.0: every example exchange of section 7 of the specification, and our error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from knot._jsonrpc import INVALID_PARAMS, RpcError
from knot.methods.rpc import Handler, dispatch

pytestmark = pytest.mark.anyio

notified: list[Any] = []


async def subtract(params: Any) -> Any:
    if isinstance(params, list):
        return params[0] - params[1]
    if isinstance(params, dict) and {"minuend", "subtrahend"} <= set(params):
        return params["minuend"] - params["subtrahend"]
    raise RpcError(INVALID_PARAMS, data={"expected": "[a, b] or {minuend, subtrahend}"})


async def record(params: Any) -> None:
    notified.append(params)


async def total(params: Any) -> Any:
    return sum(params)


async def get_data(params: Any) -> Any:
    return ["hello", 5]


async def broken(params: Any) -> Any:
    raise ZeroDivisionError("no")


async def unsendable(params: Any) -> Any:
    return {1, 2}


METHODS: dict[str, Handler] = {
    "subtract": subtract,
    "update": record,
    "notify_hello": record,
    "sum": total,
    "get_data": get_data,
    "broken": broken,
    "unsendable": unsendable,
}


async def rpc(body: str) -> Any:
    return await dispatch(body, METHODS.get)


def j(text: str) -> Any:
    return json.loads(text)


async def test_positional_parameters() -> None:
    assert await rpc('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}') == j(
        '{"jsonrpc": "2.0", "result": 19, "id": 1}'
    )
    assert await rpc('{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}') == j(
        '{"jsonrpc": "2.0", "result": -19, "id": 2}'
    )


async def test_named_parameters() -> None:
    got = await rpc(
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    )
    assert got == j('{"jsonrpc": "2.0", "result": 19, "id": 3}')
    got = await rpc(
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}'
    )
    assert got == j('{"jsonrpc": "2.0", "result": 19, "id": 4}')


async def test_notifications_get_no_answer() -> None:
    notified.clear()
    assert await rpc('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}') is None
    assert await rpc('{"jsonrpc": "2.0", "method": "foobar"}') is None
    assert notified == [[1, 2, 3, 4, 5]]


async def test_non_existent_method() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert got["error"]["code"] == -32601
    assert got["error"]["message"] == "Method not found"
    assert got["id"] == "1"


async def test_invalid_json() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert got == j(
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
    )


async def test_invalid_request_object() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert got == j(
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    )


async def test_batch_invalid_json() -> None:
    got = await rpc(
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]'
    )
    assert got == j(
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
    )


async def test_empty_batch() -> None:
    assert await rpc("[]") == j(
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    )


async def test_invalid_batch_but_not_empty() -> None:
    assert await rpc("[1]") == j(
        '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]'
    )


async def test_invalid_batch() -> None:
    error = {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
    assert await rpc("[1,2,3]") == [error, error, error]


async def test_mixed_batch() -> None:
    notified.clear()
    got = await rpc(
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"""
    )
    not_found = got[3]
    assert not_found["error"]["code"] == -32601
    not_found["error"].pop("data")
    assert got == j(
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]"""
    )
    assert notified == [[7]]


async def test_all_notification_batch_gets_nothing() -> None:
    notified.clear()
    got = await rpc(
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]'
    )
    assert got is None
    assert notified == [[7]]


async def test_invalid_params_is_32602() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "subtract", "params": {"x": 1}, "id": 7}')
    assert got["error"]["code"] == -32602
    assert got["error"]["message"] == "Invalid params"
    assert got["id"] == 7


async def test_handler_exception_is_32000_with_its_reason() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "broken", "id": 8}')
    assert got["error"] == {
        "code": -32000,
        "message": "Server error",
        "data": {"type": "ZeroDivisionError", "message": "no"},
    }


async def test_unsendable_result_is_32603() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "unsendable", "id": 9}')
    assert got["error"]["code"] == -32603


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "1.0", "method": "sum", "params": [1], "id": 1}',
        '{"method": "sum", "params": [1], "id": 1}',
        '{"jsonrpc": "2.0", "method": "sum", "params": 5, "id": 1}',
        '{"jsonrpc": "2.0", "method": "sum", "params": [1], "id": [1]}',
        '{"jsonrpc": "2.0", "method": "sum", "params": [1], "id": true}',
        '"just a string"',
    ],
)
async def test_other_invalid_requests(body: str) -> None:
    got = await rpc(body)
    assert got["error"]["code"] == -32600


async def test_reserved_rpc_prefix_is_not_found() -> None:
    METHODS["rpc.internal"] = get_data
    try:
        got = await rpc('{"jsonrpc": "2.0", "method": "rpc.internal", "id": 1}')
    finally:
        del METHODS["rpc.internal"]
    assert got["error"]["code"] == -32601


async def test_null_and_string_ids_are_echoed() -> None:
    got = await rpc('{"jsonrpc": "2.0", "method": "get_data", "id": null}')
    assert got == {"jsonrpc": "2.0", "result": ["hello", 5], "id": None}


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "2.0", "method": "sum", "params": [1], "id": Infinity}',
        '{"jsonrpc": "2.0", "method": "sum", "params": [NaN], "id": 1}',
        '[{"jsonrpc": "2.0", "method": "sum", "params": [-Infinity], "id": 1}]',
    ],
)
async def test_nan_and_infinity_are_not_json(body: str) -> None:
    """Found by fuzzing: json.loads took `"id": Infinity`, and the answer (which echoes the
    id) could not be encoded: POST /json-rpc answered 500."""
    got = await rpc(body)
    assert got["error"]["code"] == -32700
    json.dumps(got, allow_nan=False)


async def test_a_result_holding_nan_is_32603() -> None:
    async def nan(params: Any) -> Any:
        return float("nan")

    got = await dispatch('{"jsonrpc": "2.0", "method": "nan", "id": 1}', {"nan": nan}.get)
    assert got["error"]["code"] == -32603


async def test_nan_and_infinity_ids_are_parse_errors() -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        got = await rpc(f'{{"jsonrpc": "2.0", "method": "get_data", "id": {constant}}}')
        assert got["error"]["code"] == -32700
