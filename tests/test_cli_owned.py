"""``list --mine`` and ``reap --older-than``: finding and stopping what this user's
aiocompute clients created (by their owner label), and leaving everything else alone.

Against an emulator on real time (``threaded_emulator``): ``--older-than`` compares the
resources' wall-clock times with the real now, and sync clients make some of them."""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from aiocompute._core.reconcile import OWNER_ENV
from aiocompute.cli import main
from aiocompute.cli._owned import older_than
from aiocompute.emulator import (
    Emulator,
    LakeSailEmulatorConfig,
    QiskitEmulatorConfig,
    WorkbenchEmulatorConfig,
)
from aiocompute.sync import LakeSailClient, WorkbenchClient
from aiocompute.workbench import JobSpec

QISKIT_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/cli-owned::"

pytestmark = pytest.mark.emulator(
    seed=4,
    workbench=WorkbenchEmulatorConfig(tokens={"wb-token": ("alice", "user")}),
    lakesail=LakeSailEmulatorConfig(tokens={"ls-token": ("MALICE", "member")}),
    qiskit=QiskitEmulatorConfig(
        api_keys={"qk-key": "user-alice"}, instances=frozenset({QISKIT_INSTANCE})
    ),
)

ME = "ana@notebook"
LONG = ["--emu-duration=60"]


@pytest.fixture
def env(threaded_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("WORKBENCH_SERVER", threaded_emulator.workbench_url)
    monkeypatch.setenv("WORKBENCH_API_KEY", "wb-token")
    monkeypatch.setenv("LAKESAIL_API_TOKEN", "ls-token")
    monkeypatch.setenv("LAKESAIL_BASE_URL", threaded_emulator.lakesail_url)
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "qk-key")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", QISKIT_INSTANCE)
    monkeypatch.setenv("AIOCOMPUTE_QISKIT_BASE_URL", threaded_emulator.qiskit_url)
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", threaded_emulator.qiskit_iam_url)
    monkeypatch.setenv(OWNER_ENV, ME)
    monkeypatch.delenv("COLUMNS", raising=False)
    return threaded_emulator


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert got == code, captured.err
    return json.loads(captured.out)


def test_older_than_reads_durations() -> None:
    assert older_than("90s") == timedelta(seconds=90)
    assert older_than("30m") == timedelta(minutes=30)
    assert older_than("2h") == timedelta(hours=2)
    assert older_than("1d") == timedelta(days=1)
    assert older_than("0.5") == timedelta(seconds=0.5)
    for bad in ("", "2x", "-1h", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match="duration"):
            older_than(bad)


def _workbench_jobs(emu: Emulator) -> tuple[str, str, str]:
    spec = JobSpec(name="j", cluster="Local", exe="R", args=LONG)
    with WorkbenchClient(emu.workbench_url, token="wb-token", owner=ME) as mine:
        a = mine.jobs.launch(spec).id
        done = mine.jobs.launch(JobSpec(name="quick", cluster="Local", exe="R")).id
        mine.jobs.wait(done, until="done", timeout=30)
    with WorkbenchClient(emu.workbench_url, token="wb-token", owner="someone@else") as other:
        b = other.jobs.launch(spec).id
    return a, done, b


def test_workbench_jobs_mine_and_reap(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    mine, finished, theirs = _workbench_jobs(env)
    listed = {j["id"] for j in run_json(capsys, "workbench", "jobs", "list", "--mine")["jobs"]}
    assert listed == {mine, finished}
    everyone = {j["id"] for j in run_json(capsys, "workbench", "jobs", "list")["jobs"]}
    assert {mine, finished, theirs} <= everyone

    # Too young: nothing to reap.
    young = run_json(capsys, "workbench", "jobs", "reap", "--older-than", "1h", "--yes")
    assert young["found"] == []
    time.sleep(0.6)
    dry = run_json(capsys, "workbench", "jobs", "reap", "--older-than", "0.5s", "--dry-run")
    assert [j["id"] for j in dry["found"]] == [mine]  # the finished one is not live
    assert dry["reaped"] == []
    assert env.workbench.jobs[mine].stopped_at is None
    # No terminal to ask on, and no --yes: a usage error, nothing stopped.
    assert main(["workbench", "jobs", "reap", "--older-than", "0.5s"]) == 2
    capsys.readouterr()
    done = run_json(capsys, "workbench", "jobs", "reap", "--older-than", "0.5s", "--yes")
    assert done["reaped"] == [mine]
    assert env.workbench.jobs[mine].stopped_at is not None
    assert env.workbench.jobs[theirs].stopped_at is None  # another owner's: left alone


def test_lakesail_sessions_mine_and_reap(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    with LakeSailClient("ls-token", base_url=env.lakesail_url, owner=ME) as ls:
        mine = ls.sessions.create(name="mine").id
        closed = ls.sessions.create(name="closed").id
        ls.sessions.close(closed)
    with LakeSailClient("ls-token", base_url=env.lakesail_url, owner="bo@ci") as ls:
        theirs = ls.sessions.create(name="theirs").id
    listed = run_json(capsys, "lakesail", "sessions", "list", "--mine")["sessions"]
    assert {s["id"] for s in listed} == {mine, closed}
    other = run_json(capsys, "lakesail", "sessions", "list", "--mine", "--owner", "bo@ci")
    assert [s["id"] for s in other["sessions"]] == [theirs]

    time.sleep(0.6)
    reaped = run_json(capsys, "lakesail", "sessions", "reap", "--older-than", "0.5s", "--yes")
    assert [s["id"] for s in reaped["found"]] == [mine]  # the closed one is already closed
    assert reaped["reaped"] == [mine]
    assert env.lakesail.sessions[mine].state == "closed"
    assert env.lakesail.sessions[theirs].state != "closed"


def test_qiskit_jobs_mine_and_reap(
    env: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_one(owner: str) -> str:
        monkeypatch.setenv("AIOCOMPUTE_OWNER", owner)
        stuck = ("--params", '{"emu_outcome": "stuck"}')
        job: str = run_json(capsys, "qiskit", "jobs", "run", "sampler", "ibm_fez", *stuck)["job"][
            "id"
        ]
        return job

    theirs = run_one("bo@ci")
    mine = run_one("ana@nb")
    listed = run_json(capsys, "qiskit", "jobs", "list", "--mine")["jobs"]
    assert [j["id"] for j in listed] == [mine]
    time.sleep(0.6)
    reaped = run_json(capsys, "qiskit", "jobs", "reap", "--older-than", "0.5s", "--yes")
    assert reaped["reaped"] == [mine]
    assert env.qiskit.jobs[mine].status == "Cancelled"
    assert env.qiskit.jobs[theirs].status != "Cancelled"
