"""What scripts rely on, checked on the real ``aiocompute`` command in a child process against
an emulator served from a background thread: a closed pipe (``... | head -2``), Ctrl-C while
waiting or tailing, and ``--json`` output of a tail streamed line by line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiocompute.cli import main
from aiocompute.emulator import Emulator

pytestmark = [pytest.mark.emulator(seed=23), pytest.mark.usefixtures("interruptible")]

#: A job that writes a line every 0.1 s for 30 s: far longer than any test here waits.
LONG = ["--emu-chunks=300", "--emu-interval=0.1", "--emu-stderr-every=5", "--emu-pending=0.02"]
#: Generous: a child's start (imports) can take seconds on a loaded machine.
DEADLINE = 60


def _command() -> list[str]:
    script = Path(sys.executable).with_name("aiocompute")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from aiocompute.cli import main; sys.exit(main())"]


@pytest.fixture
def child_env(threaded_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the child command, and of main() calls in this process."""
    values = {
        "WORKBENCH_SERVER": threaded_emulator.workbench_url,
        "WORKBENCH_API_KEY": "user-token",
        "LAKESAIL_BASE_URL": threaded_emulator.lakesail_url,
        "LAKESAIL_API_TOKEN": "lakesail-token",
        "ET_ENGINE_URL": threaded_emulator.etengine_url,
        "ET_ENGINE_API_KEY": "et-key",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("RS_SESSION_RPC_COOKIE", "PWB_SESSION_RUNTIME_DIR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, **values}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    data: dict[str, object] = json.loads(out)
    return data


def _launch(capsys: pytest.CaptureFixture[str], *job_args: str) -> str:
    argv = ["workbench", "jobs", "launch", "--name", "cli-script", "--exe", "R", "--json"]
    capsys.readouterr()
    assert main([*argv, "--", *job_args]) == 0
    job = json.loads(capsys.readouterr().out)["job"]
    job_id: str = job["id"]
    return job_id


@pytest.fixture
def spawn(child_env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by the test; any still running at the end is killed."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait(DEADLINE)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _start(
    spawn: list[subprocess.Popen[str]], env: dict[str, str], *argv: str
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [*_command(), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    spawn.append(child)
    return child


def test_a_closed_pipe_exits_141_quietly(
    threaded_emulator: Emulator,
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``aiocompute workbench jobs tail ID | head -2``: once head has its two lines and
    leaves, the next write finds the pipe closed: exit 141 (what a shell reports for a
    process killed by SIGPIPE), no traceback, no "Exception ignored"."""
    job_id = _launch(capsys, *LONG)
    tail = _start(spawn, child_env, "workbench", "jobs", "tail", job_id)
    assert tail.stdout is not None
    head = subprocess.Popen(["head", "-2"], stdin=tail.stdout, stdout=subprocess.PIPE, text=True)
    tail.stdout.close()  # head alone reads it now: when head exits, the pipe is closed
    lines, _ = head.communicate(timeout=DEADLINE)
    assert len(lines.splitlines()) == 2
    assert lines.startswith(f"stdout line 0 of job {job_id}")
    assert tail.wait(DEADLINE) == 141
    assert tail.stderr is not None
    err = tail.stderr.read()
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert "Broken pipe" not in err
    # The tail stopped because of the pipe, long before the job ended.
    assert threaded_emulator.workbench.jobs[job_id].status == "Running"
    assert main(["workbench", "jobs", "stop", job_id, "--force"]) == 0


def test_a_closed_pipe_in_json_mode_exits_141(
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _launch(capsys, *LONG)
    tail = _start(spawn, child_env, "workbench", "jobs", "tail", job_id, "--json")
    assert tail.stdout is not None
    first = json.loads(tail.stdout.readline())
    assert first["type"] == "output"
    tail.stdout.close()
    assert tail.wait(DEADLINE) == 141
    assert tail.stderr is not None
    assert "Traceback" not in tail.stderr.read()
    assert main(["workbench", "jobs", "stop", job_id, "--force"]) == 0


def test_json_tail_streams_each_chunk_as_it_arrives(
    threaded_emulator: Emulator,
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --json, tail prints one object per line as chunks come, not one document at
    the end: lines are read here while the job is still running."""
    job_id = _launch(capsys, *LONG)
    tail = _start(spawn, child_env, "workbench", "jobs", "tail", job_id, "--json")
    assert tail.stdout is not None
    early = [json.loads(tail.stdout.readline()) for _ in range(12)]
    assert threaded_emulator.workbench.jobs[job_id].status == "Running"
    assert [line["type"] for line in early] == ["output"] * 12
    assert {line["output_type"] for line in early} == {"stdout", "stderr"}
    assert early[0]["output"].startswith(f"stdout line 0 of job {job_id}")
    # Killed while tailed: the stream ends, an "end" line says how, exit code 3.
    assert main(["workbench", "jobs", "stop", job_id, "--force"]) == 0
    rest, err = tail.communicate(timeout=DEADLINE)
    end = json.loads(rest.splitlines()[-1])
    assert end["type"] == "end"
    assert end["state"] == "Killed"
    assert end["error"]["type"] == "UnreachableState"
    assert tail.returncode == 3
    assert "UnreachableState" in err


def _interrupt(child: subprocess.Popen[str]) -> tuple[int, str]:
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=DEADLINE)
    return child.returncode, err


def test_ctrl_c_on_tail_says_the_job_keeps_running_and_how_to_stop_it(
    threaded_emulator: Emulator,
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _launch(capsys, *LONG)
    tail = _start(spawn, child_env, "workbench", "jobs", "tail", job_id)
    assert tail.stdout is not None
    assert tail.stdout.readline().startswith("stdout line 0")  # it is tailing
    code, err = _interrupt(tail)
    assert code == 130
    assert "Traceback" not in err
    assert f"job {job_id} keeps running" in err
    assert f"aiocompute workbench jobs stop {job_id}" in err
    # One line of its own (the others are the job's stderr), the last one.
    ours = [line for line in err.splitlines() if line.startswith("aiocompute:")]
    assert ours == [err.splitlines()[-1]]
    # It does keep running: Ctrl-C only stopped the tail.
    assert threaded_emulator.workbench.jobs[job_id].status == "Running"
    assert main(["workbench", "jobs", "stop", job_id, "--force"]) == 0


def test_ctrl_c_on_a_session_wait(
    threaded_emulator: Emulator,
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    launched = _json(capsys, "workbench", "sessions", "launch", "RStudio", "--name", "emu-stuck")
    session_id = launched["sessions"][0]["id"]  # type: ignore[index]
    wait = _start(spawn, child_env, "workbench", "sessions", "wait", session_id)
    assert wait.stdout is not None
    assert "-> pending" in wait.stdout.readline()  # it is waiting
    code, err = _interrupt(wait)
    assert code == 130
    assert "Traceback" not in err
    assert f"session {session_id} keeps running" in err
    assert f"aiocompute workbench sessions stop {session_id}" in err
    assert threaded_emulator.workbench.sessions[session_id].state == "pending"
    assert main(["workbench", "sessions", "stop", session_id, "--force"]) == 0


def test_ctrl_c_on_a_lakesail_wait_names_the_close_command(
    child_env: dict[str, str],
    spawn: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    created = _json(capsys, "lakesail", "sessions", "create", "--name", "cli-emu-stuck")
    session_id = created["session"]["id"]  # type: ignore[index]
    wait = _start(spawn, child_env, "lakesail", "sessions", "wait", session_id)
    assert wait.stdout is not None
    assert "-> pending" in wait.stdout.readline()
    code, err = _interrupt(wait)
    assert code == 130
    assert f"close it with: aiocompute lakesail sessions close {session_id}" in err
    assert main(["lakesail", "sessions", "close", session_id]) == 0
