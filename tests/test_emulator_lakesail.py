"""The LakeSail emulator over real loopback HTTP, driven by a plain aiohttp client (no SDK), and
checked against the shapes of the reference's examples."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from aiocompute.emulator import (
    Emulator,
    EmulatorConfig,
    LakeSailEmulatorConfig,
    LakeSailSessionRecord,
)
from helpers import make_emulator_on_loop_clock

FAST = LakeSailEmulatorConfig(provision_delay=0.03, idle_delay=0.08)
FIXTURES = Path(__file__).parent / "fixtures" / "lakesail"
ID = re.compile(r"^[A-Z0-9]{1,20}$")


def example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


SESSION_KEYS = set(example("get_session.response.json"))
LIST_EXAMPLE = example("list_sessions.response.json")
CONFIG_KEYS = set(example("get_workload_config.response.json"))


class LS:
    """A bare-bones LakeSail caller."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.base = emu.lakesail_url

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = "lakesail-token",
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.http.request(
            method, self.base + path, json=body, params=params, headers=headers
        ) as resp:
            data = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(data)
            return resp.status, data.decode()

    async def ok(self, method: str, path: str, token: str = "lakesail-token", **kw: Any) -> Any:
        status, data = await self.call(method, path, token, **kw)
        assert 200 <= status < 300, (status, data)
        return data

    async def create(self, token: str = "lakesail-token", **body: Any) -> dict[str, Any]:
        body.setdefault("endpointType", "spark_connect")
        status, data = await self.call("POST", "/workloads/sessions", token, body=body)
        assert status == 201, data
        return data  # type: ignore[no-any-return]

    async def session(self, sid: str, token: str = "lakesail-token") -> dict[str, Any]:
        return await self.ok("GET", f"/workloads/sessions/{sid}", token)  # type: ignore[no-any-return]


pytestmark = [pytest.mark.emulator(seed=11, lakesail=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def ls(emu: Emulator) -> AsyncIterator[LS]:
    async with aiohttp.ClientSession() as http:
        yield LS(http, emu)


async def until_state(ls: LS, sid: str, state: str) -> dict[str, Any]:
    with anyio.fail_after(2.0):
        while True:
            s = await ls.session(sid)
            if s["status"] == state:
                return s
            await asyncio.sleep(0.01)


# -- mounting, auth, errors --------------------------------------------------------------------


async def test_index_and_url(emu: Emulator, ls: LS) -> None:
    assert emu.lakesail_url == emu.url + "/lakesail/api/v1"
    async with ls.http.get(emu.url + "/") as resp:
        index = await resp.json()
    assert index["apis"]["lakesail"] == "/lakesail/api/v1"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_requests_without_a_valid_bearer_token_are_401(ls: LS, token: str | None) -> None:
    status, data = await ls.call("GET", "/workloads/sessions", token)
    assert status == 401
    assert data == {"code": "unauthenticated", "message": "missing or invalid bearer token"}


async def test_a_service_account_key_is_a_bearer_token_too(ls: LS) -> None:
    s = await ls.create("lakesail-sa-key", name="ci")
    assert s["serviceAccountId"] == "SACIBOT"
    assert "memberId" not in s
    listing = await ls.ok("GET", "/workloads/sessions", "lakesail-sa-key")
    assert [i["id"] for i in listing["items"]] == [s["id"]]
    assert listing["items"][0]["serviceAccountId"] == "SACIBOT"
    account = listing["included"]["serviceAccounts"][0]
    assert account["id"] == "SACIBOT"
    assert set(account) <= set(LIST_EXAMPLE["included"]["serviceAccounts"][0])


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("message", {"code": "not_found", "message": "session SNOPE not found"}),
        ("error", {"error": {"code": "not_found", "message": "session SNOPE not found"}}),
        ("detail", {"detail": "session SNOPE not found"}),
        ("text", "session SNOPE not found"),
    ],
)
async def test_error_styles(style: str, expected: Any) -> None:
    config = EmulatorConfig(lakesail=LakeSailEmulatorConfig(error_style=style))  # type: ignore[arg-type]
    async with make_emulator_on_loop_clock(config=config) as emu, aiohttp.ClientSession() as http:
        status, data = await LS(http, emu).call("GET", "/workloads/sessions/SNOPE")
    assert status == 404
    assert data == expected


