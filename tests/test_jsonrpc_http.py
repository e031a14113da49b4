"""`POST /json-rpc` and `knot call` against a real `knot serve` with real method-script workers.

Every example exchange of section 7 of the JSON-RPC 2.0 specification goes through the HTTP
route to methods of a method script; then the error codes, the empty answers and the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import KnotServer
from .helpers import run_knot as knot

SPEC = """\
import knot.methods

notified = []

@knot.methods.method(params=["minuend", "subtrahend"])
def subtract(p):
    return p["minuend"] - p["subtrahend"]

@knot.methods.method(name="sum")
def total(params):
    return sum(params)

@knot.methods.method
def update(params):
    notified.append(["update", params])

@knot.methods.method
def notify_hello(params):
    notified.append(["notify_hello", params])

@knot.methods.method
def get_data(params):
    return ["hello", 5]

@knot.methods.method
def notified_so_far(params):
    return notified

@knot.methods.method
def reset(params):
    notified.clear()
"""

TOOLS = """\
import knot.methods
import time

@knot.methods.method
def boom(params):
    raise ValueError("the reactor is " + params["state"])

@knot.methods.method
def only_positive(params):
    if params["n"] < 0:
        raise knot.methods.InvalidParams("n must be positive", {"n": params["n"]})
    return params["n"]

@knot.methods.method(mode="concurrent")
def busy(params):
    end = time.monotonic() + params["seconds"]
    while time.monotonic() < end:
        pass
    return "done"

@knot.methods.method
def get_data(params):
    return "the other get_data"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("jsonrpc")
    (project / "knot.toml").write_text("[methods]\ntimeout = 1\nrestart_backoff = [0.05]\n")
    methods = project / "scripts" / "methods"
    methods.mkdir(parents=True)
    (methods / "spec.py").write_text(SPEC)
    (methods / "tools.py").write_text(TOOLS)
    srv = KnotServer(project)
    srv.wait_for_line(r"loaded method script tools")
    srv.wait_for_line(r"loaded method script spec")
    yield srv
    srv.kill()


@pytest.fixture
def http(server: KnotServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        client.post("/json-rpc", json={"jsonrpc": "2.0", "method": "spec.reset", "id": 0})
        yield client


def rpc(http: httpx.Client, body: str) -> httpx.Response:
    return http.post("/json-rpc", content=body, headers={"Content-Type": "application/json"})


def answer(http: httpx.Client, body: str) -> Any:
    response = rpc(http, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def nothing(http: httpx.Client, body: str) -> None:
    response = rpc(http, body)
    assert response.status_code == 204
    assert response.content == b""


def notified(http: httpx.Client) -> Any:
    return answer(http, '{"jsonrpc": "2.0", "method": "spec.notified_so_far", "id": 1}')["result"]


def j(text: str) -> Any:
    return json.loads(text)


def without_data(response: Any) -> Any:
    """The spec's examples leave out the optional `data`; we add details there."""
    items = response if isinstance(response, list) else [response]
    for item in items:
        if "error" in item:
            item["error"].pop("data", None)
    return response


# -- section 7, every example -------------------------------------------------------------


def test_rpc_call_with_positional_parameters(http: httpx.Client) -> None:
    assert answer(
        http, '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'
    ) == j('{"jsonrpc": "2.0", "result": 19, "id": 1}')
    assert answer(
        http, '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}'
    ) == j('{"jsonrpc": "2.0", "result": -19, "id": 2}')


def test_rpc_call_with_named_parameters(http: httpx.Client) -> None:
    assert answer(
        http,
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
    ) == j('{"jsonrpc": "2.0", "result": 19, "id": 3}')
    assert answer(
        http,
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
    ) == j('{"jsonrpc": "2.0", "result": 19, "id": 4}')


def test_a_notification(http: httpx.Client) -> None:
    nothing(http, '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
    nothing(http, '{"jsonrpc": "2.0", "method": "foobar"}')
    assert notified(http) == [["update", [1, 2, 3, 4, 5]]]  # it ran, and nothing was said


def test_rpc_call_of_non_existent_method(http: httpx.Client) -> None:
    got = answer(http, '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert got["error"]["data"] == {
        "method": "foobar",
        "detail": "There is no method named 'foobar'.",
    }
    assert without_data(got) == j(
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}'
    )


def test_rpc_call_with_invalid_json(http: httpx.Client) -> None:
    assert answer(http, '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]') == j(
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'
    )


def test_rpc_call_with_invalid_request_object(http: httpx.Client) -> None:
    assert answer(http, '{"jsonrpc": "2.0", "method": 1, "params": "bar"}') == j(
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    )


def test_rpc_call_batch_invalid_json(http: httpx.Client) -> None:
    assert answer(
        http,
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]',
    ) == j('{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}')


def test_rpc_call_with_an_empty_array(http: httpx.Client) -> None:
    assert answer(http, "[]") == j(
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    )


def test_rpc_call_with_an_invalid_batch_but_not_empty(http: httpx.Client) -> None:
    assert answer(http, "[1]") == j(
        '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]'
    )


def test_rpc_call_with_invalid_batch(http: httpx.Client) -> None:
    assert answer(http, "[1,2,3]") == j(
        """[
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
    ]"""
    )


def test_rpc_call_batch(http: httpx.Client) -> None:
    got = answer(
        http,
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "spec.get_data", "id": "9"}
    ]""",
    )
    assert without_data(got) == j(
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]"""
    )
    assert notified(http) == [["notify_hello", [7]]]


