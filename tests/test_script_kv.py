"""`knot.kv` in scripts, with real parts: workers, a runtime's SQLite store, `knot serve`.

A namespace per script, TTLs, atomic incr, globs, quotas that fail with the setting's name,
the idempotency idiom Knot asks of sinks (`if knot.kv.exists(knot.event.id())`), and keys
that survive a restart, a SIGKILL included, of `knot serve`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from knot import DeliveryStatus
from knot._config import DeliverySettings

from .helpers import KnotServer
from .scripting import output, reach_config, scripted

pytestmark = pytest.mark.anyio

# Scripts cannot ask an exception its class: a KvError says so itself.
KV = "import knot.kv, knot.event\n"


async def test_each_script_has_a_namespace_of_its_own(tmp_path: Path) -> None:
    body = KV + (
        "knot.kv.set('who', knot.event.get_string('me'))\n"
        "print(knot.kv.get('who'), knot.kv.keys())\n"
    )
    async with scripted(tmp_path, reach_config()) as s:
        await s.add(body, name="alpha")
        await s.add(body, name="beta")
        alpha = output(await s.run("", {"me": "a"}, name="alpha"))
        beta = output(await s.run("", {"me": "b"}, name="beta"))
        again = output(await s.run("", {"me": "a2"}, name="alpha"))
        # Scriptling's name for the same module: scriptling.runtime.kv.
        alias = output(
            await s.run(
                "import scriptling.runtime as runtime\nruntime.kv.set('x', 1)\n"
                "print(runtime.kv.get('x'), runtime.kv.keys())\n"
            )
        )
    assert alpha == ["a ['who']"]
    assert beta == ["b ['who']"]
    assert again == ["a2 ['who']"]
    assert alias == ["1 ['x']"]


async def test_operations_ttls_and_globs(tmp_path: Path) -> None:
    async with scripted(tmp_path, reach_config()) as s:
        name = await s.add(
            KV
            + """
step = knot.event.get_string("step")
if step == "write":
    knot.kv.set("user:1", {"name": "Ada"})
    knot.kv.set("user:22", {"name": "Bob"}, ttl=60)
    knot.kv.set("session:a", [1, 2], ttl=0.3)
    knot.kv.set("flag", True)
    print(knot.kv.incr("hits"), knot.kv.incr("hits", 5), knot.kv.incr("hits", -2))
    kv = knot.kv
    print(kv.ttl("user:1"), kv.ttl("user:22"), kv.ttl("session:a"), kv.ttl("nope"))
    print(kv.keys("user:*"), kv.keys("user:?"), kv.keys("[fh]*"), kv.keys("[!u]*"))
    print(kv.get("user:1"), kv.get("nope"), kv.get("nope", "dflt"))
    print(kv.exists("flag"), kv.delete("flag"), kv.delete("flag"), kv.exists("flag"))
else:
    print(knot.kv.exists("session:a"), knot.kv.ttl("session:a"), knot.kv.get("session:a", "gone"))
    print(sorted(knot.kv.keys()), knot.kv.clear(), knot.kv.keys())
"""
        )
        first = output(await s.run("", {"step": "write"}, name=name))
        await asyncio.sleep(0.4)
        later = output(await s.run("", {"step": "read"}, name=name))
    assert first == [
        "1 6 4",
        "-1 60 1 -2",
        "['user:1', 'user:22'] ['user:1'] ['flag', 'hits'] ['flag', 'hits', 'session:a']",
        "{'name': 'Ada'} None dflt",
        "True True False False",
    ]
    assert later == [
        "False -2 gone",
        "['hits', 'user:1', 'user:22'] 3 []",
    ]


async def test_quotas_and_types_fail_with_clear_errors(tmp_path: Path) -> None:
    config = reach_config(kv_max_keys=2, kv_max_value_bytes=100)
    async with scripted(tmp_path, config) as s:
        out = output(
            await s.run(
                KV
                + """
def attempt(call, *args):
    try:
        print(call(*args))
    except knot.kv.KvError as e:
        print("KvError:", e)
    except (TypeError, ValueError) as e:
        print("refused:", e)
