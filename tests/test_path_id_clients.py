"""The clients refuse an id that would change the URL path before anything is sent.

``et.batches.delete(".")`` used to send ``DELETE /v1/batches/`` (on a server that ignores
the trailing slash: delete every batch) and ``q.sessions.close("..")`` ``DELETE
/api/v1/close``. Each client here talks to aioresponses with no route at all: a request
that went out would fail as a TransportError, and would be recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aioresponses import aioresponses

from aiocompute import ETEngineClient, LakeSailClient, QiskitRuntimeClient
from aiocompute._core.retries import NO_RETRY
from helpers import make_emulator_on_loop_clock

pytestmark = pytest.mark.virtual_time

DANGEROUS = [".", "..", "", "a/b", "a?b", "a#b", "%2e", "a b", "a\n"]
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"

Call = Callable[[Any, str], Awaitable[Any]]

ET_CALLS: list[tuple[str, Call]] = [
    ("batches.delete", lambda et, v: et.batches.delete(v)),
    ("batches.status", lambda et, v: et.batches.status(v)),
    ("jobs.list", lambda et, v: et.jobs.list(v)),
    ("jobs.get batch", lambda et, v: et.jobs.get(v, "j1")),
    ("jobs.get job", lambda et, v: et.jobs.get("b1", v)),
    ("batches.create", lambda et, v: et.batches.create(v)),
]
QISKIT_CALLS: list[tuple[str, Call]] = [
    ("sessions.get", lambda q, v: q.sessions.get(v)),
    ("sessions.close", lambda q, v: q.sessions.close(v)),
    ("sessions.update", lambda q, v: q.sessions.update(v, accepting_jobs=False)),
]
LAKESAIL_CALLS: list[tuple[str, Call]] = [
    ("sessions.get", lambda ls, v: ls.sessions.get(v)),
    ("sessions.close", lambda ls, v: ls.sessions.close(v)),
    ("sessions.token", lambda ls, v: ls.sessions.token(v)),
    ("sessions.relaunch", lambda ls, v: ls.sessions.relaunch(v)),
    ("workload_configs.get", lambda ls, v: ls.workload_configs.get(v)),
]


def _ids(calls: list[tuple[str, Call]]) -> list[str]:
    return [name for name, _ in calls]


@pytest.mark.parametrize("value", DANGEROUS)
@pytest.mark.parametrize("call", [c for _, c in ET_CALLS], ids=_ids(ET_CALLS))
async def test_et_engine_refuses_before_sending(
    mocked: aioresponses, call: Call, value: str
) -> None:
    async with ETEngineClient(api_key="k", base_url="https://et.test/v1", retry=NO_RETRY) as et:
        with pytest.raises(ValueError, match="_id must not"):
            await call(et, value)
    assert mocked.requests == {}


@pytest.mark.parametrize("value", DANGEROUS)
@pytest.mark.parametrize("call", [c for _, c in QISKIT_CALLS], ids=_ids(QISKIT_CALLS))
async def test_qiskit_refuses_before_sending(mocked: aioresponses, call: Call, value: str) -> None:
    async with QiskitRuntimeClient(
        token="k",
        instance=CRN,
        base_url="https://q.test/api",
        iam_url="https://iam.test/identity/token",
        retry=NO_RETRY,
    ) as q:
        with pytest.raises(ValueError, match="session_id must not"):
            await call(q, value)
    assert mocked.requests == {}  # not even the IAM token request


@pytest.mark.parametrize("value", DANGEROUS)
@pytest.mark.parametrize("call", [c for _, c in LAKESAIL_CALLS], ids=_ids(LAKESAIL_CALLS))
async def test_lakesail_refuses_before_sending(
    mocked: aioresponses, call: Call, value: str
) -> None:
    async with LakeSailClient("t", base_url="https://ls.test/api/v1", retry=NO_RETRY) as ls:
        with pytest.raises(ValueError, match="_id must be 1 to 20 upper-case letters or digits"):
            await call(ls, value)
    assert mocked.requests == {}


async def test_deleting_batch_dot_leaves_every_batch_in_place() -> None:
    async with (
        make_emulator_on_loop_clock(seed=4) as emu,
        ETEngineClient(api_key="et-key", base_url=emu.etengine_url, retry=NO_RETRY) as et,
    ):
        created = await et.batches.create("tool-sim")
        for value in (".", ".."):
            with pytest.raises(ValueError, match="dot segment"):
                await et.batches.delete(value)
        assert created.batch_id in emu.etengine.batches
        assert [b.batch_id for b in await et.batches.list()] == [created.batch_id]
