"""Each client paces every request with a RateGovernor of its own by default: polls,
queries and launches feed it, and a 429 from the server slows the whole client down."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from aiocompute import ETEngineClient, RateGovernor, WorkbenchClient
from helpers import make_emulator_on_loop_clock
from netkit import serve_http

pytestmark = pytest.mark.virtual_time

LP = {"name": "g", "cluster": "Local"}


async def test_every_client_gets_its_own_governor_by_default() -> None:
    one = WorkbenchClient("http://127.0.0.1:9", token="t" * 10)
    two = WorkbenchClient("http://127.0.0.1:9", token="t" * 10)
    mine = RateGovernor()
    three = WorkbenchClient("http://127.0.0.1:9", token="t" * 10, governor=mine)
    try:
        assert isinstance(one._transport._governor, RateGovernor)
        assert one._transport._governor is not two._transport._governor
        assert three._transport._governor is mine
    finally:
        for client in (one, two, three):
            await client.aclose()


@pytest.mark.slow
async def test_polls_queries_and_launches_share_the_governor_and_429_slows_it() -> None:
    async with (
        make_emulator_on_loop_clock() as emu,
        WorkbenchClient(emu.workbench_url, token="user-token") as wb,
    ):
        governor = wb._transport._governor
        assert isinstance(governor, RateGovernor)
        assert governor.rate is None  # unlimited until the server pushes back
        launched = await wb.sessions.launch("VS Code", name="g", launch_parameters=LP)
        await wb.version()
        emu.faults.rate_limit_next["workbench.get_session"] = 2
        await wb.sessions.wait(launched.id, timeout=10)  # polls ride through the 429s
        stats = governor.stats
        assert stats.throttled == 2
        assert 1 <= stats.decreases <= stats.throttled
        assert governor.rate is not None
        # launch + version + every poll went through it
        assert stats.acquired >= 3 + emu.stats["workbench.get_session"] - 2


# On virtual time: the default governor's pace after the 429 (1 s) passes on the loop's clock
async def test_a_launch_refused_with_429_is_sent_again_and_starts_one_session() -> None:
    # The default governor: it paces on the loop's clock (a real loop's is time.monotonic).
    governor = RateGovernor()
    async with (
        make_emulator_on_loop_clock() as emu,
        WorkbenchClient(emu.workbench_url, token="user-token", governor=governor) as wb,
    ):
        emu.faults.rate_limit_next["workbench.launch_session"] = 1
        emu.faults.retry_after = 0
        launched = await wb.sessions.launch("VS Code", name="once", launch_parameters=LP)
        assert emu.stats["faults.rate_limit"] == 1
        assert emu.stats["workbench.launch_session"] == 2  # the refusal, then the launch
        assert [s.id for s in emu.workbench.sessions.values()] == [launched.id]


# On virtual time: the ten calls' 0.2 s each pass on the loop's clock, in no real time
async def test_max_concurrency_caps_the_requests_in_flight_at_the_server() -> None:
    # Measured at the server: 10 calls at 0.2 s each, capped at 2 in flight.
    clock = asyncio.get_running_loop().time
    in_flight = 0
    most = 0

    async def slow(_request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.2)
        finally:
            in_flight -= 1
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/v1/batches/{id}/jobs", slow)
    governor = RateGovernor(max_concurrency=2)
    async with serve_http(app) as server:
        url = f"{server.url}/v1"
        async with ETEngineClient(api_key="k" * 8, base_url=url, governor=governor) as et:
            started = clock()
            await asyncio.gather(*(et.jobs.list(f"b-{i}") for i in range(10)))
            elapsed = clock() - started
    assert most == 2
    assert elapsed >= 5 * 0.2  # five rounds of two, not one round of ten
    assert governor.stats.in_flight == 0


async def test_a_client_settles_under_a_servers_hard_limit() -> None:
    # Through a real local server that enforces 100 requests/s (a token bucket of 10,
    # 429 + Retry-After beyond it): 50 concurrent reads through the client's default governor.
    # The old law stepped the rate up on every answer (+100/s per second at this limit) and
    # kept overshooting; the law now steps once per round (>= 1 s).
    clock = asyncio.get_running_loop().time  # the server's bucket and the client's pacing alike
    rate, burst = 100.0, 10.0
    tokens, refilled_at = burst, clock()
    log: list[int] = []  # statuses, in the order the server answered

    async def jobs(_request: web.Request) -> web.Response:
        nonlocal tokens, refilled_at
        now = clock()
        tokens = min(burst, tokens + (now - refilled_at) * rate)
        refilled_at = now
        if tokens < 1:
            log.append(429)
            retry_after = f"{(1 - tokens) / rate + 0.005:.2f}"
            return web.json_response({}, status=429, headers={"Retry-After": retry_after})
        tokens -= 1
        log.append(200)
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/v1/batches/{id}/jobs", jobs)
    governor = RateGovernor()
    reads = 0
    async with serve_http(app) as server:
        url = f"{server.url}/v1"
        async with ETEngineClient(api_key="k" * 8, base_url=url, governor=governor) as et:

            async def reader(index: int) -> None:
                nonlocal reads
                while reads < 400:
                    await et.jobs.list(f"b-{index}")  # a 429 is retried after Retry-After
                    reads += 1

            started = clock()
            await asyncio.gather(*(reader(i) for i in range(50)))
            elapsed = clock() - started
    stats = governor.stats
    assert stats.throttled == log.count(429) > 0
    assert stats.decreases >= 1
    # Once per round of at least 1 s, whatever the number of answers.
    assert stats.increases <= elapsed + 1
    # Past the first 150 answers (the requests in flight when the limit was first met are
    # refused whatever the law), at most 10 % were refused.
    later = log[150:]
    assert later.count(429) <= 0.10 * len(later)
