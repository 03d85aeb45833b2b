"""The ``aiocompute qiskit / lakesail / etengine`` command groups, run in-process with
``main([...])`` against an emulator serving from a background thread; plus the emulator
command's listing of those APIs and the ET Engine part of the demo."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from aiocompute.cli import main
from aiocompute.cli._app import UsageError, build_parser
from aiocompute.cli._etengine import parse_args_pairs
from aiocompute.emulator import (
    Emulator,
    ETEngineEmulatorConfig,
    LakeSailEmulatorConfig,
    QiskitEmulatorConfig,
)
from helpers import pass_time

# Credentials only this emulator accepts; no captured output may ever contain one.
QISKIT_KEY = "qk-secret-Hv27-apikey"
LAKESAIL_TOKEN = "ls-secret-Pw55-token"
ET_KEY = "et-secret-Rb48-apikey"
WRONG = "wrong-secret-Kq61-value"
SECRETS = (QISKIT_KEY, LAKESAIL_TOKEN, ET_KEY, WRONG)
INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/cli::"

QISKIT_ENV = (
    "QISKIT_IBM_TOKEN",
    "QISKIT_IBM_INSTANCE",
    "QISKIT_IBM_URL",
    "AIOCOMPUTE_QISKIT_BASE_URL",
    "QISKIT_IBM_IAM_URL",
)
LAKESAIL_ENV = ("LAKESAIL_API_TOKEN", "LAKESAIL_BASE_URL")
ET_ENV = ("ET_ENGINE_API_KEY", "ET_ENGINE_URL")


pytestmark = pytest.mark.emulator(
    seed=5,
    qiskit=QiskitEmulatorConfig(
        api_keys={QISKIT_KEY: "user-alice"}, instances=frozenset({INSTANCE})
    ),
    lakesail=LakeSailEmulatorConfig(tokens={LAKESAIL_TOKEN: ("MALICE", "member")}),
    # Batches take about half a second: long enough for a short --timeout to pass first.
    etengine=ETEngineEmulatorConfig(api_keys={ET_KEY: "user-1"}, run_delay=(0.3, 0.4)),
)


@pytest.fixture
def env(command_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Every API configured through the environment, as users are told to do."""
    values = {
        "QISKIT_IBM_TOKEN": QISKIT_KEY,
        "QISKIT_IBM_INSTANCE": INSTANCE,
        "AIOCOMPUTE_QISKIT_BASE_URL": command_emulator.qiskit_url,
        "QISKIT_IBM_IAM_URL": command_emulator.qiskit_iam_url,
        "LAKESAIL_API_TOKEN": LAKESAIL_TOKEN,
        "LAKESAIL_BASE_URL": command_emulator.lakesail_url,
        "ET_ENGINE_API_KEY": ET_KEY,
        "ET_ENGINE_URL": command_emulator.etengine_url,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("COLUMNS", raising=False)
    return command_emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command; check that no credential leaked into what it printed."""
    code = main(list(argv))
    captured = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in captured.out
        assert secret not in captured.err
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got, out, err = run(capsys, *argv, "--json")
    assert got == code, (out, err)
    return json.loads(out)  # exactly one JSON document


# --------------------------------------------------------------------------- help


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


NEW_COMMANDS = {
    "qiskit sessions create",
    "qiskit sessions get",
    "qiskit sessions close",
    "qiskit sessions drain",
    "qiskit sessions wait",
    "lakesail sessions list",
    "lakesail sessions create",
    "lakesail sessions get",
    "lakesail sessions close",
    "lakesail sessions relaunch",
    "lakesail sessions wait",
    "lakesail configs list",
    "lakesail configs create",
    "lakesail configs get",
    "lakesail sessions token",
    "etengine batches list",
    "etengine batches status",
    "etengine batches wait",
    "etengine batches delete",
    "etengine batches submit",
    "etengine jobs list",
    "etengine jobs get",
}


def test_every_new_command_has_help_with_an_example() -> None:
    commands = {" ".join(path): parser for path, parser in _walk(build_parser())}
    assert set(commands) >= NEW_COMMANDS
    for path, parser in commands.items():
        if path.split(" ")[0] not in ("qiskit", "lakesail", "etengine"):
            continue
        text = parser.format_help()
        assert "Example" in text, path
        assert "--json" in text, path
        # The example is a real command line of this very command.
        assert "aiocompute " + path in text.split("Example", 1)[1], path


@pytest.mark.parametrize(
    ("group", "names"),
    [
        ("qiskit", ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "--iam-url", "--instance")),
        ("lakesail", ("LAKESAIL_API_TOKEN", "LAKESAIL_BASE_URL", "--token")),
        ("etengine", ("ET_ENGINE_API_KEY", "ET_ENGINE_URL", "--key")),
    ],
)
def test_group_help_names_flags_and_env_vars(
    capsys: pytest.CaptureFixture[str], group: str, names: tuple[str, ...]
) -> None:
    code, out, _ = run(capsys, group, "--help")
    assert code == 0
    for name in names:
        assert name in out


# --------------------------------------------------------------------------- qiskit


def test_qiskit_create_wait_get_drain_and_close(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    before = env.stats["qiskit.create_session"]
    data = run_json(capsys, "qiskit", "sessions", "create", "ibm_kyiv", "--wait")
    assert env.stats["qiskit.create_session"] - before == 1
    assert data["state"] == "active"
    assert data["error"] is None
    session = data["session"]
    assert session["backend_name"] == "ibm_kyiv"
    assert session["mode"] == "batch"
    assert "raw" not in session
    sid = session["id"]

    got = run_json(capsys, "qiskit", "sessions", "get", sid)["session"]
    assert got["id"] == sid
    code, out, _ = run(capsys, "qiskit", "sessions", "get", sid)
    assert code == 0
    assert "ibm_kyiv" in out
    assert "accepting jobs" in out

    assert run_json(capsys, "qiskit", "sessions", "drain", sid) == {"drained": [sid], "errors": {}}
    waited = run_json(capsys, "qiskit", "sessions", "wait", sid, "--until", "CLOSED")
    assert waited["sessions"][0]["state"] == "closed"
    assert waited["sessions"][0]["error"] is None

    other = run_json(
        capsys, "qiskit", "sessions", "create", "ibm_fez", "--mode", "dedicated", "--max-ttl", "60"
    )["session"]
    assert other["mode"] == "dedicated"
    assert other["max_ttl"] == 60
    code, out, _ = run(capsys, "qiskit", "sessions", "close", other["id"])
    assert code == 0
    assert "closed 1 session(s)" in out
    assert env.qiskit.sessions[other["id"]].state == "closed"


def test_qiskit_human_create_shows_progress(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "qiskit", "sessions", "create", "ibm_torino", "--wait")
    assert code == 0
    assert "open -> active" in out
    assert "RESULT" in out
    assert "\x1b[" not in out  # no terminal escapes when stdout is not a terminal


def test_qiskit_create_leaves_max_ttl_to_the_server_unless_given(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiocompute.qiskit.client import SessionsResource

    asked: list[Any] = []
    create = SessionsResource.create

    async def spy(self: SessionsResource, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("max_ttl"))
        return await create(self, *args, **kwargs)

    monkeypatch.setattr(SessionsResource, "create", spy)
    first = run_json(capsys, "qiskit", "sessions", "create", "ibm_torino")["session"]
    second = run_json(capsys, "qiskit", "sessions", "create", "ibm_torino", "--max-ttl", "90")
    assert asked == [None, 90]  # None: the library sends no max_ttl at all
    assert second["session"]["max_ttl"] == 90
    run(capsys, "qiskit", "sessions", "close", first["id"], second["session"]["id"])


def test_qiskit_wait_timeout_and_unreachable_exit_3(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    stuck = run_json(capsys, "qiskit", "sessions", "create", "emu_stuck")["session"]["id"]
    code, out, err = run(capsys, "qiskit", "sessions", "wait", stuck, "--timeout", "0.3")
    assert code == 3
    assert "timed out" in out
    assert "WaitTimeout" in err
    data = run_json(
        capsys, "qiskit", "sessions", "create", "emu_offline", "--wait", "--timeout", "10", code=3
    )
    assert data["state"] == "closed"
    assert data["error"]["type"] == "UnreachableState"
    run(capsys, "qiskit", "sessions", "close", stuck)


def test_qiskit_errors(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unknown session: the API says no.
    code, _, err = run(capsys, "qiskit", "sessions", "get", "nosuchsession")
    assert code == 1
    assert "NotFoundError" in err
    data = run_json(capsys, "qiskit", "sessions", "close", "nosuchsession", code=1)
    assert data["closed"] == []
    assert data["errors"]["nosuchsession"]["type"] == "NotFoundError"
    # A malformed id is refused before anything is sent.
    code, _, err = run(capsys, "qiskit", "sessions", "get", "a/b")
    assert code == 2
    assert "session_id" in err
    code, _, err = run(capsys, "qiskit", "sessions", "wait", "x", "--until", "ready")
    assert code == 2
    assert "pending_closed" in err  # the valid states are listed
    code, _, err = run(capsys, "qiskit", "sessions", "create", "ibm_kyiv", "--mode", "shared")
    assert code == 2
    # A wrong API key: IAM refuses it (exit 1), without showing it.
    code, out, err = run(capsys, "qiskit", "--token", WRONG, "sessions", "get", "abc")
    assert code == 1
    assert out == ""
    assert "AuthenticationError" in err
    assert len(err.strip().splitlines()) == 1


def test_qiskit_missing_configuration_exits_2(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QISKIT_IBM_TOKEN")
    code, out, err = run(capsys, "qiskit", "sessions", "get", "abc")
    assert (code, out) == (2, "")
    assert "QISKIT_IBM_TOKEN" in err
    error = run_json(capsys, "qiskit", "sessions", "get", "abc", code=2)["error"]
    assert "QISKIT_IBM_TOKEN" in error["message"]
    monkeypatch.delenv("QISKIT_IBM_INSTANCE")
    code, _, err = run(capsys, "qiskit", "sessions", "get", "abc", "--token", QISKIT_KEY)
    assert code == 2
    assert "QISKIT_IBM_INSTANCE" in err


def test_qiskit_flags_instead_of_env(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in QISKIT_ENV:
        monkeypatch.delenv(name, raising=False)
    data = run_json(
        capsys,
        "qiskit",
        "--url",
        env.qiskit_url,
        "--iam-url",
        env.qiskit_iam_url,
        "sessions",
        f"--token={QISKIT_KEY}",
        "--instance",
        INSTANCE,
        "create",
        "ibm_brisbane",
    )
    assert data["session"]["id"]


def test_qiskit_iam_url_setting(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # $QISKIT_IBM_IAM_URL is read by the SDK's client, as for any program using it: a
    # malformed one is a usage error of the command, naming the setting.
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", "iam.example.com/token")
    code, out, err = run(capsys, "qiskit", "sessions", "get", "abc")
    assert (code, out) == (2, "")
    assert "invalid Qiskit Runtime setting: iam_url must be an absolute" in err
    # --iam-url wins over it.
    data = run_json(
        capsys, "qiskit", "--iam-url", env.qiskit_iam_url, "sessions", "create", "ibm_brisbane"
    )
    assert data["session"]["id"]
    # Given empty, it is refused rather than silently replaced.
    code, _, err = run(capsys, "qiskit", "sessions", "get", "abc", "--iam-url", " ")
    assert code == 2
    assert "the --iam-url option is empty; set QISKIT_IBM_IAM_URL instead" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["qiskit", "sessions", "wait", ""],
        ["lakesail", "sessions", "wait", ""],
        ["etengine", "batches", "wait", ""],
    ],
)
def test_waiting_for_an_empty_id_exits_2(
    env: Emulator, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "ids must be non-empty strings" in err
    error = run_json(capsys, *argv, code=2)["error"]
    assert "ids must be non-empty strings" in error["message"]


# --------------------------------------------------------------------------- lakesail


def test_lakesail_sessions_lifecycle(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "lakesail", "sessions", "create", "--name", "cli-etl", "--wait")
    assert data["state"] in ("active", "idle")
    assert data["error"] is None
    sid = data["session"]["id"]
    assert data["session"]["name"] == "cli-etl"

    other = run_json(capsys, "lakesail", "sessions", "create", "--name", "cli-two")["session"]
    assert other["status"] == "pending"
    waited = run_json(capsys, "lakesail", "sessions", "wait", sid, other["id"])["sessions"]
    assert [w["id"] for w in waited] == [sid, other["id"]]
    assert all(w["state"] in ("active", "idle") and w["error"] is None for w in waited)

    listed = run_json(capsys, "lakesail", "sessions", "list")["sessions"]
    assert {sid, other["id"]} <= {s["id"] for s in listed}
    assert len(run_json(capsys, "lakesail", "sessions", "list", "--limit", "1")["sessions"]) == 1
    code, out, _ = run(capsys, "lakesail", "sessions", "list")
    assert code == 0
    assert "cli-two" in out

    got = run_json(capsys, "lakesail", "sessions", "get", sid)["session"]
    assert got["id"] == sid
    code, out, _ = run(capsys, "lakesail", "sessions", "get", sid)
    assert code == 0
    assert "grpc endpoint" in out

    assert run_json(capsys, "lakesail", "sessions", "close", sid) == {
        "closed": [sid],
        "errors": {},
    }
    closed = run_json(capsys, "lakesail", "sessions", "list", "--status", "closed")["sessions"]
    assert sid in {s["id"] for s in closed}
    assert all(s["status"] == "closed" for s in closed)
    waited = run_json(capsys, "lakesail", "sessions", "wait", sid, "--until", "closed")
    assert waited["sessions"][0]["state"] == "closed"

    relaunched = run_json(capsys, "lakesail", "sessions", "relaunch", sid, "--wait")
    assert relaunched["session"]["id"] != sid
    assert relaunched["state"] in ("active", "idle")
    run(capsys, "lakesail", "sessions", "close", other["id"], relaunched["session"]["id"])


def test_lakesail_configs_list(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    configs = run_json(capsys, "lakesail", "configs", "list")["workload_configs"]
    assert configs
    assert all("raw" not in c for c in configs)
    code, out, _ = run(capsys, "lakesail", "configs", "list")
    assert code == 0
    assert configs[0]["id"] in out
    # A session on a named config.
    session = run_json(
        capsys, "lakesail", "sessions", "create", "--workload-config", configs[0]["id"]
    )["session"]
    assert env.lakesail.sessions[session["id"]].workload_config_id == configs[0]["id"]
    run(capsys, "lakesail", "sessions", "close", session["id"])


def test_lakesail_waits_exit_3(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys, "lakesail", "sessions", "create", "--name", "cli-emu-fail", "--wait", code=3
    )
    assert data["state"] == "failed"
    assert data["error"]["type"] == "UnreachableState"
    stuck = run_json(capsys, "lakesail", "sessions", "create", "--name", "cli-emu-stuck")
    sid = stuck["session"]["id"]
    code, out, err = run(capsys, "lakesail", "sessions", "wait", sid, "--timeout", "0.3")
    assert code == 3
    assert "timed out" in out
    assert "WaitTimeout" in err
    run(capsys, "lakesail", "sessions", "close", sid)


def test_lakesail_errors(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "lakesail", "sessions", "get", "lowercase")
    assert code == 2
    assert "session_id" in err
    code, _, err = run(capsys, "lakesail", "sessions", "wait", "S1", "--until", "running")
    assert code == 2
    assert "ready" in err
    code, _, err = run(capsys, "lakesail", "sessions", "get", "SNOSUCH")
    assert code == 1
    assert "NotFoundError" in err
    code, _, err = run(capsys, "lakesail", "sessions", "list", "--token", WRONG)
    assert code == 1
    assert "AuthenticationError" in err
    monkeypatch.delenv("LAKESAIL_API_TOKEN")
    code, out, err = run(capsys, "lakesail", "sessions", "list")
    assert (code, out) == (2, "")
    assert "LAKESAIL_API_TOKEN" in err
    assert run_json(capsys, "lakesail", "configs", "list", code=2)["error"]["type"] == "UsageError"


# --------------------------------------------------------------------------- etengine


def _submit(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    data = run_json(capsys, "etengine", "batches", "submit", "tool-sim", *argv)
    batch: dict[str, Any] = data["batch"]
    assert batch["batch_id"]
    return batch


def test_etengine_submit_status_jobs_and_wait(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = _submit(
        capsys, "--var", "seed:=1", "--var", "seed:=2", "--var", "name=a", "--var", "name=b"
    )
    batch_id = batch["batch_id"]
    assert batch["n_jobs"] == 2
    jobs = env.etengine.batches[batch_id].jobs
    assert [j.args for j in jobs] == [{"seed": 1, "name": "a"}, {"seed": 2, "name": "b"}]

    failing = _submit(capsys, "--var", "emu-fail:=false", "--var", "emu-fail:=true")["batch_id"]
    pass_time(0.1)  # the jobs are registered (10-30 ms) and listed

    # Status reads of several batches are fanned out (one request each).
    before = env.stats["etengine.get_batch"]
    data = run_json(capsys, "etengine", "batches", "status", batch_id, failing)
    assert env.stats["etengine.get_batch"] - before == 2
    entries = {e["id"]: e for e in data["batches"]}
    assert entries[batch_id]["total"] == 2
    assert set(entries[batch_id]["counts"]) >= {"running", "succeeded", "failed"}
    code, out, _ = run(capsys, "etengine", "batches", "status", batch_id)
    assert code == 0
    assert "SUCCEEDED" in out
    assert batch_id in out

    listed = run_json(capsys, "etengine", "batches", "list")["batches"]
    assert {batch_id, failing} <= {b["batch_id"] for b in listed}
    code, out, _ = run(capsys, "etengine", "batches", "list")
    assert code == 0
    assert "tool-sim" in out

    job_list = run_json(capsys, "etengine", "jobs", "list", batch_id)["jobs"]
    assert len(job_list) == 2
    job_id = job_list[0]["job_id"]
    code, out, _ = run(capsys, "etengine", "jobs", "list", batch_id)
    assert code == 0
    assert "seed=1" in out

    waited = run_json(capsys, "etengine", "batches", "wait", batch_id, failing, code=3)
    by_id = {w["id"]: w for w in waited["batches"]}
    assert by_id[batch_id]["state"] == "succeeded"
    assert by_id[batch_id]["error"] is None
    assert by_id[failing]["state"] == "failed"
    assert by_id[failing]["error"]["type"] == "UnreachableState"
    assert run(capsys, "etengine", "batches", "wait", batch_id)[0] == 0

    job = run_json(capsys, "etengine", "jobs", "get", batch_id, job_id)
    assert job["state"] == "succeeded"
    assert job["job"]["job_id"] == job_id
    code, out, _ = run(capsys, "etengine", "jobs", "get", batch_id, job_id)
    assert code == 0
    assert "succeeded" in out
    assert "seed=1" in out


def test_etengine_submit_wait_and_delete(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    ok = run_json(
        capsys, "etengine", "batches", "submit", "tool-hello", "--arg", "greeting=hi", "--wait"
    )
    assert ok["state"] == "succeeded"
    assert ok["status"]["counts"]["succeeded"] == 1
    batch_id = ok["batch"]["batch_id"]
    assert env.etengine.batches[batch_id].jobs[0].args == {"greeting": "hi"}

    failed = run_json(
        capsys,
        "etengine",
        "batches",
        "submit",
        "tool-sim",
        "--var",
        "emu-fail:=true",
        "--wait",
        code=3,
    )
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "UnreachableState"

    slow = _submit(capsys, "--cpu", "2", "--memory", "512")["batch_id"]
    code, out, err = run(capsys, "etengine", "batches", "wait", slow, "--timeout", "0.1")
    assert code == 3
    assert "timed out" in out
    assert "WaitTimeout" in err

    data = run_json(capsys, "etengine", "batches", "delete", batch_id, slow)
    assert data == {"deleted": [batch_id, slow], "missing": [], "errors": {}}
    assert batch_id not in env.etengine.batches
    code, _, err = run(capsys, "etengine", "batches", "status", batch_id)
    assert code == 1
    assert "NotFoundError" in err


def test_etengine_errors(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(
        capsys,
        "etengine",
        "batches",
        "submit",
        "tool-sim",
        "--var",
        "a=1",
        "--var",
        "b=1",
        "--var",
        "b=2",
    )
    assert code == 2
    assert "--var" in err
    code, _, err = run(capsys, "etengine", "batches", "submit", "tool-sim", "--var", "a:=oops")
    assert code == 2
    assert "JSON" in err
    code, _, err = run(capsys, "etengine", "batches", "submit", "tool-sim", "--arg", "novalue")
    assert code == 2
    assert "NAME=VALUE" in err
    code, _, err = run(capsys, "etengine", "batches", "wait", "b1", "--until", "over")
    assert code == 2
    assert "succeeded" in err
    code, _, err = run(capsys, "etengine", "jobs", "get", "nosuchbatch", "nosuchjob")
    assert code == 1
    assert "NotFoundError" in err
    # A wrong key: the API says no (exit 1), in one line, without the key.
    code, out, err = run(capsys, "etengine", "batches", "list", "--key", WRONG)
    assert (code, out) == (1, "")
    assert "AuthenticationError" in err
    assert len(err.strip().splitlines()) == 1
    # Given where it does not belong, argparse would quote it back: it is scrubbed.
    code, _, err = run(capsys, "version", f"--key={ET_KEY}")
    assert code == 2
    assert "***" in err
    monkeypatch.delenv("ET_ENGINE_API_KEY")
    code, out, err = run(capsys, "etengine", "batches", "list")
    assert (code, out) == (2, "")
    assert "ET_ENGINE_API_KEY" in err
    error = run_json(capsys, "etengine", "jobs", "list", "b1", code=2)["error"]
    assert "ET_ENGINE_API_KEY" in error["message"]


def test_parse_args_pairs() -> None:
    assert parse_args_pairs(["a=1", "b:=1", "c:=[1, 2]", "d=x=y", "e="], "--var") == [
        ("a", "1"),
        ("b", 1),
        ("c", [1, 2]),
        ("d", "x=y"),
        ("e", ""),
    ]
    for bad in ("=1", "noequals", ":=1"):
        with pytest.raises(UsageError):
            parse_args_pairs([bad], "--var")


# --------------------------------------------------------------------------- emulator and demo


def test_emulator_lists_every_api(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "emulator", "--port", "0", "--duration", "0.1")
    assert code == 0
    for text in (
        "/qiskit/api",
        "/qiskit/iam/identity/token",
        "/lakesail/api/v1",
        "/etengine/v1",
        "QISKIT_IBM_IAM_URL",
        "QISKIT_IBM_INSTANCE",
        "LAKESAIL_API_TOKEN",
        "ET_ENGINE_API_KEY",
        "qiskit-key",
        "lakesail-token",
        "et-key",
    ):
        assert text in out, text
    data = run_json(capsys, "emulator", "--port", "0", "--duration", "0.1")
    apis = data["apis"]
    assert apis["qiskit"].endswith("/qiskit/api")
    assert apis["qiskit_iam"].endswith("/qiskit/iam/identity/token")
    assert apis["lakesail"].endswith("/lakesail/api/v1")
    assert apis["etengine"].endswith("/etengine/v1")
    assert data["tokens"]["etengine"]["et-key"] == {"user": "user-1"}
    assert data["tokens"]["lakesail"]["lakesail-token"]["principal"] == "MALICE"
    assert data["tokens"]["qiskit"]["qiskit-key"] == {"user": "user-alice"}
    assert data["qiskit_instances"]


@pytest.mark.slow
def test_demo_fans_out_etengine_batches(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, "demo", "--quick")
    assert report["ok"] is True
    et = report["fan_out"]["etengine"]
    assert et["expected"] is True
    steps = et["steps"]
    assert steps["batches.create"]["ok"] == et["batches"] == 3
    assert steps["batches.status"]["requests"] == 3
    assert steps["jobs.get"]["ok"] == et["jobs"] == 6
    assert steps["batches.wait"]["failed"] == 1
    assert (et["succeeded_jobs"], et["failed_jobs"], et["unreachable"]) == (5, 1, 1)
    assert et["requests"] == sum(et["requests_by_method"].values())
    assert et["requests_by_method"]["create_batch"] == 3
    code, out, _ = run(capsys, "demo", "--quick")
    assert code == 0
    for text in ("ET Engine fan-out", "batches.status", "jobs.get", "UnreachableState"):
        assert text in out
    assert "\x1b[" not in out


# --------------------------------------------------------------------------- issue 14 commands


def test_lakesail_session_token(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    sid = run_json(capsys, "lakesail", "sessions", "create", "--name", "cli-tok", "--wait")[
        "session"
    ]["id"]
    data = run_json(capsys, "lakesail", "sessions", "token", sid, "--duration", "600")
    assert data["session_id"] == sid
    assert data["token"].count(".") == 2  # a JWT
    assert data["expires_at"]
    # Human mode: the token alone on stdout (for $(...)), the note on stderr.
    code, out, err = run(capsys, "lakesail", "sessions", "token", sid)
    assert code == 0
    assert out.count("\n") == 1
    assert out.strip().count(".") == 2
    assert sid in err
    assert out.strip() not in err
    code, _, err = run(capsys, "lakesail", "sessions", "token", sid, "--duration", "0")
    assert code == 2
    run(capsys, "lakesail", "sessions", "close", sid)


def test_lakesail_configs_create_and_get(
    env: Emulator, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    settings = tmp_path / "etl.json"
    settings.write_text(json.dumps({"sail": {"executionMode": "standalone"}}))
    created = run_json(
        capsys,
        "lakesail",
        "configs",
        "create",
        "Nightly ETL",
        "--config",
        f"@{settings}",
        "--endpoint-limit",
        "spark_connect=2",
    )["workload_config"]
    assert created["name"] == "Nightly ETL"
    assert created["endpoint_limits"] == {"spark_connect": 2}
    config_id = created["id"]
    got = run_json(capsys, "lakesail", "configs", "get", config_id)["workload_config"]
    assert got["id"] == config_id
    assert got["config"]["sail"]["execution_mode"] == "standalone"
    code, out, _ = run(capsys, "lakesail", "configs", "get", config_id)
    assert code == 0
    assert "Nightly ETL" in out
    assert "standalone" in out
    code, out, _ = run(capsys, "lakesail", "configs", "create", "Inline", "--config", "{}")
    assert code == 0
    assert "created" in out
    # Bad input: said where, exit 2.
    for bad, said in (
        (["--config", "[1]"], "must be a JSON object"),
        (["--config", "{nope"], "not valid JSON"),
        (["--config", f"@{tmp_path / 'missing.json'}"], "cannot read"),
        (["--endpoint-limit", "spark_connect"], "TYPE=N"),
        (["--endpoint-limit", "spark_connect=two"], "TYPE=N"),
    ):
        code, _, err = run(capsys, "lakesail", "configs", "create", "Bad", *bad)
        assert code == 2, bad
        assert said in err
    code, _, err = run(capsys, "lakesail", "configs", "get", "CNOSUCH")
    assert code == 1
    assert "NotFoundError" in err


def test_etengine_listings_show_state_and_status(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _submit(capsys, "--var", "emu-fail:=false", "--var", "emu-fail:=true")["batch_id"]
    run_json(capsys, "etengine", "batches", "wait", batch_id, code=3)
    listed = run_json(capsys, "etengine", "batches", "list")
    entry = next(b for b in listed["batches"] if b["batch_id"] == batch_id)
    assert entry["state"] == "failed"
    assert listed["errors"] == {}
    code, out, _ = run(capsys, "etengine", "batches", "list")
    assert code == 0
    assert "STATE" in out
    row = next(line for line in out.splitlines() if batch_id in line)
    assert "failed" in row
    jobs = run_json(capsys, "etengine", "jobs", "list", batch_id)["jobs"]
    assert sorted(j["state"] for j in jobs) == ["failed", "succeeded"]
    code, out, _ = run(capsys, "etengine", "jobs", "list", batch_id)
    assert code == 0
    assert "STATUS" in out
    assert "succeeded" in out
    assert "failed" in out
    run(capsys, "etengine", "batches", "delete", batch_id)


def test_etengine_delete_says_what_was_not_there(
    env: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _submit(capsys)["batch_id"]
    data = run_json(capsys, "etengine", "batches", "delete", batch_id, "nosuchbatch", code=4)
    assert data == {"deleted": [batch_id], "missing": ["nosuchbatch"], "errors": {}}
    assert batch_id not in env.etengine.batches
    # Deleted already: not "deleted" again, and a distinct exit code.
    code, out, err = run(capsys, "etengine", "batches", "delete", batch_id)
    assert code == 4
    assert "deleted" not in out
    assert f"batch {batch_id} was not there" in err
    code, _, err = run(capsys, "etengine", "batches", "delete")
    assert code == 2
    assert "--all" in err
    code, _, err = run(capsys, "etengine", "batches", "delete", batch_id, "--all")
    assert code == 2


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer typed in."""

    def isatty(self) -> bool:
        return True


def test_etengine_delete_all_asks_first(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [_submit(capsys)["batch_id"] for _ in range(2)]
    # No terminal to ask on: refused (exit 2) unless --yes.
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, _, err = run(capsys, "etengine", "batches", "delete", "--all")
    assert code == 2
    assert "--yes" in err
    assert set(ids) <= set(env.etengine.batches)
    # Asked, and told no.
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    code, _, err = run(capsys, "etengine", "batches", "delete", "--all")
    assert code == 0
    assert "[y/N]" in err
    assert "nothing deleted" in err
    assert set(ids) <= set(env.etengine.batches)
    # Asked, and told yes.
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    code, _, err = run(capsys, "etengine", "batches", "delete", "--all")
    assert code == 0
    assert not env.etengine.batches
    assert set(ids) <= set(env.etengine.deleted)
    # --yes: nothing asked.
    more = _submit(capsys)["batch_id"]
    data = run_json(capsys, "etengine", "batches", "delete", "--all", "--yes")
    assert data == {"deleted": [more], "all": True}
    assert run_json(capsys, "etengine", "batches", "delete", "--all", "--yes") == {
        "deleted": [],
        "all": True,
    }


def test_ctrl_c_on_a_batch_wait_names_the_delete_command(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ET Engine cannot stop jobs: the note says the batch runs on, and how to forget it."""
    batch_id = _submit(capsys)["batch_id"]

    async def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C comes out of a wait

    monkeypatch.setattr("aiocompute.cli._etengine.wait_and_show", interrupted)
    code, _, err = run(capsys, "etengine", "batches", "wait", batch_id)
    assert code == 130
    assert err.strip() == (
        f"aiocompute: interrupted; batch {batch_id} keeps running (ET Engine cannot stop "
        f"jobs); delete the records with: aiocompute etengine batches delete {batch_id}"
    )
    # Before a wait starts (or after it ended), Ctrl-C has nothing to say.
    monkeypatch.setattr("aiocompute.cli._etengine._batches_list", interrupted)
    monkeypatch.setattr("aiocompute.cli._app._run", interrupted)
    assert run(capsys, "etengine", "batches", "list") == (130, "", "")