def test_rpc_call_batch_all_notifications(http: httpx.Client) -> None:
    nothing(
        http,
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
    )
    assert notified(http) == [["notify_hello", [7]]]


# -- our error codes, through real workers -------------------------------------------------


def call(http: httpx.Client, method: str, params: Any = None, id: Any = 7) -> Any:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    response = http.post("/json-rpc", json=body)
    assert response.status_code == 200
    return response.json()


def test_invalid_params_declared_or_raised_is_32602(http: httpx.Client) -> None:
    declared = call(http, "subtract", [1, 2, 3])
    assert declared["error"] == {
        "code": -32602,
        "message": "spec.subtract takes 2 params (minuend, subtrahend); got 3",
        "data": {"params": ["minuend", "subtrahend"]},
    }
    raised = call(http, "tools.only_positive", {"n": -1})
    assert raised == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "n must be positive", "data": {"n": -1}},
        "id": 7,
    }


def test_a_handler_exception_is_32000_with_its_type_and_message(http: httpx.Client) -> None:
    got = call(http, "boom", {"state": "melting"})
    assert got["error"] == {
        "code": -32000,
        "message": "The method tools.boom raised ValueError: the reactor is melting "
        "(scripts/methods/tools.py:6).",
        "data": {"type": "ValueError", "message": "the reactor is melting", "line": 6},
    }


def test_a_timeout_is_32603(http: httpx.Client) -> None:
    got = call(http, "tools.busy", {"seconds": 3})
    assert got["error"] == {
        "code": -32603,
        "message": "The method tools.busy ran longer than 1 s (methods.timeout) and was stopped.",
        "data": {"reason": "timeout", "timeout": 1.0},
    }
    assert call(http, "tools.busy", {"seconds": 0})["result"] == "done"  # the worker lived on


def test_a_worker_dying_mid_call_is_32603_and_it_comes_back(
    http: httpx.Client, server: KnotServer
) -> None:
    scripts = {s["script"]: s for s in http.get("/api/methods").json()["scripts"]}
    pid = scripts["tools"]["pid"]
    got: list[Any] = []
    caller = threading.Thread(target=lambda: got.append(call(http, "tools.busy", {"seconds": 0.9})))
    caller.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    caller.join(10)
    assert got[0]["error"]["code"] == -32603
    assert got[0]["error"]["message"] == (
        "The worker of method script tools stopped during the call to tools.busy (it was killed "
        "by SIGKILL); it is being restarted."
    )
    assert call(http, "tools.busy", {"seconds": 0})["result"] == "done"
    scripts = {s["script"]: s for s in http.get("/api/methods").json()["scripts"]}
    assert scripts["tools"]["pid"] != pid
    assert scripts["tools"]["restarts"] == 1
    server.wait_for_line("The worker of method script tools .* stopped: it was killed by SIGKILL")


