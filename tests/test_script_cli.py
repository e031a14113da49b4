"""`knot check`, `knot run` and script sinks under `knot serve`, as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

from .helpers import KnotServer, wait_until
from .helpers import run_knot as knot

EXAMPLES = Path(__file__).resolve().parent.parent / "scripts" / "sinks"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_passes_the_examples() -> None:
    result = knot("check", str(EXAMPLES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "3 scripts checked: all follow the sandbox rules."


def test_check_lists_every_violation_and_exits_1(tmp_path: Path) -> None:
    sinks = tmp_path / "scripts" / "sinks"
    write(sinks, "good.py", "# events: *\nprint('ok')\n")
    bad = write(
        sinks, "bad.py", "# events: *\nimport json\ndef f():\n    import os\n    eval('1')\n"
    )
    nohead = write(sinks, "nohead.py", "x = 1\n")
    write(tmp_path / "scripts" / "methods", "worker.py", "import knot.methods\n")  # a method
    result = knot("check", str(tmp_path / "scripts"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{bad}:4:12: import of 'os' is not allowed",
        f"{bad}:5:5: Eval calls are not allowed",
        f"{nohead}:1:1: missing '# events:' header: add a comment like "
        "'# events: custom.myapp.*' before the first statement",
    ]
    assert "2 of 4 scripts broke the sandbox rules (3 problems)." in result.stderr


def test_check_reports_a_missing_path(tmp_path: Path) -> None:
    result = knot("check", str(tmp_path / "nope.py"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.py'}: no such file or folder",
        "Nothing was checked: the path given does not exist.",
    ]


def test_check_never_claims_more_than_it_checked(tmp_path: Path) -> None:
    result = knot("check", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "Nothing was checked: none of the paths given exists."
    result = knot("check", str(tmp_path / "a"), str(EXAMPLES))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "3 scripts checked: all follow the sandbox rules; 1 path given does not exist."
    )
    result = knot("check", str(tmp_path))  # a folder without scripts
    assert result.returncode == 0
    assert result.stdout == "Nothing was checked: no scripts (*.py) were found.\n"


def test_check_help_has_examples() -> None:
    result = knot("check", "--help")
    assert result.returncode == 0
    assert "knot check scripts/sinks/deploy_notify.py" in result.stdout


def test_run_the_deploy_notifier(tmp_path: Path) -> None:
    result = knot(
        "run",
        str(EXAMPLES / "deploy_notify.py"),
        "--event",
        "custom.myapp.deployed",
        "--data",
        '{"version": "1.4.2", "commit": "9f1c2e7d55"}',
        "--space",
        "web",
        "--project",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "--- output (1 line)",
        "Deploying 1.4.2 (9f1c2e7) from web",
        "--- emitted (0 events, not delivered)",
        "--- directives (0 directives)",
    ]


def test_run_shows_emits_and_directives_as_json(tmp_path: Path) -> None:
    alert = knot(
        "run",
        str(EXAMPLES / "space_alert.py"),
        "--event",
        "space.unhealthy",
        "--data",
        '{"space_name": "db", "consecutive_failures": 4}',
        "--json",
        "--project",
        str(tmp_path),
    )
    assert alert.returncode == 0, alert.stderr
    result = json.loads(alert.stdout)
    (emitted,) = result["emitted"]
    assert emitted["type"] == "custom.alerts.space_down"
    assert emitted["payload"] == {"space": "db", "failures": 4, "checked_at": ""}
    assert result["output"] == [f"db failed 4 checks in a row: raised alert {emitted['id']}"]
    assert result["event"]["type"] == "space.unhealthy"

    greet = knot(
        "run",
        str(EXAMPLES / "greeter.py"),
        "--event",
        "custom.hello.greet",
        "--data",
        '{"name": "Ada"}',
        "--project",
        str(tmp_path),
    )
    assert greet.returncode == 0, greet.stderr
    assert 'say {"message": "Hello, Ada!", "lang": "en"}' in greet.stdout.splitlines()


def test_run_a_failing_or_broken_script_exits_1(tmp_path: Path) -> None:
    failing = write(tmp_path, "failing.py", "# events: *\nx = 1 / 0\n")
    result = knot("run", str(failing), "--event", "custom.x", "--project", str(tmp_path))
    assert result.returncode == 1
    assert f"error: The script {failing}:2 raised ZeroDivisionError: division by zero" in (
        result.stderr
    )

    broken = write(tmp_path, "broken.py", "# events: *\nimport subprocess\n")
    result = knot("run", str(broken), "--event", "custom.x", "--project", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{broken}:2:8: import of 'subprocess' is not allowed"
    assert result.stdout == ""


def test_run_notes_an_event_the_script_would_not_get_and_refuses_bad_data(
    tmp_path: Path,
) -> None:
    result = knot(
        "run", str(EXAMPLES / "greeter.py"), "--event", "custom.other", "--project", str(tmp_path)
    )
    assert result.returncode == 0
    assert "do not match custom.other" in result.stderr
    bad = knot(
        "run", str(EXAMPLES / "greeter.py"), "--event", "x", "--data", "[1]", "--project", "."
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("knot: The --data payload must be a JSON object")


def test_run_applies_the_project_limits(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[scripts]\ntimeout = 0.3\n")
    loop = write(tmp_path, "spin.py", "# events: *\nwhile True:\n    pass\n")
    result = knot("run", str(loop), "--event", "custom.x", "--project", str(tmp_path))
    assert result.returncode == 1
    assert "ran longer than 0.3 s (scripts.timeout)" in result.stderr


def test_run_shows_a_flood_of_emits_truncated_and_failed_at_max_emits(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[scripts]\nmax_emits = 50\n")
    flood = write(
        tmp_path,
        "flood.py",
        "# events: *\nimport knot.event\nwhile True:\n    knot.event.emit('flood.x', {})\n",
    )
    result = knot("run", str(flood), "--event", "custom.x", "--project", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "--- emitted (50 events, not delivered)" in lines
    assert lines.count("custom.flood.x {}") == 20
    assert "... 30 more not shown (--json lists them all)" in lines
    assert (
        f"error: The script {flood}:4 tried to emit more than 50 events while handling one "
        "event (scripts.max_emits = 50)." in result.stderr
    )
    listed = knot("run", str(flood), "--event", "x", "--json", "--project", str(tmp_path))
    assert len(json.loads(listed.stdout)["emitted"]) == 50


def test_serve_runs_script_sinks_and_shows_their_output(
    project: Path, server_factory: type[KnotServer]
) -> None:
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    shutil.copy(EXAMPLES / "deploy_notify.py", sinks / "deploy_notify.py")
    bad = write(sinks, "broken.py", "# events: *\nx = open('/etc/passwd')\n")
    server = server_factory(project)
    server.wait_for_line(r"loaded sink deploy_notify \(scripts/sinks/deploy_notify\.py\)")
    assert bad.exists()
    where = "scripts/sinks/broken.py:2:5"  # shown relative to the project
    server.wait_for_line(rf"{where}: the file system is not available to scripts")
    with server.client() as client:
        response = client.post(
            "/event",
            json={"type": "myapp.deployed", "payload": {"version": "2.0", "commit": "abcdef12"}},
        )
        assert response.status_code == 202
        server.wait_for_line(
            r"INFO:\s+deploy_notify: Deploying 2.0 \(abcdef1\) from outside any space"
        )

        def delivered() -> bool:
            sink = client.get("/api/sinks/deploy_notify").json()
            return bool(sink["delivered"] == 1)

        wait_until(delivered)
        sink = client.get("/api/sinks/deploy_notify").json()
        assert sink["output"] == ["Deploying 2.0 (abcdef1) from outside any space"]
        assert sink["type"] == "script"
        broken = client.get("/api/sinks/broken").json()
        assert broken["problem"] == f"{where}: the file system is not available to scripts"
        audit = client.get("/api/audit").json()["audit"]
        assert [a["title"] for a in audit] == ["Event Sink Script Rejected"]


def _workers_of(pid: int) -> list[int]:
    """Sandbox worker processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"knot.sandbox.worker" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_busy_worker_dies_with_a_killed_runtime(
    project: Path, server_factory: type[KnotServer]
) -> None:
    (project / "knot.toml").write_text("[scripts]\ntimeout = 600\n")
    write(project / "scripts" / "sinks", "spin.py", "# events: *\nwhile True:\n    pass\n")
    server = server_factory(project)
    with server.client() as client:
        assert client.post("/event", json={"type": "x", "payload": {}}).status_code == 202
    wait_until(lambda: bool(_workers_of(server.proc.pid)))
    workers = _workers_of(server.proc.pid)
    server.kill()
    try:
        wait_until(lambda: not any(_alive(pid) for pid in workers))
    finally:
        for pid in workers:  # never leave a spinning orphan behind, even when this fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_check_a_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    """Found by fuzzing: Path.exists() raised ENAMETOOLONG and `knot check` crashed."""
    name = "a" * 300 + ".py"
    result = knot("check", name)
    assert result.returncode == 1
    assert f"{name}:1:1: cannot be read: File name too long" in result.stdout
    assert "Traceback" not in result.stderr