async def test_bad_ids_and_bodies_are_400(ls: LS) -> None:
    status, data = await ls.call("GET", "/workloads/sessions/lower-case")
    assert status == 400
    assert "^[A-Z0-9]{1,20}$" in data["message"]
    status, data = await ls.call("GET", "/workloads/sessions", params={"teamId": "x y"})
    assert status == 400
    status, data = await ls.call("POST", "/workloads/sessions", body=["not an object"])
    assert (status, data["message"]) == (400, "the body must be a JSON object")
    status, data = await ls.call("POST", "/workloads/sessions", body={"endpointType": "jdbc"})
    assert status == 400
    assert "spark_connect" in data["message"]
    status, data = await ls.call("POST", "/workloads/sessions", body={"config": {"x": -1}})
    assert status == 400
    status, data = await ls.call("POST", "/workloads/sessions", body={"workloadConfigId": "CNONE"})
    assert status == 400
    assert "CNONE" in data["message"]


# -- shapes ------------------------------------------------------------------------------------


async def test_created_session_shape_follows_the_reference(emu: Emulator, ls: LS) -> None:
    s = await ls.create(name="etl", config={"maxDurationSeconds": 3600}, metadata={"k": "v"})
    assert set(s) <= SESSION_KEYS
    assert {"id", "status", "workloadId", "teamId", "memberId", "createdAt"} <= set(s)
    assert ID.match(s["id"])
    assert ID.match(s["workloadId"])
    assert ID.match(s["teamId"])
    assert s["status"] == "pending"
    assert s["endpointType"] == "spark_connect"
    assert s["metadata"] == {"k": "v"}
    assert s["config"] == {"maxDurationSeconds": 3600}
    assert "timeoutAt" in s
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s["createdAt"])
    assert "connectionInfo" not in s  # not before the compute is ready
    record = emu.lakesail.sessions[s["id"]]
    assert isinstance(record, LakeSailSessionRecord)
    # maxDurationSeconds: the schedule already ends closed, an hour after creation.
    assert record.phases[-1].state == "closed"
    assert record.phases[-1].monotonic == pytest.approx(record.created + 3600)


async def test_list_shape_items_and_included_join_by_id(ls: LS) -> None:
    created = [await ls.create(name=f"s{i}") for i in range(3)]
    data = await ls.ok("GET", "/workloads/sessions")
    assert set(data) <= set(LIST_EXAMPLE)
    assert "marker" not in data  # one page only
    assert data["total"] == 3
    ids = [i["id"] for i in data["items"]]
    assert ids == [c["id"] for c in reversed(created)]  # newest first
    included = data["included"]
    assert set(included) <= set(LIST_EXAMPLE["included"])
    by_id = {s["id"]: s for s in included["sessions"]}
    assert set(by_id) == set(ids)
    for item in data["items"]:
        assert set(item) <= set(LIST_EXAMPLE["items"][0])
        session = by_id[item["id"]]
        assert item["computeInstanceId"] == session["workloadId"]
        assert item["memberId"] == session["memberId"] == "MALICE"
    workloads = {w["id"]: w for w in included["workloads"]}
    assert set(workloads) == {s["workloadId"] for s in included["sessions"]}
    for w in workloads.values():
        assert set(w) <= set(LIST_EXAMPLE["included"]["workloads"][0])
    assert [m["id"] for m in included["members"]] == ["MALICE"]
    assert set(included["members"][0]) <= set(LIST_EXAMPLE["included"]["members"][0])
    # Each session got an anonymous (inline) config; it is side-loaded here.
    configs = {c["id"] for c in included["workloadConfigs"]}
    assert configs == {w["workloadConfigId"] for w in workloads.values()}


