"""The ``aiocompute`` command, run in-process with ``main([...])`` against an emulator that
serves from a background thread (plus one subprocess test of the console script)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from aiocompute._version import __version__
from aiocompute.cli import main
from aiocompute.cli._app import build_parser
from aiocompute.cli._output import to_data
from aiocompute.emulator import Emulator, WorkbenchEmulatorConfig
from aiocompute.workbench.models import Job, JobStatus, LaunchParameters, Session, SessionState

# A token only this emulator accepts; no captured output may ever contain it.
TOKEN = "cli-secret-Xq81-token"
OTHER_TOKEN = "wrong-secret-Zz93-token"


pytestmark = pytest.mark.emulator(
    seed=11,
    workbench=WorkbenchEmulatorConfig(
        tokens={TOKEN: ("alice", "user"), "admin-token": ("admin", "admin")}
    ),
)


@pytest.fixture
def env(command_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Configuration through the environment, as users are told to do."""
    monkeypatch.setenv("WORKBENCH_SERVER", command_emulator.workbench_url)
    monkeypatch.setenv("WORKBENCH_API_KEY", TOKEN)
    for name in ("RS_SESSION_RPC_COOKIE", "PWB_SESSION_RUNTIME_DIR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    return command_emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command; check that no token leaked into what it printed."""
    code = main(list(argv))
    captured = capsys.readouterr()
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in captured.out
        assert secret not in captured.err
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    # Options go before "--": what follows it belongs to the job.
    cut = argv.index("--") if "--" in argv else len(argv)
    got, out, err = run(capsys, *argv[:cut], "--json", *argv[cut:])
    assert got == code, (out, err)
    return json.loads(out)  # exactly one JSON document


def run_ndjson(
    capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0
) -> list[dict[str, Any]]:
    """Run a streaming command with --json: one JSON object per line."""
    cut = argv.index("--") if "--" in argv else len(argv)
    got, out, err = run(capsys, *argv[:cut], "--json", *argv[cut:])
    assert got == code, (out, err)
    return [json.loads(line) for line in out.splitlines()]


def launch_session(capsys: pytest.CaptureFixture[str], name: str) -> str:
    data = run_json(capsys, "workbench", "sessions", "launch", "VS Code", "--name", name)
    session_id = data["sessions"][0]["id"]
    assert isinstance(session_id, str)
    return session_id


# --------------------------------------------------------------------------- help and usage


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _described(parser: argparse.ArgumentParser) -> dict[tuple[str, ...], Any]:
    """Every command of a parser tree, with its options and their defaults."""
    return {
        path: sorted((a.dest, tuple(a.option_strings), repr(a.default)) for a in sub._actions)
        for path, sub in _walk(parser)
        if path
    }


def test_a_command_line_naming_a_group_builds_that_group_the_same() -> None:
    whole = _described(build_parser())
    for group in ("workbench", "qiskit", "lakesail", "etengine", "demo"):
        only = _described(build_parser(["--json", group, "anything", "--json"]))
        assert only == {path: opts for path, opts in whole.items() if path[0] in (group, "version")}
    # No group named (an option, a typo, nothing): the whole tree, for --help and errors.
    for argv in (["--help"], ["workbnch", "sessions"], ["--", "workbench"]):
        assert _described(build_parser(argv)).keys() == whole.keys()


def test_every_command_help_has_an_example() -> None:
    commands = list(_walk(build_parser()))
    paths = {" ".join(path) for path, _ in commands}
    assert {
        "version",
        "emulator",
        "demo",
        "workbench sessions launch",
        "workbench sessions list",
        "workbench sessions wait",
        "workbench sessions stop",
        "workbench jobs launch",
        "workbench jobs tail",
        "workbench jobs stop",
        "workbench users",
        "workbench compute-envs",
        "workbench sessions get",
        "workbench sessions history",
        "workbench sessions resume",
        "workbench jobs get",
        "workbench jobs output",
        "workbench audited-jobs launch",
        "workbench audited-jobs get",
        "workbench audited-jobs output",
        "workbench audited-jobs tail",
        "workbench audited-jobs details",
        "workbench audited-jobs wait",
        "workbench audited-jobs stop",
    } <= paths
    for path, parser in commands:
        text = parser.format_help()
        assert "Example" in text, path
        # The example is a real command line of this very command.
        example = text.split("Example", 1)[1]
        assert "aiocompute " + " ".join(path) in example or not path, path


def test_help_exits_zero_and_names_the_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "workbench", "sessions", "launch", "--help")
    assert code == 0
    assert "Example" in out
    assert "--count" in out
    code, out, _ = run(capsys, "workbench", "--help")
    assert code == 0
    assert "WORKBENCH_API_KEY" in out
    assert run(capsys, "--help")[0] == 0


