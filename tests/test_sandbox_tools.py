"""The Python API behind `knot check`/`knot run`, the worker protocol and the shared pool."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from knot import Actor, ActorKind, Config, EventError, Runtime, Space, parse_config
from knot._config import ScriptSettings
from knot.sandbox.pool import WorkerPool
from knot.sandbox.process import RemoteError, WorkerProcess
from knot.scripts import check_paths, dry_run, dry_run_async, load_script


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


EMITTER = (
    "# events: custom.order.*\n"
    "import knot.event\n"
    "total = sum(i['price'] for i in knot.event.get_list('items'))\n"
    "knot.event.emit('order.priced', {'total': total})\n"
    "knot.event.directive('total', {'value': total})\n"
    "print('total', total, 'for', knot.event.space()['name'])\n"
)


def test_dry_run_captures_output_emits_and_directives(tmp_path: Path) -> None:
    script = write(tmp_path, "pricer.py", EMITTER)
    result = dry_run(
        script, "custom.order.placed", {"items": [{"price": 2}, {"price": 3}]}, space="shop"
    )
    assert result.ok, result.error
    assert result.output == ("total 5 for shop",)
    (emitted,) = result.emitted
    assert (emitted.type, emitted.payload) == ("custom.order.priced", {"total": 5})
    assert result.directives == ({"name": "total", "options": {"value": 5}},)
    assert result.notes == ()
    assert result.event["space"]["name"] == "shop"


def test_dry_run_reports_problems_and_failures_as_data(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.py", "# events: *\nimport os\n")
    result = dry_run(broken, "custom.x")
    assert not result.ok
    assert [str(p) for p in result.problems] == [f"{broken}:2:8: import of 'os' is not allowed"]
    failing = write(tmp_path, "failing.py", "# events: *\nprint('before')\n{}['missing']\n")
    result = dry_run(failing, "custom.x")
    assert result.output == ("before",)
    assert result.error == f"The script {failing}:3 raised KeyError: 'missing'"
    with pytest.raises(EventError):
        dry_run(failing, "not a type!")


@pytest.mark.anyio
async def test_dry_run_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    script = write(tmp_path, "pricer.py", EMITTER)
    # A notebook cell: the blocking API from inside a loop, and the async one.
    blocking = dry_run(script, "custom.order.x", {"items": []})
    awaited = await dry_run_async(script, "custom.order.x", {"items": []})
    assert blocking.output == awaited.output == ("total 0 for ",)


def test_check_paths_walks_folders_and_checks_method_scripts_by_their_rules(
    tmp_path: Path,
) -> None:
    write(tmp_path / "sinks", "ok.py", "# events: *\nx = 1\n")
    write(tmp_path / "sinks", "bad.py", "# events: *\nimport os\n")
    write(tmp_path / "methods", "mm.py", "import knot.methods\n")  # no header: a method script
    write(tmp_path / "methods", "worse.py", "import knot.methods\nimport socket\n")
    write(tmp_path / "sinks" / "__pycache__", "junk.py", "garbage(\n")
    report = check_paths([tmp_path, tmp_path / "nope"])
    assert not report.ok
    assert [load.name for load in report.loads] == ["mm", "worse", "bad", "ok"]
    assert [str(p) for p in report.problems] == [
        f"{tmp_path / 'methods' / 'worse.py'}:2:8: import of 'socket' is not allowed",
        f"{tmp_path / 'sinks' / 'bad.py'}:2:8: import of 'os' is not allowed",
    ]
    assert report.missing == (str(tmp_path / "nope"),)
    assert report.summary() == "2 of 4 scripts broke the sandbox rules (2 problems)."
    assert check_paths([tmp_path / "sinks" / "ok.py"]).ok
    assert check_paths([tmp_path / "methods" / "mm.py"]).ok
    # knot.methods is a method script's module, not a sink script's.
    write(tmp_path / "sinks", "mm.py", "# events: *\nimport knot.methods\n")
    assert not check_paths([tmp_path / "sinks" / "mm.py"]).ok


def test_scripts_workers_setting_is_validated() -> None:
    config = parse_config("[scripts]\nworkers = 3\n").raise_for_errors()
    assert config.scripts.workers == 3
    result = parse_config("[scripts]\nworkers = -1\n")
    assert not result.ok
    assert "scripts.workers must be an integer >= 0" in result.errors[0]


@pytest.mark.anyio
async def test_worker_protocol_answers_errors_in_json_rpc() -> None:
    worker = await WorkerProcess.spawn(memory_mb=64)
    try:
        assert (await worker.request("ping", {}))["pid"] == worker.pid
        with pytest.raises(RemoteError) as unknown:
            await worker.request("nope", {})
        assert unknown.value.code == -32601
        with pytest.raises(RemoteError) as rejected:
            await worker.request(
                "load", {"name": "s", "hash": "h", "source": "import os\n", "filename": "s.py"}
            )
        assert rejected.value.code == -32001
        assert rejected.value.data == [
            {"line": 1, "col": 8, "rule": "import of 'os' is not allowed"}
        ]
        with pytest.raises(RemoteError) as missing:
            await worker.request("run", {"name": "s", "hash": "other", "events": []})
        assert missing.value.code == -32002
        assert worker.alive
    finally:
        await worker.close()
    assert worker.proc.returncode == 0  # closing its input ends it cleanly


@pytest.mark.anyio
async def test_pool_gives_each_sink_a_worker_of_its_own_and_never_shares_it() -> None:
    pool = WorkerPool(size=2, memory_mb=64)
    try:
        first = await pool.acquire("a")
        second = await pool.acquire("b")
        assert first is not second
        waiting = asyncio.create_task(pool.acquire("c"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # both workers busy: the third sink waits
        pool.release(first)
        third = await waiting
        # "a"'s idle worker made room: it was stopped, not handed to "c".
        assert third not in (first, second)
        await asyncio.wait_for(first.proc.wait(), 5)
        pool.release(second)
        assert await pool.acquire("b") is second  # a sink keeps its own worker
        pool.release(second)
        pool.release(third)
        again = await pool.acquire("a")  # "a" lost its worker: it gets a fresh process
        assert again not in (first, second, third)
        assert pool.owners() == {"a": again.pid, "c": third.pid}
        pool.release(again)
        pool.configure(size=2, memory_mb=128)
        fresh = await pool.acquire("a")
        assert fresh.memory_mb == 128
        assert fresh is not again
        pool.release(fresh)
        pool.forget("a")  # the sink went away: its worker stops
        await asyncio.wait_for(fresh.proc.wait(), 5)
        assert "a" not in pool.owners()
    finally:
        await pool.close()
    assert pool.pids() == []


@pytest.mark.anyio
async def test_a_new_version_of_a_sink_keeps_its_worker_and_the_last_one_stops_it() -> None:
    pool = WorkerPool(size=2, memory_mb=64)
    try:
        pool.hold("a")  # version 1 starts
        worker = await pool.acquire("a")
        pool.release(worker)
        pool.hold("a")  # a reload: version 2 starts before version 1 stops
        pool.forget("a")
        assert await pool.acquire("a") is worker  # no new interpreter for the new code
        pool.release(worker)
        pool.forget("a")  # the sink itself went away
        await asyncio.wait_for(worker.proc.wait(), 5)
        async with asyncio.timeout(5):
            while pool.workers:  # and with no script sink left, the spare stops too
                await asyncio.sleep(0.02)
    finally:
        await pool.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.anyio
async def test_the_runtime_owns_the_pool_and_workers_live_as_long_as_script_sinks(
    tmp_path: Path,
) -> None:
    script = write(tmp_path, "lone.py", "# events: *\nx = 1\n")
    spec = load_script(script).spec
    assert spec is not None
    async with Runtime(tmp_path, config=Config(scripts=ScriptSettings(workers=1))) as rt:
        pool = rt.script_pool
        assert pool.pids() == []  # no script sink: no worker process
        await rt.add_sink(spec)
        await rt.emit_and_wait("x", {})
        (pid,) = pool.pids()
        await rt.remove_sink("lone")
        async with asyncio.timeout(5):
            while pool.workers:  # its worker (and the spare) stop with the last script sink
                await asyncio.sleep(0.02)
        assert pool.pids() == []
        async with asyncio.timeout(5):
            while alive(pid):  # ended and reaped
                await asyncio.sleep(0.02)


def test_dry_run_keeps_every_line_a_script_prints_not_only_the_last_twenty(
    tmp_path: Path,
) -> None:
    # The sink's status keeps its last 20 lines; a dry run shows the whole run (up to the
    # 64 KiB output cap), as `knot run` promises.
    script = write(tmp_path, "chatty.py", "# events: *\nfor i in range(30):\n    print(i)\n")
    result = dry_run(script, "custom.x")
    assert result.output == tuple(str(i) for i in range(30))
    failing = write(
        tmp_path, "chatty_fail.py", "# events: *\nfor i in range(25):\n    print(i)\n1 / 0\n"
    )
    result = dry_run(failing, "custom.x")
    assert result.output == tuple(str(i) for i in range(25))
    assert "ZeroDivisionError" in result.error


def test_dry_run_takes_the_event_s_space_actor_and_owner(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "who.py",
        "# events: *\nimport knot.event\n"
        "print(knot.event.actor()['username'], knot.event.actor()['kind'])\n"
        "print(knot.event.space()['id'], knot.event.space_urls())\n",
    )
    result = dry_run(
        script,
        "space.started",
        space=Space("sp-1", "web", ("http://127.0.0.1:8000",)),
        actor=Actor("u-1", "ada", ActorKind.USER),
        owner="u-1",
    )
    assert result.output == ("ada User", "sp-1 ['http://127.0.0.1:8000']")
    assert result.event["owner"] == "u-1"
    # An emitted event reads like an Event: `.type` and `.data` (`.payload` is the same).
    (emitted,) = dry_run(write(tmp_path, "pricer.py", EMITTER), "custom.o").emitted
    assert emitted.data == emitted.payload == {"total": 0}


def test_check_paths_takes_a_project_folder_for_its_scripts_folder(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text('[scripts]\ndir = "handlers"\n')
    write(tmp_path / "handlers" / "sinks", "ok.py", "# events: *\nprint(1)\n")
    write(tmp_path / "tests", "test_ok.py", "import pytest\n")  # not a script: never checked
    report = check_paths([tmp_path])
    assert [load.path.name for load in report.loads] == ["ok.py"]
    assert report.ok
    (tmp_path / "knot.toml").write_text('[scripts]\ndir = "nowhere"\n')
    assert check_paths([tmp_path]).loads == ()
    (tmp_path / "knot.toml").write_text("broken = [\n")  # a broken file: the default folder
    write(tmp_path / "scripts" / "sinks", "bad.py", "# events: *\nimport os\n")
    assert [load.path.name for load in check_paths([tmp_path]).loads] == ["bad.py"]