# -- pagination --------------------------------------------------------------------------------


async def test_marker_pagination_is_opaque_stable_and_absent_on_the_last_page(ls: LS) -> None:
    for i in range(5):
        await ls.create(name=f"p{i}")
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if marker is not None:
            params["marker"] = marker
        data = await ls.ok("GET", "/workloads/sessions", params=params)
        pages += 1
        assert data["total"] == 5 + (1 if pages > 1 else 0)
        seen += [i["id"] for i in data["items"]]
        if pages == 1:
            # A session created mid-listing does not shift the later pages.
            await ls.create(name="late")
        marker = data.get("marker")
        if marker is None:
            break
        assert isinstance(marker, str)
        assert marker
        assert "=" not in marker
        base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))  # opaque, but base64url
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("limit", ["-1", "101", "many"])
async def test_limit_out_of_bounds_is_400(ls: LS, limit: str) -> None:
    status, data = await ls.call("GET", "/workloads/sessions", params={"limit": limit})
    assert status == 400
    assert "limit" in data["message"]


async def test_limit_zero_counts_without_items(ls: LS) -> None:
    await ls.create()
    data = await ls.ok("GET", "/workloads/sessions", params={"limit": 0})
    assert data["items"] == []
    assert data["total"] == 1
    assert "marker" not in data


async def test_bad_or_foreign_markers_are_400(ls: LS) -> None:
    for _ in range(3):
        await ls.create()
    status, data = await ls.call("GET", "/workloads/sessions", params={"marker": "%%%"})
    assert (status, data["message"]) == (400, "invalid marker")
    first = await ls.ok("GET", "/workloads/sessions", params={"limit": 1})
    status, data = await ls.call(
        "GET",
        "/workloads/sessions",
        params={"limit": 1, "marker": first["marker"], "status": "idle"},
    )
    assert status == 400
    assert "other filters" in data["message"]


async def test_filters(ls: LS) -> None:
    a = await ls.create(name="a")
    await ls.create(name="b")
    await ls.ok("DELETE", f"/workloads/sessions/{a['id']}")
    closed = await ls.ok("GET", "/workloads/sessions", params={"status": "closed"})
    assert [i["id"] for i in closed["items"]] == [a["id"]]
    by_team = await ls.ok("GET", "/workloads/sessions", params={"teamId": "OTHER"})
    assert by_team["items"] == []
    typed = await ls.ok("GET", "/workloads/sessions", params={"endpoint_type": "spark_connect"})
    assert typed["total"] == 2
    status, _ = await ls.call("GET", "/workloads/sessions", params={"status": "sleeping"})
    assert status == 400


async def test_visibility_members_admins(ls: LS) -> None:
    mine = await ls.create(name="alice's")
    bob = await ls.create("lakesail-bob-token", name="bob's")
    alice_view = await ls.ok("GET", "/workloads/sessions")
    assert [i["id"] for i in alice_view["items"]] == [mine["id"]]
    status, _ = await ls.call("GET", f"/workloads/sessions/{bob['id']}")
    assert status == 404  # invisible, as if absent
    admin_view = await ls.ok("GET", "/workloads/sessions", "lakesail-admin-token")
    assert {i["id"] for i in admin_view["items"]} == {mine["id"], bob["id"]}
    admin_get = await ls.session(mine["id"], "lakesail-admin-token")
    assert "connectionInfo" not in admin_get  # only the owner gets it


# -- lifecycle ---------------------------------------------------------------------------------


async def test_progression_pending_active_idle(emu: Emulator, ls: LS) -> None:
    s = await ls.create(name="grow")
    active = await until_state(ls, s["id"], "active")
    assert active["connectionInfo"]["grpcEndpoint"].startswith("sc://")
    idle = await until_state(ls, s["id"], "idle")
    assert "idleSince" in idle
    states = [t.state for t in emu.lakesail.sessions[s["id"]].transitions]
    assert states == ["pending", "active", "idle"]
    times = [t.monotonic for t in emu.lakesail.sessions[s["id"]].transitions]
    assert times == sorted(times)