def test_usage_errors_exit_2(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys)[0] == 2  # no command
    code, _, err = run(capsys, "workbench", "sessions", "launch", "RStudio")
    assert code == 2
    assert "--name" in err
    code, _, err = run(
        capsys, "workbench", "sessions", "launch", "RStudio", "--name", "x", "--count", "0"
    )
    assert code == 2
    assert "--count" in err
    code, _, err = run(capsys, "workbench", "sessions", "wait", "abc", "--until", "ready")
    assert code == 2
    assert "running" in err  # the valid states are listed
    code, _, err = run(
        capsys, "workbench", "jobs", "launch", "--name", "j", "--exe", "R", "--env", "NOVALUE"
    )
    assert code == 2
    assert "NAME=VALUE" in err
    code, _, err = run(capsys, "workbench", "jobs", "launch", "--name", "j")
    assert code == 2
    assert "--exe" in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["sessions", "stop", ""], "session_ids[0]"),
        (["sessions", "wait", ""], "ids must be non-empty"),
        (["sessions", "launch", "", "--name", "x"], "workbench is required"),
        (["jobs", "launch", "--name", "", "--exe", "R"], "job.name"),
        (["jobs", "tail", ""], "job_id"),
        (["jobs", "wait", ""], "ids must be non-empty"),
        (["jobs", "stop", ""], "job_id"),
    ],
)
def test_arguments_the_sdk_refuses_exit_2(
    env: Emulator, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    """What the SDK refuses before sending anything (an empty id or name) is a usage error
    in one line, not a crash."""
    code, out, err = run(capsys, "workbench", *argv)
    assert code == 2, err
    assert said in err
    assert out == ""
    # The error is the document's, or (for launches, which go on past one) the session's.
    data = run_json(capsys, "workbench", *argv, code=2)
    error = data["error"] if "error" in data else data["sessions"][0]["error"]
    assert said in error["message"]


def test_missing_configuration_exits_2_naming_the_variable(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKBENCH_API_KEY")
    code, out, err = run(capsys, "workbench", "sessions", "list")
    assert code == 2
    assert "WORKBENCH_API_KEY" in err
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    error = run_json(capsys, "workbench", "sessions", "list", code=2)["error"]
    assert "WORKBENCH_API_KEY" in error["message"]
    monkeypatch.delenv("WORKBENCH_SERVER")
    code, _, err = run(capsys, "workbench", "sessions", "list", "--token", TOKEN)
    assert code == 2
    assert "WORKBENCH_SERVER" in err


def test_token_is_never_echoed(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    # A wrong token: the API says no (exit 1), in one line, without the token.
    code, _, err = run(capsys, "workbench", "sessions", "list", "--token", OTHER_TOKEN)
    assert code == 1
    assert "AuthenticationError" in err
    assert len(err.strip().splitlines()) == 1
    error = run_json(capsys, "workbench", "sessions", "list", f"--token={OTHER_TOKEN}", code=1)
    assert error["error"]["type"] == "AuthenticationError"
    # Given where it does not belong, argparse would quote it back: it is scrubbed.
    code, _, err = run(capsys, "version", "--token", TOKEN)
    assert code == 2
    assert "unrecognized" in err
    assert "***" in err
    # Given at the group level it works, and is not shown either.
    assert run(capsys, "workbench", "--token", TOKEN, "sessions", "list")[0] == 0


def test_options_are_accepted_at_every_level(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKBENCH_SERVER")
    monkeypatch.delenv("WORKBENCH_API_KEY")
    data = json.loads(
        run(
            capsys,
            "--json",
            "workbench",
            "--server",
            env.workbench_url,
            "sessions",
            f"--token={TOKEN}",
            "list",
        )[1]
    )
    assert isinstance(data["sessions"], list)


def test_bad_token_from_the_environment_exits_1(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_API_KEY", OTHER_TOKEN)
    code, out, err = run(capsys, "workbench", "jobs", "list")
    assert code == 1
    assert out == ""
    assert err.startswith("aiocompute: AuthenticationError")


def test_keyboard_interrupt_exits_130_quietly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("aiocompute.cli._app._run", interrupted)
    code, out, err = run(capsys, "version")
    assert (code, out, err) == (130, "", "")


# --------------------------------------------------------------------------- version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0
    assert __version__ in out
    assert run_json(capsys, "version") == {"version": __version__}


def test_server_version(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "workbench", "version")
    assert data["version"] == "2024.12.1"
    assert "raw" not in data["server"]
    assert "audited_jobs" in data["server"]["features"]
    code, out, _ = run(capsys, "workbench", "version")
    assert code == 0
    assert "2024.12.1" in out
    assert "launcher_jobs" in out


# --------------------------------------------------------------------------- sessions


def test_sessions_launch_many_wait_list_and_stop(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    before = env.stats["workbench.launch_session"]
    data = run_json(
        capsys,
        "workbench",
        "sessions",
        "launch",
        "VS Code",
        "--name",
        "fleet",
        "--count",
        "5",
        "--wait",
    )
    sessions = data["sessions"]
    assert env.stats["workbench.launch_session"] - before == 5
    assert [s["name"] for s in sessions] == [f"fleet-{i}" for i in range(1, 6)]
    assert all(s["state"] == "running" and s["error"] is None for s in sessions)
    first = sessions[0]["session"]
    assert first["activity_state"] == "running"
    assert "raw" not in first
    datetime.fromisoformat(first["created"])  # datetimes are ISO strings
    assert sessions[0]["url"].startswith(env.workbench_url + "/s/")
    ids = [s["id"] for s in sessions]

    listed = run_json(capsys, "workbench", "sessions", "list")["sessions"]
    assert set(ids) <= {s["id"] for s in listed}
    code, out, _ = run(capsys, "workbench", "sessions", "list")
    assert code == 0
    assert all(one in out for one in ids)
    assert "fleet-3" in out

    waited = run_json(capsys, "workbench", "sessions", "wait", *ids[:2])["sessions"]
    assert [w["id"] for w in waited] == ids[:2]
    assert waited[0]["name"] == "fleet-1"

    stopped = run_json(capsys, "workbench", "sessions", "stop", ids[0])
    assert stopped == {"stopped": [ids[0]], "force": False, "suspend": False}
    code, out, _ = run(capsys, "workbench", "sessions", "stop", *ids[1:], "--force")
    assert code == 0
    assert "4 session(s)" in out


def test_sessions_launch_human_output_and_plain_progress(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "workbench", "sessions", "launch", "RStudio", "--name", "solo")
    assert code == 0
    assert "solo" in out
    assert "/s/" in out
    # A few ids: every change of state is a plain line (no TTY here), then a table.
    code, out, _ = run(
        capsys, "workbench", "sessions", "launch", "JupyterLab", "--name", "watched", "--wait"
    )
    assert code == 0
    assert "-> launching" in out
    assert "-> running" in out
    assert "RESULT" in out
    assert "ok" in out
    assert "\x1b[" not in out  # no terminal escapes when stdout is not a terminal


def test_wait_timeout_exits_3(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    stuck = launch_session(capsys, "cli-emu-stuck")
    code, out, err = run(capsys, "workbench", "sessions", "wait", stuck, "--timeout", "0.5")
    assert code == 3
    assert "timed out" in out
    assert "WaitTimeout" in err
    data = run_json(
        capsys,
        "workbench",
        "sessions",
        "wait",
        stuck,
        "--timeout",
        "0.3",
        "--until",
        "RUNNING",
        code=3,
    )
    entry = data["sessions"][0]
    assert entry["error"]["type"] == "WaitTimeout"
    assert entry["state"] == "pending"
    run(capsys, "workbench", "sessions", "stop", stuck, "--force")


def test_unreachable_state_exits_3(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys,
        "workbench",
        "sessions",
        "launch",
        "VS Code",
        "--name",
        "cli-emu-fail",
        "--wait",
        code=3,
    )
    entry = data["sessions"][0]
    assert entry["state"] == "failed"
    assert entry["error"]["type"] == "UnreachableState"
    assert "emu-fail" in entry["error"]["message"]


def test_wait_for_an_unknown_session_is_an_api_error(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "workbench", "sessions", "wait", "nosuchid", "--timeout", "5")
    assert code == 1
    assert "NotFoundError" in err


def test_many_ids_show_state_counts(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [launch_session(capsys, f"slow-emu-stuck-{i}") for i in range(5)]
    code, out, _ = run(capsys, "workbench", "sessions", "wait", *ids, "--timeout", "1.3")
    assert code == 3
    assert "pending 5" in out  # the once-a-second count of states
    run(capsys, "workbench", "sessions", "stop", *ids, "--force")


# --------------------------------------------------------------------------- jobs

FAST = ["--emu-chunks=4", "--emu-interval=0.02", "--emu-stderr-every=2", "--emu-pending=0.02"]


def test_jobs_launch_tail_separates_streams(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "tailed",
        "--command",
        "echo",
        "--tail",
        "--",
        *FAST,
    )
    assert code == 0
    assert "stdout line 0 of job" in out
    assert "stdout line 2 of job" in out
    assert "stderr line 1 of job" in err
    assert "stderr line 3 of job" in err
    assert "stderr line" not in out
    assert "stdout line" not in err
    assert "Finished" in out
    assert "exit code 0" in out


def test_jobs_launch_wait_json_and_failure(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "ok",
        "--exe",
        "R",
        "--env",
        "A=1",
        "--wait",
        "--",
        *FAST,
    )
    job = data["job"]
    assert job["status"] == "Finished"
    assert job["exit_code"] == 0
    assert data["error"] is None
    assert job["args"] == FAST
    assert "raw" not in job
    lines = run_ndjson(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "bad",
        "--exe",
        "R",
        "--tail",
        "--",
        *FAST,
        "--emu-fail",
        code=3,
    )
    assert [line["type"] for line in lines] == ["launched"] + ["output"] * 4 + ["end"]
    assert lines[0]["job"]["name"] == "bad"
    end = lines[-1]
    assert end["job"]["status"] == "Failed"
    assert end["state"] == "Failed"
    assert end["error"]["type"] == "UnreachableState"
    stderr = "".join(x["output"] for x in lines[1:-1] if x["output_type"] == "stderr")
    assert "stderr line 1" in stderr
    # Human mode says so in one line on stderr.
    code, _, err = run(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "bad",
        "--exe",
        "R",
        "--wait",
        "--",
        "--emu-fail",
    )
    assert code == 3
    assert "UnreachableState" in err


def test_jobs_tail_list_wait_and_stop(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = run_json(
        capsys, "workbench", "jobs", "launch", "--name", "t", "--command", "echo", "--", *FAST
    )["job"]["id"]
    code, out, err = run(capsys, "workbench", "jobs", "tail", job_id)
    assert code == 0
    assert out.count("stdout line") == 2
    assert err.count("stderr line") == 2
    tailed = run_ndjson(capsys, "workbench", "jobs", "tail", job_id)
    assert all(line["job_id"] == job_id for line in tailed[:-1])
    stderr = "".join(x["output"] for x in tailed[:-1] if x["output_type"] == "stderr")
    assert stderr.count("\n") == 2
    assert tailed[-1]["type"] == "end"
    assert tailed[-1]["exit_code"] == 0
    assert tailed[-1]["error"] is None

    long_id = run_json(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "long",
        "--exe",
        "sleep",
        "--",
        "--emu-chunks=200",
        "--emu-interval=0.1",
    )["job"]["id"]
    # Stopped while still Pending (20-80 ms here) a job ends Canceled, not Killed: make sure
    # it runs first, as a person would, rather than count on the commands below being slow.
    running = run_json(
        capsys, "workbench", "jobs", "wait", long_id, "--until", "running", "--timeout", "5"
    )
    assert running["jobs"][0]["state"] == "Running"
    listed = run_json(capsys, "workbench", "jobs", "list")["jobs"]
    assert {job_id, long_id} <= {j["id"] for j in listed}
    code, out, _ = run(capsys, "workbench", "jobs", "list")
    assert code == 0
    assert long_id in out

    assert run_json(capsys, "workbench", "jobs", "stop", long_id, "--force") == {
        "stopped": [long_id],
        "force": True,
    }
    waited = run_json(
        capsys, "workbench", "jobs", "wait", long_id, job_id, "--timeout", "5", code=3
    )
    by_id = {j["id"]: j for j in waited["jobs"]}
    assert by_id[job_id]["error"] is None
    assert by_id[job_id]["state"] == "Finished"
    assert by_id[long_id]["error"]["type"] == "UnreachableState"
    assert by_id[long_id]["state"] == "Killed"


# --------------------------------------------------------------------------- emulator and demo


def test_emulator_command_prints_urls_and_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "emulator", "--port", "0", "--duration", "0.1")
    assert code == 0
    assert "http://127.0.0.1:" in out
    assert "/workbench" in out
    assert "user-token" in out
    assert "WORKBENCH_API_KEY" in out
    data = run_json(capsys, "emulator", "--port", "0", "--duration", "0.1", "--seed", "5")
    assert data["apis"]["workbench"].endswith("/workbench")
    assert data["seed"] == 5
    assert data["tokens"]["workbench"]["user-token"] == {"user": "alice", "role": "user"}


def test_emulator_refuses_a_remote_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "emulator", "--host", "0.0.0.0", "--port", "0", "--duration", "0.1")
    assert code == 2
    assert "loopback" in err


def test_demo_quick(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--quick")
    assert code == 0
    for part in ("1 ·", "2 ·", "3 ·", "UnreachableState", "err │ stderr line", "Done in"):
        assert part in out


@pytest.mark.slow
def test_demo_full_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo users run (~12 s): 24 sessions, 20 jobs, 4 batches, a 12-line log."""
    report = run_json(capsys, "demo")
    assert report["ok"] is True
    assert report["seconds"] < 30
    assert report["sessions"]["launched"] == 24
    assert report["sessions"]["running"] == 23
    assert report["sessions"]["unreachable"] == 1
    steps = report["fan_out"]["steps"]
    assert steps["jobs.launch"]["ok"] == 20
    assert steps["jobs.get"]["requests"] >= 20  # a read per call
    assert steps["jobs.wait"]["failed"] == 1
    # Coalescing: 20 concurrent waits over seconds cost about as much as 20 single reads.
    assert steps["jobs.wait"]["requests"] < 2 * steps["jobs.get"]["requests"]
    assert report["tail"]["stdout_lines"] == 9
    assert report["tail"]["stderr_lines"] == 3
    # ET Engine batches in the fan-out part: 4 batches of 6 jobs, one job failing.
    batches = report["fan_out"]["etengine"]
    assert batches["expected"] is True
    assert batches["steps"]["jobs.get"]["ok"] == batches["jobs"] == 24
    assert batches["steps"]["batches.wait"]["failed"] == 1


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("aiocompute")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from aiocompute.cli import main; sys.exit(main())"]


@pytest.mark.slow
@pytest.mark.usefixtures("interruptible")
def test_console_script_against_a_served_emulator(tmp_path: Path) -> None:
    command = _console_script()
    server = subprocess.Popen(
        [*command, "emulator", "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = []
        for line in server.stdout:  # one indented JSON document, ending with "}"
            lines.append(line)
            if line.rstrip() == "}":
                break
        info = json.loads("".join(lines))
        child_env = {
            **os.environ,
            "WORKBENCH_SERVER": info["apis"]["workbench"],
            "WORKBENCH_API_KEY": "user-token",
        }
        done = subprocess.run(
            [
                *command,
                "workbench",
                "sessions",
                "launch",
                "RStudio",
                "--name",
                "sub",
                "--wait",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sessions"][0]["state"] == "running"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(10)
        finally:
            if server.poll() is None:
                server.kill()
    assert code == 130  # Ctrl-C ends it, quietly
    assert server.stderr is not None
    assert "Traceback" not in server.stderr.read()


# --------------------------------------------------------------------------- JSON conversion


def test_to_data_unstructures_models() -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    job = Job(id="j1", status=JobStatus.FINISHED, submission_time=when, args=("a",), raw={"x": 1})
    session = Session(
        id="s1",
        activity_state=SessionState.RUNNING,
        launch_parameters=LaunchParameters(name="n", cluster="Local"),
        job=job,
        raw={"secret": "no"},
    )
    data = to_data(session)
    assert data["activity_state"] == "running"
    assert data["launch_parameters"]["cluster"] == "Local"
    assert data["job"]["submission_time"] == "2024-05-01T12:30:00+00:00"
    assert data["job"]["args"] == ["a"]
    assert "raw" not in data
    assert "raw" not in data["job"]
    json.dumps(data)  # plain data all the way down


def test_live_progress_on_an_interactive_terminal(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # rich treats the captured stream as an interactive terminal: the live table is drawn.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    code, out, _ = run(
        capsys,
        "workbench",
        "sessions",
        "launch",
        "VS Code",
        "--name",
        "tty",
        "--count",
        "5",
        "--wait",
    )
    assert code == 0
    assert "\x1b[?25l" in out  # the live display hides the cursor while it redraws
    assert "tty-5" in out
    assert "RESULT" in out


def test_ctrl_c_while_the_command_groups_load_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import aiocompute.cli._app as app

    def interrupted(argv: object = None) -> argparse.ArgumentParser:
        raise KeyboardInterrupt  # as if Ctrl-C came during the lazy imports

    monkeypatch.setattr(app, "build_parser", interrupted)
    assert main(["workbench", "jobs", "list"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_an_admin_acts_for_a_user_with_act_as(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = run_json(
        capsys, "workbench", "jobs", "launch", "--name", "theirs", "--exe", "R", "--wait"
    )["job"]["id"]
    monkeypatch.setenv("WORKBENCH_API_KEY", "admin-token")
    # As itself, the admin does not see alice's jobs; acting for alice, it does.
    assert job_id not in {j["id"] for j in run_json(capsys, "workbench", "jobs", "list")["jobs"]}
    listed = run_json(capsys, "workbench", "jobs", "list", "--act-as", "alice")["jobs"]
    assert job_id in {j["id"] for j in listed}
    code, _, err = run(capsys, "workbench", "jobs", "list", "--act-as", " ")
    assert code == 2
    assert "--act-as" in err


def test_the_commands_load_without_the_emulator() -> None:
    # Only `emulator` and `demo` need the server side of aiohttp: the other commands start
    # faster without it. A fresh interpreter, since this test process has it loaded.
    code = (
        "import sys; from aiocompute.cli._app import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('aiocompute.emulator', "
        "'aiohttp.web'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- issue 14 commands


def test_sessions_get_resume_history_and_urls(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # The URL is in the normal output of a launch --wait, not only in --json.
    code, out, _ = run(
        capsys, "workbench", "sessions", "launch", "RStudio", "--name", "cli-r", "--wait"
    )
    assert code == 0
    assert env.workbench_url + "/s/" in out
    session_id = next(s.id for s in run_sessions(capsys) if s.name == "cli-r")

    got = run_json(capsys, "workbench", "sessions", "get", session_id)
    assert got["session"]["id"] == session_id
    assert got["url"].startswith(env.workbench_url + "/s/")
    code, out, _ = run(capsys, "workbench", "sessions", "get", session_id)
    assert code == 0
    assert got["url"] in out
    assert "running" in out

    run(capsys, "workbench", "sessions", "stop", session_id, "--suspend")
    run_json(capsys, "workbench", "sessions", "wait", session_id, "--until", "suspended")
    resumed = run_json(capsys, "workbench", "sessions", "resume", session_id, "--wait")
    assert resumed["state"] == "running"
    assert resumed["error"] is None
    assert resumed["url"].startswith(env.workbench_url + "/s/")
    assert env.workbench.sessions[session_id].state == "running"

    run(capsys, "workbench", "sessions", "stop", session_id)
    run_json(capsys, "workbench", "sessions", "wait", session_id, "--until", "ended")
    history = run_json(capsys, "workbench", "sessions", "history")
    assert session_id in {s["id"] for s in history["sessions"]}
    code, out, _ = run(capsys, "workbench", "sessions", "history")
    assert code == 0
    assert session_id in out
    assert "ended" in out

    code, _, err = run(capsys, "workbench", "sessions", "get", "nosuchid")
    assert code == 1
    assert "NotFoundError" in err
    code, _, err = run(capsys, "workbench", "sessions", "history", "--begin", "yesterday")
    assert code == 2
    assert "begin" in err


def run_sessions(capsys: pytest.CaptureFixture[str]) -> list[Session]:
    listed = run_json(capsys, "workbench", "sessions", "list")["sessions"]
    return [Session(id=s["id"], name=s["name"]) for s in listed]


def test_jobs_get_output_and_a_failed_tail(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_json(
        capsys, "workbench", "jobs", "launch", "--name", "o", "--exe", "R", "--wait", "--", *FAST
    )["job"]["id"]
    got = run_json(capsys, "workbench", "jobs", "get", done)
    assert got["state"] == "Finished"
    assert got["job"]["exit_code"] == 0
    code, out, _ = run(capsys, "workbench", "jobs", "get", done)
    assert code == 0
    assert "Finished" in out

    # An ended job: all of its output, streams apart, at once.
    code, out, err = run(capsys, "workbench", "jobs", "output", done)
    assert code == 0
    assert out == env.workbench.jobs[done].channel_text("stdout")
    assert err == env.workbench.jobs[done].channel_text("stderr")
    data = run_json(capsys, "workbench", "jobs", "output", done)
    assert data["complete"] is True
    assert data["stdout"] == out

    # A running job: what it wrote so far, a note on stderr, and it keeps running.
    long_id = run_json(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "o-long",
        "--exe",
        "R",
        "--",
        "--emu-chunks=300",
        "--emu-interval=0.1",
    )["job"]["id"]
    run_json(capsys, "workbench", "jobs", "wait", long_id, "--until", "Running")
    data = run_json(capsys, "workbench", "jobs", "output", long_id, "--read-for", "0.5")
    assert data["complete"] is False
    assert data["state"] == "Running"
    assert env.workbench.jobs[long_id].status == "Running"
    code, _, err = run(capsys, "workbench", "jobs", "output", long_id, "--read-for", "0.3")
    assert code == 0
    assert "still Running" in err
    assert f"aiocompute workbench jobs tail {long_id}" in err
    run(capsys, "workbench", "jobs", "stop", long_id, "--force")

    # Tailing a job that fails exits 3, as a wait does, and says why on stderr.
    failing = run_json(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "f",
        "--exe",
        "R",
        "--",
        *FAST,
        "--emu-fail",
    )["job"]["id"]
    code, out, err = run(capsys, "workbench", "jobs", "tail", failing)
    assert code == 3
    assert "stdout line 0" in out
    assert "UnreachableState" in err
    code, _, err = run(capsys, "workbench", "jobs", "tail", failing, "--timeout", "0.01")
    assert code == 3


def test_audited_jobs(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys,
        "workbench",
        "audited-jobs",
        "launch",
        "--name",
        "audit",
        "--exe",
        "R",
        "--wait",
        "--",
        *FAST,
    )
    assert data["error"] is None
    job_id = data["job"]["id"]
    assert job_id in env.workbench.audited_jobs
    assert run_json(capsys, "workbench", "audited-jobs", "get", job_id)["state"] == "Finished"
    output = run_json(capsys, "workbench", "audited-jobs", "output", job_id)
    assert output["complete"] is True
    # A finished audited job's output comes from the audit store in one piece, both
    # streams together (the API does not tell them apart there).
    assert "stdout line 0" in output["stdout"]
    assert "stderr line 1" in output["stdout"]
    tailed = run_ndjson(capsys, "workbench", "audited-jobs", "tail", job_id)
    assert tailed[-1]["type"] == "end"
    assert tailed[-1]["state"] == "Finished"
    details = run_json(capsys, "workbench", "audited-jobs", "details", job_id)
    assert details["audited_job_id"] == job_id
    code, out, _ = run(capsys, "workbench", "audited-jobs", "details", job_id)
    assert code == 0
    assert "script checksum" in out


def test_users_and_compute_envs(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = run_json(capsys, "workbench", "compute-envs")["compute_envs"]
    names = {c["name"] for c in envs["clusters"]}
    assert "Local" in names
    code, out, _ = run(capsys, "workbench", "compute-envs")
    assert code == 0
    assert "Local" in out
    # Users need an admin token.
    code, _, err = run(capsys, "workbench", "users")
    assert code == 1
    assert "AuthenticationError" in err
    monkeypatch.setenv("WORKBENCH_API_KEY", "admin-token")
    users = run_json(capsys, "workbench", "users")["users"]
    assert "alice" in {u["username"] for u in users}
    code, out, _ = run(capsys, "workbench", "users")
    assert code == 0
    assert "alice" in out


def test_ctrl_c_on_launch_tail_names_the_stop_command(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C comes out of the stream

    monkeypatch.setattr("aiocompute.cli._workbench_jobs._stream", interrupted)
    code, out, err = run(
        capsys, "workbench", "audited-jobs", "launch", "--name", "i", "--exe", "R", "--tail"
    )
    assert code == 130
    job_id = out.split()[3]  # "launched audited job <id> ..."
    assert job_id in env.workbench.audited_jobs
    assert err.strip().endswith(
        f"audited job {job_id} keeps running; stop it with: "
        f"aiocompute workbench audited-jobs stop {job_id}"
    )
    run(capsys, "workbench", "audited-jobs", "stop", job_id, "--force")


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (BrokenPipeError(), 141),
        (BaseExceptionGroup("progress", [BrokenPipeError()]), 141),
        (BaseExceptionGroup("waits", [BaseExceptionGroup("one", [BrokenPipeError()])]), 141),
        (BaseExceptionGroup("waits", [KeyboardInterrupt()]), 130),
    ],
)
def test_a_closed_pipe_or_ctrl_c_from_a_task_group(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    code: int,
) -> None:
    """Raised inside a task group (a wait's progress, a fan-out), they come out grouped:
    the same exit codes, as quietly."""

    async def failing(*args: object) -> int:
        raise raised

    monkeypatch.setattr("aiocompute.cli._app._run", failing)
    monkeypatch.setattr("aiocompute.cli._app._silence_stdout", lambda: None)
    assert run(capsys, "version") == (code, "", "")


def test_a_group_with_other_errors_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = BaseExceptionGroup("mixed", [BrokenPipeError(), RuntimeError("bug")])

    async def failing(*args: object) -> int:
        raise mixed

    monkeypatch.setattr("aiocompute.cli._app._run", failing)
    with pytest.raises(BaseExceptionGroup):
        main(["version"])


def test_wait_until_done_takes_any_end(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job = run_json(
        capsys,
        "workbench",
        "jobs",
        "launch",
        "--name",
        "f",
        "--exe",
        "R",
        "--",
        *FAST,
        "--emu-fail",
    )["job"]["id"]
    entry = run_json(capsys, "workbench", "jobs", "wait", job, "--until", "DONE")["jobs"][0]
    assert (entry["state"], entry["error"]) == ("Failed", None)
    code, _, err = run(capsys, "workbench", "jobs", "wait", job, "--until", "finished")
    assert code == 3
    assert "Failed" in err
