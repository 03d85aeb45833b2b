"""``aiocompute qiskit jobs ...`` run in-process with ``main([...])`` against an emulator
serving from a background thread."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiocompute.cli import main
from aiocompute.cli._app import build_parser
from aiocompute.emulator import Emulator, QiskitEmulatorConfig, QiskitJobsConfig

QISKIT_KEY = "qk-secret-Jb19-apikey"
INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/cli-jobs::"
PARAMS = '{"pubs": [["c", null, 32]], "version": 2}'

pytestmark = pytest.mark.emulator(
    seed=6,
    qiskit=QiskitEmulatorConfig(
        api_keys={QISKIT_KEY: "user-alice"},
        instances=frozenset({INSTANCE}),
        jobs=QiskitJobsConfig(queue_delay=(0.05, 0.1), run_delay=(0.05, 0.1)),
    ),
)

JOB_COMMANDS = {
    "qiskit jobs run",
    "qiskit jobs get",
    "qiskit jobs list",
    "qiskit jobs wait",
    "qiskit jobs results",
    "qiskit jobs logs",
    "qiskit jobs cancel",
}


@pytest.fixture
def env(command_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    values = {
        "QISKIT_IBM_TOKEN": QISKIT_KEY,
        "QISKIT_IBM_INSTANCE": INSTANCE,
        "AIOCOMPUTE_QISKIT_BASE_URL": command_emulator.qiskit_url,
        "QISKIT_IBM_IAM_URL": command_emulator.qiskit_iam_url,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("COLUMNS", raising=False)
    return command_emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert QISKIT_KEY not in captured.out
    assert QISKIT_KEY not in captured.err
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got, out, err = run(capsys, *argv, "--json")
    assert got == code, (out, err)
    return json.loads(out)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_job_commands_exist_with_examples() -> None:
    commands = {" ".join(path): parser for path, parser in _walk(build_parser())}
    assert set(commands) >= JOB_COMMANDS
    for path in JOB_COMMANDS:
        text = commands[path].format_help()
        assert "--json" in text
        assert "aiocompute " + path in text.split("Example", 1)[1], path


def test_run_wait_get_results_logs_list(
    env: Emulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    params_file = tmp_path / "pubs.json"
    params_file.write_text(PARAMS)
    before = env.stats["qiskit.run_job"]
    data = run_json(
        capsys,
        "qiskit",
        "jobs",
        "run",
        "sampler",
        "ibm_kyiv",
        "--params",
        f"@{params_file}",
        "--tag",
        "cli-1",
        "--tag",
        "cli-2",
        "--wait",
    )
    assert env.stats["qiskit.run_job"] - before == 1
    assert data["state"] == "Completed"
    assert data["error"] is None
    jid = data["job"]["id"]
    assert env.qiskit.jobs[jid].tags[:2] == ["cli-1", "cli-2"]  # then the owner label, the token
    assert env.qiskit.jobs[jid].params == json.loads(PARAMS)

    got = run_json(capsys, "qiskit", "jobs", "get", jid, "--params")["job"]
    assert got["status"] == "Completed"
    assert got["params"] == json.loads(PARAMS)
    code, out, _ = run(capsys, "qiskit", "jobs", "get", jid)
    assert code == 0
    assert "Completed" in out
    assert "cli-1, cli-2" in out

    result = run_json(capsys, "qiskit", "jobs", "results", jid)["result"]
    assert result["__type__"] == "PrimitiveResult"
    target = tmp_path / "result.json"
    saved = run_json(capsys, "qiskit", "jobs", "results", jid, "--output", str(target))
    assert saved["bytes"] == target.stat().st_size
    assert json.loads(target.read_bytes()) == result
    assert not (tmp_path / "result.json.part").exists()

    code, out, _ = run(capsys, "qiskit", "jobs", "logs", jid)
    assert code == 0
    assert f"Job {jid} queued on ibm_kyiv" in out

    listed = run_json(capsys, "qiskit", "jobs", "list", "--tag", "cli-2", "--done")["jobs"]
    assert [j["id"] for j in listed] == [jid]
    assert run_json(capsys, "qiskit", "jobs", "list", "--tag", "cli-2", "--pending")["jobs"] == []
    code, out, _ = run(capsys, "qiskit", "jobs", "list", "--tag", "cli-1")
    assert code == 0
    assert jid in out


def test_failed_job_waits_exit_3_and_cancel(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = run_json(
        capsys,
        "qiskit",
        "jobs",
        "run",
        "estimator",
        "ibm_fez",
        "--params",
        '{"emu_outcome": "fail"}',
    )["job"]["id"]
    waited = run_json(capsys, "qiskit", "jobs", "wait", failing, code=3)["jobs"][0]
    assert waited["state"] == "Failed"
    assert waited["error"]["type"] == "UnreachableState"
    stuck = run_json(
        capsys,
        "qiskit",
        "jobs",
        "run",
        "sampler",
        "ibm_fez",
        "--params",
        '{"emu_outcome": "stuck"}',
    )["job"]["id"]
    code, _, err = run(capsys, "qiskit", "jobs", "wait", stuck, "--timeout", "0.3")
    assert code == 3
    assert "WaitTimeout" in err
    assert run_json(capsys, "qiskit", "jobs", "cancel", stuck) == {
        "cancelled": [stuck],
        "errors": {},
    }
    assert env.qiskit.jobs[stuck].status == "Cancelled"
    # A job that has ended cannot be cancelled: the command says so and exits 1.
    again = run_json(capsys, "qiskit", "jobs", "cancel", stuck, code=1)
    assert again["cancelled"] == []
    assert again["errors"][stuck]["type"] == "ConflictError"


def test_bad_input_is_a_usage_error(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "qiskit", "jobs", "run", "sampler", "ibm_kyiv", "--params", "[1]")
    assert code == 2
    assert "--params must be a JSON object" in err
    code, _, err = run(capsys, "qiskit", "jobs", "wait", "x", "--until", "sleeping")
    assert code == 2
    assert "unknown job state 'sleeping'" in err
    code, _, err = run(capsys, "qiskit", "jobs", "get", "../sessions")
    assert code == 2
    code, _, err = run(capsys, "qiskit", "jobs", "results", "no-such-job")
    assert code == 1
    assert "job 'no-such-job' not found" in err


def test_ctrl_c_on_a_qiskit_wait_names_the_command_that_stops_it(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C comes out of a wait

    monkeypatch.setattr("aiocompute.cli._qiskit.wait_and_show", interrupted)
    code, _, err = run(capsys, "qiskit", "jobs", "wait", "job-1", "job-2")
    assert code == 130
    assert err.strip() == (
        "aiocompute: interrupted; 2 jobs keep running (job-1, job-2); cancel them with: "
        "aiocompute qiskit jobs cancel job-1 job-2"
    )
    code, _, err = run(capsys, "qiskit", "sessions", "wait", "s-1")
    assert code == 130
    assert err.strip() == (
        "aiocompute: interrupted; session s-1 keeps running; close it with: "
        "aiocompute qiskit sessions close s-1"
    )
