"""The Sky Cloud API: /sky/cloud/<eci>/<script>/<function> calls a method of a method script."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import KnotServer

ACCOUNTS = """\
import knot.event
import knot.methods

balances = {}


@knot.methods.method(params=["who", "amount"])
def deposit(params):
    amount = int(params["amount"])
    balances[params["who"]] = balances.get(params["who"], 0) + amount
    knot.event.emit("accounts.deposited", {"who": params["who"], "amount": amount})
    return balances[params["who"]]


@knot.methods.method
def balance(params):
    return {"who": params.get("who"), "balance": balances.get(params.get("who"), 0)}


@knot.methods.method
def strict(params):
    if "n" not in params:
        raise knot.methods.InvalidParams("n is required", {"missing": "n"})
    return params["n"]


@knot.methods.method
def broken(params):
    raise RuntimeError("the ledger is locked")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("cloud")
    methods = project / "scripts" / "methods"
    methods.mkdir(parents=True)
    (methods / "accounts.py").write_text(ACCOUNTS)
    srv = KnotServer(project)
    srv.wait_for_line(r"loaded method script accounts")
    with srv.client() as http:
        made = http.post("/api/channels", json={"eci": "bank", "owner": "alice", "name": "t"})
        assert made.status_code == 201, made.text
    yield srv
    srv.kill()


@pytest.fixture
def http(server: KnotServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_query_string_arguments_and_state_between_calls(http: httpx.Client) -> None:
    first = http.get("/sky/cloud/bank/accounts/deposit", params={"who": "ada", "amount": "5"})
    assert first.status_code == 200, first.text
    assert first.json() == 5
    assert first.headers["access-control-allow-origin"] == "*"
    again = http.post("/sky/cloud/bank/accounts/deposit", json={"who": "ada", "amount": 7})
    assert again.json() == 12
    answer = http.get("/sky/cloud/bank/accounts/balance?who=ada&_ignored=1")
    assert answer.json() == {"who": "ada", "balance": 12}


def test_the_json_body_wins_over_the_query(http: httpx.Client) -> None:
    answer = http.post("/sky/cloud/bank/accounts/balance?who=bob", json={"who": "carol"})
    assert answer.json() == {"who": "carol", "balance": 0}


def test_calls_belong_to_the_channels_owner(http: httpx.Client) -> None:
    http.get("/sky/cloud/bank/accounts/deposit", params={"who": "dan", "amount": "1"})
    events = http.get("/api/events", params={"pattern": "custom.accounts.deposited"}).json()
    mine = [e for e in events["events"] if e["data"]["who"] == "dan"]
    assert [e["owner"] for e in mine] == ["alice"]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/sky/cloud/nope/accounts/balance", 404, "no channel with eci 'nope'"),
        ("/sky/cloud/bank/accounts/missing", 404, "no function 'missing'"),
        ("/sky/cloud/bank/ghost/balance", 404, "method script 'ghost'"),
        ("/sky/cloud/bank/accounts/strict", 400, "n is required"),
        ("/sky/cloud/bank/accounts/broken", 502, "the ledger is locked"),
    ],
)
def test_errors_have_real_status_codes(
    http: httpx.Client, path: str, status: int, words: str
) -> None:
    answer = http.get(path)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert answer.headers["access-control-allow-origin"] == "*"


def test_a_body_we_do_not_read_is_400_naming_the_accepted_types(http: httpx.Client) -> None:
    answer = http.post(
        "/sky/cloud/bank/accounts/balance",
        content=b"<xml/>",
        headers={"Content-Type": "application/xml"},
    )
    assert answer.status_code == 400
    assert "application/xml" in answer.json()["error"]
    assert "application/json" in answer.json()["error"]
    assert answer.headers["access-control-allow-origin"] == "*"


def test_rpc_error_codes_travel_with_method_failures(http: httpx.Client) -> None:
    assert http.get("/sky/cloud/bank/accounts/strict").json()["code"] == -32602
    assert http.get("/sky/cloud/bank/accounts/broken").json()["code"] == -32000


def test_cors_preflight(http: httpx.Client) -> None:
    answer = http.options("/sky/cloud/bank/accounts/balance")
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]


def test_only_the_channels_owner_or_a_global_manager_may_query(tmp_path: Path) -> None:
    methods = tmp_path / "scripts" / "methods"
    methods.mkdir(parents=True)
    (methods / "accounts.py").write_text(ACCOUNTS)
    server = KnotServer(tmp_path)
    try:
        server.wait_for_line(r"loaded method script accounts")
        with server.client() as local:
            admin = local.post("/api/users", json={"name": "admin", "manage_global_sinks": True})
            assert admin.status_code == 201, admin.text
        tokens = {"admin": admin.json()["token"]}
        as_admin = {"Authorization": f"Bearer {tokens['admin']}"}
        with server.client() as http:
            for name in ("alice", "bob"):
                made = http.post("/api/users", json={"name": name}, headers=as_admin)
                assert made.status_code == 201, made.text
                tokens[name] = made.json()["token"]
            channel = http.post(
                "/api/channels", json={"eci": "alices", "owner": "alice"}, headers=as_admin
            )
            assert channel.status_code == 201, channel.text
            url = "/sky/cloud/alices/accounts/balance?who=x"

            def status(user: str | None) -> int:
                headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
                return http.get(url, headers=headers).status_code

            assert status(None) == 401
            assert status("bob") == 403
            assert status("alice") == 200
            assert status("admin") == 200
            audit = http.get("/api/audit", headers=as_admin).json()["audit"]
            assert any("may not query channel alices" in a["message"] for a in audit)
    finally:
        server.kill()