def test_ambiguous_plain_names_need_the_full_name(http: httpx.Client) -> None:
    got = call(http, "get_data")
    assert got["error"]["code"] == -32601
    assert got["error"]["data"]["detail"] == (
        "The method name 'get_data' is ambiguous (spec.get_data, tools.get_data); call it by "
        "its full name."
    )
    assert call(http, "tools.get_data")["result"] == "the other get_data"


def test_the_methods_listing(http: httpx.Client) -> None:
    listing = http.get("/api/methods").json()
    names = [m["name"] for m in listing["methods"]]
    assert "spec.subtract" in names
    assert "tools.busy" in names
    subtract = next(m for m in listing["methods"] if m["name"] == "spec.subtract")
    assert subtract == {
        "name": "spec.subtract",
        "script": "spec",
        "method": "subtract",
        "mode": "serial",
        "events": "",
        "event_sinks": [],
        "params": ["minuend", "subtrahend"],
        "notification": False,
        "where": "scripts/methods/spec.py:5",
    }


def test_a_body_that_is_not_utf8_is_a_parse_error(http: httpx.Client) -> None:
    body = '{"jsonrpc": "2.0", "method": "spec.get_data", "id": 1}'.encode("utf-16")
    response = http.post("/json-rpc", content=body)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


def test_a_body_over_the_limit_is_413(http: httpx.Client) -> None:
    response = rpc(
        http, '{"jsonrpc": "2.0", "method": "sum", "params": ["' + "x" * (3 << 20) + '"]}'
    )
    assert response.status_code == 413


# -- knot call ------------------------------------------------------------------------------


def test_knot_call_prints_the_result(server: KnotServer) -> None:
    result = knot("call", "spec.subtract", "[42, 23]", port=server.port)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "19\n"
    piped = knot("call", "get_data", port=server.port, stdin="")
    assert piped.returncode == 1
    named = knot("call", "subtract", port=server.port, stdin='{"minuend": 5, "subtrahend": 7}')
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout) == -2
    listed = knot("call", "spec.get_data", port=server.port)
    assert json.loads(listed.stdout) == ["hello", 5]


def test_knot_call_errors_are_one_line_and_exit_1(server: KnotServer) -> None:
    missing = knot("call", "nope.nothing", port=server.port)
    assert missing.returncode == 1
    assert missing.stderr == "knot: There is no method named 'nope.nothing'.\n"
    raised = knot("call", "tools.boom", '{"state": "fine"}', port=server.port)
    assert raised.returncode == 1
    line = (
        "knot: The method tools.boom raised ValueError: the reactor is fine "
        "(scripts/methods/tools.py:6).\n"
    )
    assert (raised.stdout, raised.stderr) == ("", line)
    # --json: the structured error on stdout for a program, the same one line on stderr.
    as_json = knot("call", "tools.boom", '{"state": "fine"}', "--json", port=server.port)
    assert as_json.returncode == 1
    assert as_json.stderr == line
    assert json.loads(as_json.stdout) == {
        "error": {
            "code": -32000,
            "message": line[len("knot: ") : -1],
            "data": {"type": "ValueError", "message": "the reactor is fine", "line": 6},
        }
    }
    gone = knot("call", "nope.nothing", "--json", port=server.port)
    assert json.loads(gone.stdout) == {
        "error": {"code": -32601, "message": "There is no method named 'nope.nothing'."}
    }
    ok = knot("call", "spec.subtract", "[42, 23]", "--json", port=server.port)
    assert (ok.returncode, ok.stdout) == (0, '{"result": 19}\n')
    bad = knot("call", "spec.subtract", "42", port=server.port)
    assert bad.returncode == 1
    assert bad.stderr == "knot: The params must be a JSON object or array, like '{\"key\": 1}'.\n"


def test_knot_methods_lists_them(server: KnotServer) -> None:
    result = knot("methods", port=server.port)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["METHOD", "MODE", "EVENTS", "WHERE"]
    assert any(
        line.split() == ["tools.busy", "concurrent", "scripts/methods/tools.py:14"]
        for line in lines
    )


def test_knot_call_without_a_runtime(tmp_path: Path) -> None:
    result = knot("call", "spec.get_data", port=1)
    assert result.returncode == 1
    assert result.stderr.startswith("knot: No knot runtime answers at http://127.0.0.1:1")