attempt(knot.kv.set, "a", 1)
attempt(knot.kv.set, "b", "x" * 200)
attempt(knot.kv.set, "b", 2)
attempt(knot.kv.set, "c", 3)
attempt(knot.kv.set, "a", "replacing is free")
attempt(knot.kv.incr, "a")
attempt(knot.kv.incr, "b", 1.5)
attempt(knot.kv.set, "", 1)
attempt(knot.kv.set, "k" * 1025, 1)
attempt(knot.kv.set, "s", {1, 2})
attempt(knot.kv.set, "t", 1, -5)
attempt(knot.kv.delete, "b")
attempt(knot.kv.set, "c", 3)
"""
            )
        )
    assert out == [
        "None",
        "KvError: knot.kv.set('b'): the value is 202 bytes of JSON, more than "
        "scripts.kv_max_value_bytes (100).",
        "None",
        "KvError: knot.kv: a new key 'c' would pass this script's quota of 2 keys "
        "(scripts.kv_max_keys); delete keys, give them a ttl, or raise the quota.",
        "None",
        "KvError: knot.kv.incr('a'): the value is not an integer.",
        "refused: knot.kv.incr()'s amount must be an integer, not a number",
        "refused: knot.kv.set()'s key must have 1 to 1024 characters",
        "refused: knot.kv.set()'s key must have 1 to 1024 characters",
        "refused: the value holds an object of a class of its own, which JSON cannot represent",
        "refused: knot.kv.set()'s ttl must be 0 (no expiry) or a number of seconds",
        "True",
        "None",
    ]


async def test_the_idempotency_idiom_skips_what_a_retry_already_did(tmp_path: Path) -> None:
    config = reach_config()
    config = config.__class__(
        **{**config.__dict__, "delivery": DeliverySettings(attempts=2, backoff=(0.01,))}
    )
    async with scripted(tmp_path, config) as s:
        outcome = await s.run(
            KV
            + """
if knot.kv.exists(knot.event.id()):
    print("already done", knot.kv.get(knot.event.id()))
else:
    knot.kv.set(knot.event.id(), "sent", ttl=86400)  # the side effect, then the crash
    raise RuntimeError("the receiver hung up after taking it")
"""
        )
    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.attempts == 2
    assert output(outcome) == ["already done sent"]


async def test_method_scripts_keep_their_keys_across_a_worker_restart(tmp_path: Path) -> None:
    source = (
        "import knot.methods, knot.kv\n"
        "START = knot.kv.incr('loads')  # the top level may use knot.kv while it loads\n"
        "@knot.methods.method\n"
        "def bump(params):\n"
        "    return [START, knot.kv.incr('n')]\n"
    )
    async with scripted(tmp_path, reach_config()) as s:
        assert (await s.rt.methods.load("counter", source)).ok
        assert await s.rt.methods.call("counter", "bump") == [1, 1]
        assert await s.rt.methods.call("counter", "bump") == [1, 2]
        assert (await s.rt.methods.load("counter", source + "\n")).ok  # a new worker
        assert await s.rt.methods.call("counter", "bump") == [2, 3]
        # A sink script of the same name has a namespace of its own.
        sink = output(
            await s.run(
                KV + "print(knot.kv.get('n'))\n",
                name=await s.add(KV + "print(knot.kv.get('n'))\n", name="counter"),
            )
        )
    assert sink == ["None"]


def test_keys_survive_restarts_of_knot_serve_even_a_sigkill(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "sinks" / "tally.py").write_text(
        "# events: custom.tally\nimport knot.kv\nprint('tally', knot.kv.incr('n'))\n",
        encoding="utf-8",
    )
    expected = 0
    for stop in ("terminate", "kill", "terminate"):
        server = KnotServer(project)
        try:
            server.wait_for_line(r"loaded sink tally")
            with server.client() as http:
                for _ in range(2):
                    expected += 1
                    assert http.post("/event", json={"type": "tally"}).status_code == 202
                    server.wait_for_line(rf"tally: tally {expected}$")
        finally:
            server.terminate() if stop == "terminate" else server.kill()
    assert expected == 6