async def test_emu_fail_and_emu_stuck(emu: Emulator, ls: LS) -> None:
    failing = await ls.create(name="nightly emu-fail")
    stuck = await ls.create(name="emu-stuck")
    failed = await until_state(ls, failing["id"], "failed")
    assert failed["terminationReason"] == "provisioning_failed"
    assert "emu-fail" in failed["statusMessage"]
    await asyncio.sleep(0.1)
    assert (await ls.session(stuck["id"]))["status"] == "pending"
    assert emu.lakesail.sessions[stuck["id"]].state == "pending"


async def test_close_is_204_and_idempotent(ls: LS) -> None:
    s = await ls.create()
    status, body = await ls.call("DELETE", f"/workloads/sessions/{s['id']}")
    assert (status, body) == (204, "")
    closed = await ls.session(s["id"])
    assert closed["status"] == "closed"
    assert closed["terminationReason"] == "user_requested"
    assert "closedAt" in closed
    status, _ = await ls.call("DELETE", f"/workloads/sessions/{s['id']}")
    assert status == 204
    status, _ = await ls.call("DELETE", f"/workloads/sessions/{s['id']}", "lakesail-bob-token")
    assert status == 404


async def test_relaunch_only_from_closed_or_failed(emu: Emulator, ls: LS) -> None:
    s = await ls.create(name="again", config={"idleTimeoutSeconds": 30})
    status, data = await ls.call("POST", f"/workloads/sessions/{s['id']}/relaunch")
    assert status == 409
    assert data["code"] == "conflict"
    assert "only closed or failed sessions can be relaunched" in data["message"]
    await ls.ok("DELETE", f"/workloads/sessions/{s['id']}")
    status, new = await ls.call("POST", f"/workloads/sessions/{s['id']}/relaunch")
    assert status == 201
    assert new["id"] != s["id"]
    assert ID.match(new["id"])
    assert new["status"] == "pending"
    assert (new["name"], new["config"]) == ("again", {"idleTimeoutSeconds": 30})
    assert emu.lakesail.sessions[new["id"]].relaunched_from == s["id"]
    assert (await ls.session(s["id"]))["status"] == "closed"  # the original is not mutated
    # Only the owner may relaunch.
    status, _ = await ls.call(
        "POST", f"/workloads/sessions/{s['id']}/relaunch", "lakesail-admin-token"
    )
    assert status == 403


async def test_failed_sessions_can_be_relaunched(ls: LS) -> None:
    s = await ls.create(name="emu-fail once")
    await until_state(ls, s["id"], "failed")
    new = await ls.ok("POST", f"/workloads/sessions/{s['id']}/relaunch")
    assert new["status"] == "pending"


