"""`knot.secrets` with real parts: a secret reaches where a script sends it, and shows nowhere.

One project holds three secrets (in knot.toml, in a file it names, in the environment) and
scripts that print them, raise with them, emit them, direct them and return them. Every
surface is read afterwards: `knot serve`'s log, the sinks' status, the audit log, the events
API, a Sky answer, `knot call`, `knot run` (text and --json) and `%knot run` in a notebook.
The receiving server, and only it, gets the real values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from knot import DeliveryStatus
from knot.notebook.display import DryRunReport

from .conftest import write_config
from .helpers import KnotServer, run_knot, wait_until
from .notebookhelpers import formats, knot_magic
from .origin import Origin
from .scripting import output, reach_config, scripted

TOML_SECRET = "toml-s3cret-Value-0001"
FILE_SECRET = "file-s3cret-Value-0002"
ENV_SECRET = "env-s3cret-Value-0003"
SECRETS = (TOML_SECRET, FILE_SECRET, ENV_SECRET)

LEAKY_SINK = """# events: custom.leak, custom.sky.leak
import knot.event, knot.secrets, requests
values = [knot.secrets.get("TOKEN"), knot.secrets.get("FILED"), knot.secrets.get("ENV_TOKEN")]
print("values:", values)
for value in values:
    print("again", value, "and", value[::-1][::-1])
r = requests.post(knot.event.get_string("url"), json={"tokens": values},
                  headers={"Authorization": "Bearer " + values[0]})
print("the server saw:", r.text)
knot.event.emit("leaked", {"token": values[1], values[2]: "as a key"})
knot.event.directive("say", {"token": values[0]})
if knot.event.get_bool("fail"):
    raise ValueError("bad token " + values[2])
"""

LEAKY_METHOD = """
import knot.methods, knot.secrets
@knot.methods.method
def reveal(params):
    print("printing", knot.secrets.get("TOKEN"))
    return {"token": knot.secrets.get("TOKEN"), "env": knot.secrets.get("ENV_TOKEN")}
"""


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


def leaky_project(project: Path, origin: Origin) -> None:
    (project / "secrets").mkdir()
    (project / "secrets" / "filed").write_text(FILE_SECRET + "\n")
    write_config(
        project,
        f"""
[delivery]
attempts = 1

[scripts]
http_allow = ["{origin.netloc}"]

