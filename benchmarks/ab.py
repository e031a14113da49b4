"""A/B: the journaled pipeline on the code of a git commit (A) and on this tree (B).

    .venv/bin/python -m benchmarks.ab COMMIT [--rounds N] [--cases engine1,script,...]

Each run is a fresh process (so neither side inherits the other's warm caches); the sides
alternate, run by run (A B, B A, ...), so drift in a shared machine's speed hits them alike.
A's code is `git archive COMMIT runtime` unpacked in a temporary folder and put first on
PYTHONPATH. Each run reports events/s (wall) and events per CPU second of the runtime's
process (the event loop and the journal's writer thread; sandbox workers are other processes).
Prints medians.

Cases (all 100 concurrent emitters, a journaled pipeline until the sinks have every event):
engine1 / engine10: in-process recording sinks, as bench_engine; script: the trivial script of
bench_scripts, silent; printing: a script that prints a line per event (each a kept record);
emitting: a script that emits one event per event (what it emitted is recorded since issue 17).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

PRODUCERS = 100
SCRIPTS = {
    "script": "import knot.event\nn = knot.event.get_int('i')\nif n < 0:\n    print(n)\n",
    "printing": "import knot.event\nprint('tick', knot.event.get_int('i'))\n",
    "emitting": "import knot.event\nknot.event.emit('out', {'i': knot.event.get_int('i')})\n",
}
EVENTS = {"engine1": 40_000, "engine10": 20_000, "script": 20_000}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _case(case: str, project: Path) -> tuple[float, float]:
    from knot import RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns
    from knot._config import Config, DeliverySettings, ScriptSettings
    from knot.scripts import load_script

    events = EVENTS.get(case, 10_000)
    config = Config(
        delivery=DeliverySettings(queue_size=100_000),
        scripts=ScriptSettings(timeout=5.0, memory_mb=256),
    )
    async with Runtime(project, config=config) as rt:
        names = []
        if case.startswith("engine"):
            for i in range(int(case.removeprefix("engine"))):
                spec = SinkSpec(
                    f"s{i}", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN
                )
                await rt.add_sink(RecordingSink(spec))
                names.append(spec.name)
        else:
            path = project / f"{case}.py"
            path.write_text("# events: custom.bench.tick\n" + SCRIPTS[case])
            loaded = load_script(path).spec
            assert loaded is not None
            await rt.add_sink(loaded)
            await rt.emit_and_wait("bench.tick", {"i": -1})  # the worker is up
            names.append(loaded.name)
        per = events // PRODUCERS

        async def producer() -> None:
            for i in range(per):
                await rt.emit("bench.tick", {"i": i})

        before = {s.name: s.delivered for s in rt.sinks()}
        cpu, started = _cpu(), time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=600)
        elapsed, used = time.perf_counter() - started, _cpu() - cpu
        for status in rt.sinks():
            if status.name in names:
                assert status.delivered - before[status.name] == per * PRODUCERS, status
        return per * PRODUCERS / elapsed, per * PRODUCERS / used


def _child(case: str) -> None:
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = uvloop.run(_case(case, Path(tmp)))
    print(json.dumps({"wall": wall, "cpu": cpu, "knot": sys.modules["knot"].__file__}))


def _run(case: str, tree: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{env.get('PYTHONPATH', '')}"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", "--child", case],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=True,
    )
    found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    expected = str(tree) if tree is not None else str(root / "runtime")
    assert str(found["knot"]).startswith(expected), f"{found['knot']} is not from {expected}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab")
    parser.add_argument("commit", nargs="?")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="engine1,engine10,script,printing,emitting")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    archive = subprocess.run(
        ["git", "archive", args.commit, "runtime"], capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        tree = Path(tmp) / "runtime"
        for case in args.cases.split(","):
            sides: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
            for round_ in range(args.rounds):  # A B, then B A: neither side always goes first
                order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
                for side in order:
                    sides[side].append(_run(case, tree if side == "A" else None))
            line = [case]
            for key in ("wall", "cpu"):
                a = statistics.median(r[key] for r in sides["A"])
                b = statistics.median(r[key] for r in sides["B"])
                line.append(f"{key} A {a:,.0f} B {b:,.0f} ({(b / a - 1) * 100:+.1f}%)")
            print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