async def test_proxy_tokens(ls: LS) -> None:
    s = await ls.create()
    token = await ls.ok(
        "POST", f"/workloads/sessions/{s['id']}/token", body={"durationSeconds": 60}
    )
    assert set(token) == set(example("issue_session_token.response.json"))
    _header, claims, _signature = token["token"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["sid"] == s["id"]
    assert payload["target"] == s["workloadId"]
    # No body: the default lifetime.
    assert await ls.ok("POST", f"/workloads/sessions/{s['id']}/token")
    # An org admin may issue one too; bounds are checked.
    assert await ls.ok("POST", f"/workloads/sessions/{s['id']}/token", "lakesail-admin-token")
    for bad in (0, -5, 10**9, "60"):
        status, _ = await ls.call(
            "POST", f"/workloads/sessions/{s['id']}/token", body={"durationSeconds": bad}
        )
        assert status == 400, bad
    await ls.ok("DELETE", f"/workloads/sessions/{s['id']}")
    status, data = await ls.call("POST", f"/workloads/sessions/{s['id']}/token")
    assert status == 409
    assert "closed" in data["message"]


async def test_admin_creates_for_others_members_do_not(ls: LS) -> None:
    s = await ls.create("lakesail-admin-token", memberId="MBOB")
    assert s["memberId"] == "MBOB"
    status, data = await ls.call("POST", "/workloads/sessions", body={"memberId": "MBOB"})
    assert status == 403
    assert data["code"] == "forbidden"


# -- workload configs ---------------------------------------------------------------------------


async def test_workload_configs(ls: LS) -> None:
    seeded = await ls.ok("GET", "/workloads/compute-configs")
    assert [c["name"] for c in seeded["items"]] == ["Default Spark"]
    assert "marker" not in seeded
    assert set(seeded["items"][0]) <= CONFIG_KEYS
    body = example("create_workload_config.request.json")
    body.update(name="Nightly", teamId="TEAMDATA", clusterId="CL1")
    status, created = await ls.call("POST", "/workloads/compute-configs", body=body)
    assert status == 201
    assert set(created) == CONFIG_KEYS
    assert ID.match(created["id"])
    assert created["config"] == body["config"]
    fetched = await ls.ok("GET", f"/workloads/compute-configs/{created['id']}")
    assert fetched == created
    status, data = await ls.call("POST", "/workloads/compute-configs", body=body)
    assert status == 409  # the name is taken
    # Anonymous configs made by sessions are excluded; pages of one.
    await ls.create()
    first = await ls.ok("GET", "/workloads/compute-configs", params={"limit": 1})
    assert len(first["items"]) == 1
    second = await ls.ok(
        "GET", "/workloads/compute-configs", params={"limit": 1, "marker": first["marker"]}
    )
    assert "marker" not in second
    assert [c["name"] for c in first["items"] + second["items"]] == ["Default Spark", "Nightly"]
    status, _ = await ls.call("GET", "/workloads/compute-configs/CNOPE")
    assert status == 404
    status, data = await ls.call("POST", "/workloads/compute-configs", body={"config": {}})
    assert (status, data["message"]) == (400, "name is required")


async def test_session_with_a_named_config(ls: LS) -> None:
    configs = await ls.ok("GET", "/workloads/compute-configs")
    cid = configs["items"][0]["id"]
    s = await ls.create(workloadConfigId=cid)
    listing = await ls.ok("GET", "/workloads/sessions")
    assert listing["included"]["workloads"][0]["workloadConfigId"] == cid
    assert [c["id"] for c in listing["included"]["workloadConfigs"]] == [cid]
    assert listing["items"][0]["id"] == s["id"]


# -- shared machinery --------------------------------------------------------------------------


async def test_stats_faults_and_config_validation(emu: Emulator, ls: LS) -> None:
    emu.reset_stats()
    await ls.ok("GET", "/workloads/sessions")
    assert emu.stats["lakesail.list_sessions"] == 1
    assert emu.requests[-1].key == "lakesail.list_sessions"
    emu.faults.error_next["lakesail.get_session"] = 1
    s = await ls.create()
    status, page = await ls.call("GET", f"/workloads/sessions/{s['id']}")
    assert status == 503
    assert "<html>" in page
    assert (await ls.session(s["id"]))["id"] == s["id"]
    emu.faults.malformed["lakesail"] = "garbage"
    async with ls.http.get(
        emu.lakesail_url + "/workloads/sessions", headers={"Authorization": "Bearer lakesail-token"}
    ) as resp:
        assert (await resp.read()).startswith(b"\x00")
    emu.faults.reset()
    with pytest.raises(ValueError, match="role"):
        LakeSailEmulatorConfig(tokens={"t": ("M1", "wizard")})
    with pytest.raises(ValueError, match=re.escape("^[A-Z0-9]{1,20}$")):
        LakeSailEmulatorConfig(tokens={"t": ("m-1", "member")})
    with pytest.raises(ValueError, match="team_id"):
        LakeSailEmulatorConfig(team_id="team")