[secrets]
TOKEN = "{TOML_SECRET}"
FILED = {{ file = "secrets/filed" }}
""",
    )
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "methods").mkdir(parents=True)
    (project / "scripts" / "sinks" / "leaky.py").write_text(LEAKY_SINK)
    (project / "scripts" / "methods" / "vault.py").write_text(LEAKY_METHOD)


def assert_hidden(text: str) -> None:
    for value in SECRETS:
        assert value not in text
        assert value[:12] not in text  # not even a part of one


def test_a_secret_reaches_its_server_and_shows_in_no_output(project: Path, origin: Origin) -> None:
    leaky_project(project, origin)
    env = {"KNOT_SECRET_ENV_TOKEN": ENV_SECRET}
    server = KnotServer(project, env=env)
    try:
        server.wait_for_line(r"loaded sink leaky")
        server.wait_for_line(r"loaded method script vault")
        with server.client() as http:
            for fail in (False, True):
                payload = {"url": origin.url("/echo"), "fail": fail}
                assert (
                    http.post("/event", json={"type": "leak", "payload": payload}).status_code
                    == 202
                )
            wait_until(lambda: len(origin.at("/echo")) == 2)
            server.wait_for_line(r"raised ValueError")
            channel = http.post("/api/channels", json={}).json()
            sky = http.post(
                f"/sky/event/{channel['eci']}/none/sky/leak", json={"url": origin.url("/echo")}
            ).text
            surfaces = [
                sky,
                http.get("/api/sinks").text,
                http.get("/api/audit").text,
                http.get("/api/events?n=50").text,
                json.dumps(
                    http.post(
                        "/json-rpc", json={"jsonrpc": "2.0", "id": 1, "method": "vault.reveal"}
                    ).json()
                ),
            ]
        call = run_knot("call", "vault.reveal", port=server.port)
        surfaces += [call.stdout, call.stderr]
        server.wait_for_line(r"printing \[secret:TOKEN\]")
    finally:
        server.terminate()
    surfaces.append(server.output())
    for text in surfaces:
        assert_hidden(text)
    log = server.output()
    assert "values: ['[secret:TOKEN]', '[secret:FILED]', '[secret:ENV_TOKEN]']" in log
    assert "bad token [secret:ENV_TOKEN]" in log
    assert '"options":{"token":"[secret:TOKEN]"}' in surfaces[0]  # the Sky directive
    assert '"[secret:ENV_TOKEN]":"as a key"' in surfaces[3]  # the emitted event
    assert json.loads(call.stdout) == {"token": "[secret:TOKEN]", "env": "[secret:ENV_TOKEN]"}
    # The server got the real values: a script can use its secrets, only not show them.
    seen = origin.at("/echo")[0]
    assert json.loads(seen.body) == {"tokens": list(SECRETS)}
    assert seen.headers["authorization"] == f"Bearer {TOML_SECRET}"


def test_knot_run_redacts_its_output_and_masks_requests(project: Path, origin: Origin) -> None:
    leaky_project(project, origin)
    env = {"KNOT_SECRET_ENV_TOKEN": ENV_SECRET}
    data = json.dumps({"url": origin.url("/echo"), "fail": True})
    script = str(project / "scripts" / "sinks" / "leaky.py")
    dry = run_knot(
        "run", script, "--event", "custom.leak", "--data", data, "--project", str(project), env=env
    )
    dry_json = run_knot(
        "run",
        script,
        "--event",
        "custom.leak",
        "--data",
        data,
        "--project",
        str(project),
        "--json",
        env=env,
    )
    assert origin.requests == []  # a dry run sends nothing without --live
    live = run_knot(
        "run",
        script,
        "--event",
        "custom.leak",
        "--data",
        data,
        "--project",
        str(project),
        "--live",
        env=env,
    )
    assert len(origin.at("/echo")) == 1
    for result in (dry, dry_json, live):
        assert result.returncode == 1  # the script raises at its end
        assert_hidden(result.stdout + result.stderr)
    assert "values: ['[secret:TOKEN]', '[secret:FILED]', '[secret:ENV_TOKEN]']" in dry.stdout
    assert "--- HTTP requests (1 request, not sent: --live sends them)" in dry.stdout
    assert "    Authorization: ********" in dry.stdout
    assert '{"tokens":["[secret:TOKEN]","[secret:FILED]","[secret:ENV_TOKEN]"]}' in dry.stdout
    assert "error: The script" in dry.stderr
    assert "bad token [secret:ENV_TOKEN]" in dry.stderr
    parsed = json.loads(dry_json.stdout)
    assert parsed["requests"][0]["sent"] is False
    assert parsed["emitted"][0]["payload"] == {
        "token": "[secret:FILED]",
        "[secret:ENV_TOKEN]": "as a key",
    }
    assert "(sent, answered 200)" in live.stdout


def test_percent_knot_run_in_a_notebook_shows_no_secret(
    shell: InteractiveShell, project: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaky_project(project, origin)
    monkeypatch.setenv("KNOT_SECRET_ENV_TOKEN", ENV_SECRET)
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    try:
        data = json.dumps({"url": origin.url("/echo")})
        report = knot_magic(
            shell, f"run scripts/sinks/leaky.py --event custom.leak --data '{data}'"
        )
    finally:
        shell.run_line_magic("unload_ext", "knot")
    assert isinstance(report, DryRunReport)
    assert report.ok
    shown = formats(shell, report)
    for text in (repr(report), shown["text/html"], shown["text/plain"]):
        assert_hidden(text)
    assert "--- HTTP requests (1 request)" in repr(report)
    assert origin.requests == []


@pytest.mark.anyio
async def test_a_missing_secret_says_where_to_define_it(tmp_path: Path) -> None:
    async with scripted(tmp_path, reach_config(secrets={"SET": "present-value-1"})) as s:
        outcome = await s.run("import knot.secrets\nknot.secrets.get('NOPE')\n")
        fallback = output(
            await s.run(
                "import knot.secrets\n"
                "print(knot.secrets.get('NOPE', 'dflt'), knot.secrets.get('SET'))\n"
                "try:\n    knot.secrets.get('NOPE')\n"
                "except knot.secrets.SecretNotFound as e:\n    print('caught')\n"
            )
        )
    assert outcome.status is DeliveryStatus.FAILED
    assert "raised SecretNotFound: There is no secret named 'NOPE': define it in [secrets] of " in (
        outcome.error
    )
    assert "or set KNOT_SECRET_NOPE in the runtime's environment." in outcome.error
    assert fallback == ["dflt [secret:SET]", "caught"]


def test_a_bad_secrets_table_is_refused_without_showing_values(project: Path) -> None:
    write_config(project, '[secrets]\nGOOD = "good-value-123"\nBAD = 1234567890\n')
    result = run_knot("run", str(project / "x.py"), "--event", "x", "--project", str(project))
    assert result.returncode == 1
    assert "secrets.BAD must be a string" in result.stderr
    assert "1234567890" not in result.stderr
    assert "good-value-123" not in result.stderr


@pytest.mark.anyio
async def test_a_secret_cut_short_by_a_limit_shows_not_even_its_start(tmp_path: Path) -> None:
    secret = "cut-short-s3cret-value"
    config = reach_config(secrets={"LONG": secret}, max_output_bytes=256)
    async with scripted(tmp_path, config) as s:
        printed = output(
            await s.run(
                "import knot.secrets\n"
                "print('x' * 240 + knot.secrets.get('LONG'))\n"  # the cap cuts it after 'cut-s'
            )
        )
        raised = await s.run(
            "import knot.secrets\nraise ValueError('y' * 1990 + knot.secrets.get('LONG'))\n"
        )
    assert printed[-1] == "[output truncated at 256 bytes]"
    assert printed[0].endswith("[secret:LONG]")
    assert raised.error.endswith("[secret:LONG]...")
    for text in (*printed, raised.error):
        assert secret[:4] not in text


@pytest.mark.anyio
async def test_a_refused_request_to_a_secret_url_is_audited_without_the_secret(
    tmp_path: Path,
) -> None:
    secret = "T000-B000-hook-s3cret"
    config = reach_config(secrets={"HOOK": secret})
    async with scripted(tmp_path, config) as s:
        outcome = await s.run(
            "import knot.secrets, requests\n"
            "requests.post('https://hooks.example.com/services/' + knot.secrets.get('HOOK'))\n"
        )
        await s.rt.flush()
        audits = await s.rt.audit_entries()
    assert "raised RequestDenied" in outcome.error
    assert audits
    for entry in audits:
        assert secret not in entry.message
    assert any("services/[secret:HOOK]" in entry.message for entry in audits)


@pytest.mark.anyio
async def test_short_secrets_are_redacted_without_breaking_the_workers_messages(
    tmp_path: Path,
) -> None:
    config = reach_config(secrets={"ONE": "1", "N": "n", "WORD": "result"})
    async with scripted(tmp_path, config) as s:
        name = await s.add(
            "import knot.event\n"
            "print('line\\nnext 1 result')\n"
            "knot.event.emit('x', {'n': 1, 'text': 'one 1'})\n"
        )
        first = await s.run("", name=name)
        second = await s.run("", name=name)
        await s.rt.flush()
        emitted = [e for e in await s.rt.events() if e.type == "custom.x"]
    assert output(first) == ["li[secret:N]e", "[secret:N]ext [secret:ONE] [secret:WORD]"]
    assert output(second) == output(first)  # the worker survived both
    assert emitted[0].data == {"[secret:N]": 1, "text": "o[secret:N]e [secret:ONE]"}
