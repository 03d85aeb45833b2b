"""The Qiskit Runtime + IAM emulator over real loopback HTTP, driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest

from aiocompute.emulator import Emulator, EmulatorConfig, QiskitEmulatorConfig, QiskitJobsConfig
from helpers import EmulatorFactory, make_emulator_on_loop_clock

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
GRANT = "urn:ibm:params:oauth:grant-type:apikey"
FAST = QiskitEmulatorConfig(activate_delay=0.05, interactive_ttl=0.1, drain_delay=0.05)


async def until(instant: float) -> None:
    """Sleep until an instant of the emulator clock (time.monotonic)."""
    await asyncio.sleep(max(0.0, instant - asyncio.get_running_loop().time()))


class Q:
    """A bare-bones caller, so the emulator is tested without the SDK client."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.base = emu.qiskit_url

    async def token(self, key: str = "qiskit-key") -> str:
        form = {"grant_type": GRANT, "apikey": key}
        async with self.http.post(self.emu.qiskit_iam_url, data=form) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["token_type"] == "Bearer"
        return str(body["access_token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        crn: str | None = CRN,
        body: Any = None,
        version: str | None = "2025-05-01",
    ) -> tuple[int, bytes]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if crn is not None:
            headers["Service-CRN"] = crn
        if version is not None:
            headers["IBM-API-Version"] = version
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def create(self, token: str, **body: Any) -> dict[str, Any]:
        body.setdefault("mode", "batch")
        body.setdefault("backend", "ibm_kyiv")
        status, data = await self.call("POST", "/v1/sessions", token=token, body=body)
        assert status == 200, data
        return json.loads(data)  # type: ignore[no-any-return]

    async def get(self, token: str, sid: str) -> dict[str, Any]:
        status, data = await self.call("GET", f"/v1/sessions/{sid}", token=token)
        assert status == 200, data
        return json.loads(data)  # type: ignore[no-any-return]


pytestmark = [pytest.mark.emulator(seed=9, qiskit=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def q(emu: Emulator) -> AsyncIterator[Q]:
    async with aiohttp.ClientSession() as http:
        yield Q(http, emu)


def jwt_part(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def with_part(token: str, index: int, value: Any) -> str:
    parts = token.split(".")
    parts[index] = base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return ".".join(parts)


async def test_iam_issues_expiring_tokens(q: Q) -> None:
    form = {"grant_type": GRANT, "apikey": "qiskit-key", "response_type": "cloud_iam"}
    async with q.http.post(q.emu.qiskit_iam_url, data=form) as resp:
        body = await resp.json()
    assert set(body) >= {"access_token", "expires_in", "expiration", "token_type"}
    assert body["expires_in"] == 3600
    assert isinstance(body["expiration"], int)
    assert q.emu.qiskit.tokens[body["access_token"]].user_id == "user-alice"
    # A JWT like IBM's, which IBM's own client decodes to know when to refresh.
    token = body["access_token"]
    assert token.count(".") == 2
    assert jwt_part(token, 0)["alg"] == "HS256"
    claims = jwt_part(token, 1)
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert claims["exp"] == body["expiration"]
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["sub"]
    assert claims["iam_id"].endswith("user-alice")


async def test_tokens_are_checked_by_their_signature(q: Q) -> None:
    token = await q.token()
    assert (await q.call("GET", "/v1/sessions/nope", token=token))[0] == 404  # accepted
    claims = jwt_part(token, 1)
    header, _, signature = token.split(".")
    forged = [
        with_part(token, 1, {**claims, "exp": claims["exp"] + 86400}),  # claims altered
        with_part(token, 1, {**claims, "iam_id": "IBMid-user-bob"}),
        f"{header}.{token.split('.')[1]}.{signature[:-4]}AAAA",  # signature altered
        f"{header}.{token.split('.')[1]}",  # no signature
        "emu-iam-" + "0" * 40,  # an opaque token, as the emulator used to hand out
        "a.b.c",
    ]
    for bad in forged:
        status, data = await q.call("GET", "/v1/sessions/nope", token=bad)
        assert status == 401, bad
        assert json.loads(data)["error"]["message"] == "Invalid bearer token"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"grant_type": GRANT, "apikey": "nope"}, "BXNIM0415E"),
        ({"grant_type": GRANT}, "BXNIM0103E"),
        ({"grant_type": "password", "apikey": "qiskit-key"}, "BXNIM0109E"),
    ],
)
async def test_iam_errors_use_iams_shape(q: Q, form: dict[str, str], code: str) -> None:
    async with q.http.post(q.emu.qiskit_iam_url, data=form) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["errorCode"] == code
    assert body["errorMessage"]
    assert "requestId" in body["context"]


async def test_session_life_and_wire_quirks(q: Q) -> None:
    token = await q.token()
    created = await q.create(token, max_ttl=300)
    assert created["state"] == "open"
    assert created["backend_name"] is None
    assert created["elapsed_time"] is None
    assert created["accepting_jobs"] is True
    assert created["max_ttl"] == 300
    assert created["user_id"] == "user-alice"
    assert created["started_at"].endswith("Z")
    record = q.emu.qiskit.sessions[created["id"]]
    await until(record.phases[1].monotonic + 0.01)
    active = await q.get(token, created["id"])
    assert active["state"] == "active"
    assert active["backend_name"] == "ibm_kyiv"
    assert isinstance(active["active_ttl"], int)
    await until(record.phases[2].monotonic + 0.01)
    inactive = await q.get(token, created["id"])
    assert inactive["state"] == "inactive"
    assert [t["status"] for t in inactive["timestamps"]] == ["open", "active", "inactive"]
    assert [t.state for t in record.transitions] == ["open", "active", "inactive"]


async def test_patch_and_close_answer_204_with_no_body(q: Q) -> None:
    token = await q.token()
    sid = (await q.create(token))["id"]
    await until(q.emu.qiskit.sessions[sid].phases[1].monotonic + 0.01)
    status, body = await q.call(
        "PATCH", f"/v1/sessions/{sid}", token=token, body={"accepting_jobs": False}
    )
    assert (status, body) == (204, b"")
    draining = await q.get(token, sid)
    assert (draining["state"], draining["accepting_jobs"]) == ("pending_closed", False)
    await until(q.emu.qiskit.sessions[sid].phases[-1].monotonic + 0.01)
    closed = await q.get(token, sid)
    assert closed["state"] == "closed"
    assert isinstance(closed["elapsed_time"], float)
    assert closed["closed_at"] is not None
    # PATCH true on a closed session is a conflict; close stays 204.
    status, body = await q.call(
        "PATCH", f"/v1/sessions/{sid}", token=token, body={"accepting_jobs": True}
    )
    assert status == 409
    assert json.loads(body)["errors"][0]["message"] == "The session is closed."
    status, body = await q.call("DELETE", f"/v1/sessions/{sid}/close", token=token)
    assert (status, body) == (204, b"")


async def test_reaccepting_jobs_cancels_the_drain(emulator: EmulatorFactory) -> None:
    emu = await emulator(qiskit=QiskitEmulatorConfig(drain_delay=5.0))
    async with aiohttp.ClientSession() as http:
        q = Q(http, emu)
        token = await q.token()
        sid = (await q.create(token, backend="emu_stuck"))["id"]
        record = emu.qiskit.sessions[sid]
        path = f"/v1/sessions/{sid}"
        await q.call("PATCH", path, token=token, body={"accepting_jobs": False})
        assert (await q.get(token, sid))["accepting_jobs"] is False
        assert record.state_at(asyncio.get_running_loop().time() + 6) == "closed"  # drain scheduled
        status, _ = await q.call("PATCH", path, token=token, body={"accepting_jobs": True})
        assert status == 204
        again = await q.get(token, sid)
        assert (again["state"], again["accepting_jobs"]) == ("open", True)
        assert record.state_at(asyncio.get_running_loop().time() + 6) == "open"  # drain called off


async def test_close_is_immediate(q: Q) -> None:
    token = await q.token()
    sid = (await q.create(token))["id"]
    status, _ = await q.call("DELETE", f"/v1/sessions/{sid}/close", token=token)
    assert status == 204
    closed = await q.get(token, sid)
    assert (closed["state"], closed["state_reason"]) == ("closed", "Closed by the user")
    assert closed["accepting_jobs"] is False


async def test_errors_come_in_both_shapes(q: Q) -> None:
    token = await q.token()
    status, body = await q.call("GET", "/v1/sessions/nope", token=token)
    assert status == 404
    errors = json.loads(body)
    assert set(errors) == {"errors", "trace"}
    assert set(errors["errors"][0]) == {"code", "message", "more_info"}
    status, body = await q.call("GET", "/v1/sessions/nope", token=None)
    assert status == 401
    assert set(json.loads(body)) == {"error"}
    status, body = await q.call("GET", "/v1/sessions/nope", token=token, crn="crn:other")
    assert status == 403
    assert json.loads(body)["error"]["message"] == "Instance not found or not accessible"
    status, body = await q.call("GET", "/v1/sessions/nope", token=token, crn=None)
    assert status == 400
    status, body = await q.call("GET", "/v1/sessions/nope", token=token, version="latest")
    assert status == 400
    assert "IBM-API-Version" in json.loads(body)["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"mode": "batch"}, 400, "backend is required"),
        ({"backend": "ibm_kyiv", "mode": "shared"}, 400, "mode must be"),
        ({"backend": "ibm_kyiv", "max_ttl": -1}, 400, "max_ttl"),
        ({"backend": "ibm_nowhere"}, 404, "Backend ibm_nowhere not found."),
        ({"backend": "ibm_kyiv", "instance": "crn:x"}, 400, "instance does not match"),
    ],
)
async def test_create_validates_its_body(
    q: Q, body: dict[str, Any], status: int, text: str
) -> None:
    token = await q.token()
    got, data = await q.call("POST", "/v1/sessions", token=token, body=body)
    assert got == status
    assert text in json.loads(data)["errors"][0]["message"]


async def test_create_ignores_unknown_fields(q: Q) -> None:
    # The reference forbids no field; IBM's client sends more than these four.
    token = await q.token()
    body = {"backend": "ibm_kyiv", "mode": "dedicated", "private": True, "colour": "red"}
    created = await q.create(token, **body)
    assert created["mode"] == "dedicated"
    assert created["max_ttl"] == 28800  # the default when none is sent
    assert q.emu.qiskit.sessions[created["id"]].create_body == body


async def test_what_ibms_client_reads_at_start(q: Q) -> None:
    # GET /v1/backends: the instance's backends, with a token and a Service-CRN.
    token = await q.token()
    status, data = await q.call("GET", "/v1/backends?include_mocks=true", token=token)
    assert status == 200
    devices = json.loads(data)["devices"]
    assert [d["name"] for d in devices] == list(q.emu.config.qiskit.backends)
    assert devices[0]["status"] == {"name": "online", "reason": "available"}
    assert (await q.call("GET", "/v1/backends", token=None))[0] == 401
    assert (await q.call("GET", "/v1/backends", token=token, crn="crn:x"))[0] == 403
    status, data = await q.call("GET", "/v1/backends/ibm_fez/configuration", token=token)
    config = json.loads(data)
    assert (config["backend_name"], config["n_qubits"], config["simulator"]) == (
        "ibm_fez",
        156,
        False,
    )
    assert len(config["coupling_map"]) == 155
    assert (await q.call("GET", "/v1/backends/ibm_nowhere/configuration", token=token))[0] == 404
    # IBM Cloud Global Search finds the instances; Global Catalog describes their plan.
    root = q.emu.url + "/qiskit"
    auth = {"Authorization": f"Bearer {token}"}
    query = {"query": "service_name:quantum-computing", "fields": ["crn", "name"]}
    search = f"{root}/global-search/v3/resources/search"
    async with q.http.post(search, json=query, headers=auth) as resp:
        assert resp.status == 200
        found = await resp.json()
    assert [item["crn"] for item in found["items"]] == [CRN]
    assert "search_cursor" not in found  # one page
    async with q.http.post(search, json={"query": "service_name:cloud-object-storage"}) as resp:
        assert resp.status == 401  # no token
    async with q.http.post(search, json={"query": "x:y"}, headers=auth) as resp:
        assert (await resp.json())["items"] == []
    plan = found["items"][0]["service_plan_unique_id"]
    async with q.http.get(f"{root}/global-catalog/api/v1/{plan}", headers=auth) as resp:
        entry = await resp.json()
    assert entry["metadata"]["pricing"]["type"] == "free"
    assert entry["overview_ui"]["en"]["display_name"]
    async with q.http.get(f"{root}/global-catalog/api/v1/nope", headers=auth) as resp:
        assert resp.status == 404


async def test_sessions_are_private_to_their_user(q: Q) -> None:
    alice = await q.token()
    bob = await q.token("qiskit-key-bob")
    sid = (await q.create(alice))["id"]
    status, _ = await q.call("GET", f"/v1/sessions/{sid}", token=bob)
    assert status == 404


async def test_expired_tokens_get_401() -> None:
    # On virtual time: the token outlives the create and has expired after the sleep, however
    # busy the machine is.
    config = QiskitEmulatorConfig(token_lifetime=0.3)
    async with make_emulator_on_loop_clock(qiskit=config) as emu, aiohttp.ClientSession() as http:
        q = Q(http, emu)
        token = await q.token()
        sid = (await q.create(token))["id"]
        await asyncio.sleep(0.32)
        status, body = await q.call("GET", f"/v1/sessions/{sid}", token=token)
        assert status == 401
        assert "expired" in json.loads(body)["error"]["message"]
        fresh = await q.token()
        assert (await q.get(fresh, sid))["id"] == sid


async def test_revoked_tokens_get_401(q: Q) -> None:
    token = await q.token()
    sid = (await q.create(token))["id"]
    other = await q.token()
    assert q.emu.qiskit.revoke_tokens() == 2
    assert q.emu.qiskit.revoke_tokens() == 0
    for used in (token, other):
        status, body = await q.call("GET", f"/v1/sessions/{sid}", token=used)
        assert status == 401
        assert json.loads(body)["error"]["message"] == "Invalid bearer token"
    assert (await q.get(await q.token(), sid))["id"] == sid


async def test_error_shape_can_be_forced_and_routes_are_counted() -> None:
    config = QiskitEmulatorConfig(error_shape="errors")
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(qiskit=config)) as emu,
        aiohttp.ClientSession() as http,
    ):
        q = Q(http, emu)
        status, body = await q.call("GET", "/v1/sessions/x", token="bad-token")
        assert status == 401
        assert set(json.loads(body)) == {"errors", "trace"}
        assert emu.stats["qiskit.get_session"] == 1
        assert emu.stats["qiskit"] == 1
        async with http.get(emu.url + "/") as resp:
            index = await resp.json()
        assert index["apis"]["qiskit"] == "/qiskit/api"
        assert index["apis"]["etengine"] == "/etengine/v1"


async def test_faults_apply_to_qiskit_routes(q: Q) -> None:
    token = await q.token()
    q.emu.faults.error_status = 520
    q.emu.faults.error_next["qiskit.get_session"] = 1
    status, _ = await q.call("GET", "/v1/sessions/x", token=token)
    assert status == 520
    assert q.emu.stats["faults.error"] == 1


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="token_lifetime"):
        QiskitEmulatorConfig(token_lifetime=0)
    with pytest.raises(ValueError, match="error_shape"):
        QiskitEmulatorConfig(error_shape="json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activate_delay"):
        QiskitEmulatorConfig(activate_delay=(2, 1))
    with pytest.raises(ValueError, match="non-empty"):
        QiskitEmulatorConfig(api_keys={"": "u"})


# -- jobs ---------------------------------------------------------------------------------------

JOB_TIMES = QiskitJobsConfig(queue_delay=0.1, run_delay=0.1)


async def _run(q: Q, token: str, **body: Any) -> tuple[int, Any]:
    body.setdefault("program_id", "sampler")
    body.setdefault("backend", "ibm_kyiv")
    body.setdefault("params", {"pubs": [["c", None, 16]], "version": 2})
    status, data = await q.call("POST", "/v1/jobs", token=token, body=body)
    return status, json.loads(data)


@pytest.mark.emulator(seed=9, qiskit=attrs.evolve(FAST, jobs=JOB_TIMES))
async def test_job_wire_shapes_and_schedule(q: Q) -> None:
    token = await q.token()
    status, created = await _run(q, token, tags=["a", "b"], private=False)
    assert status == 200
    assert set(created) == {"id", "backend"}
    assert len(created["id"]) == 20
    jid = created["id"]
    status, data = await q.call("GET", f"/v1/jobs/{jid}", token=token)
    job = json.loads(data)
    assert status == 200
    assert job["status"] == job["state"]["status"] == "Queued"
    assert job["program"] == {"id": "sampler"}
    assert job["tags"] == ["a", "b"]
    assert "params" in job  # GET returns the params unless exclude_params=true
    _, data = await q.call("GET", f"/v1/jobs/{jid}?exclude_params=true", token=token)
    assert "params" not in json.loads(data)
    status, _ = await q.call("GET", f"/v1/jobs/{jid}/results", token=token)
    assert status == 404  # no result before it completes
    record = q.emu.qiskit.jobs[jid]
    await until(record.phases[-1].monotonic + 0.01)
    assert [t.state for t in record.transitions] == ["Queued", "Running", "Completed"]
    _, data = await q.call("GET", f"/v1/jobs/{jid}", token=token)
    assert json.loads(data)["usage"]["quantum_seconds"] == record.quantum_seconds
    async with q.http.get(
        q.base + f"/v1/jobs/{jid}/results",
        headers={"Authorization": f"Bearer {token}", "Service-CRN": CRN},
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        result = await resp.json()
    assert result["__type__"] == "PrimitiveResult"
    bits = result["__value__"]["pub_results"][0]["__value__"]["data"]["__value__"]["fields"]
    npy = zlib.decompress(base64.b64decode(bits["meas"]["__value__"]["array"]["__value__"]))
    assert npy.startswith(b"\x93NUMPY")
    assert b"'shape': (16, 1)" in npy
    header_end = npy.index(b"\n") + 1
    assert header_end % 64 == 0  # .npy pads its header to a multiple of 64
    assert len(npy) == header_end + 16  # then one byte per shot
    status, logs = await q.call("GET", f"/v1/jobs/{jid}/logs", token=token)
    assert status == 200
    assert logs.decode().count("\n") == 3
    status, data = await q.call("GET", f"/v1/jobs/{jid}/metrics", token=token)
    metrics = json.loads(data)
    assert metrics["timestamps"]["finished"] is not None
    status, _ = await q.call("POST", f"/v1/jobs/{jid}/cancel", token=token)
    assert status == 409  # it has ended
    status, body = await q.call("PUT", f"/v1/jobs/{jid}/tags", token=token, body={"tags": ["z"]})
    assert (status, body) == (204, b"")
    assert record.tags == ["z"]
    status, body = await q.call("DELETE", f"/v1/jobs/{jid}", token=token)
    assert (status, body) == (204, b"")
    status, _ = await q.call("GET", f"/v1/jobs/{jid}", token=token)
    assert status == 404


async def test_job_list_pages_and_filters(q: Q) -> None:
    token = await q.token()
    ids = [(await _run(q, token, tags=["t", f"n{i}"]))[1]["id"] for i in range(5)]
    _, data = await q.call("GET", "/v1/jobs?limit=2&offset=1&tags=t", token=token)
    page = json.loads(data)
    assert (page["count"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [j["id"] for j in page["jobs"]] == [ids[3], ids[2]]  # newest first
    assert all("params" not in j for j in page["jobs"])  # excluded by default
    _, data = await q.call("GET", "/v1/jobs?sort=ASC&tags=t&tags=n4", token=token)
    assert [j["id"] for j in json.loads(data)["jobs"]] == [ids[4]]
    _, data = await q.call("GET", "/v1/jobs?limit=500", token=token)
    assert json.loads(data)["limit"] == 200
    status, _ = await q.call("GET", "/v1/jobs?pending=maybe", token=token)
    assert status == 400
    status, _ = await q.call("GET", "/v1/jobs?created_after=yesterday", token=token)
    assert status == 400
    bob = await q.token("qiskit-key-bob")
    _, data = await q.call("GET", "/v1/jobs", token=bob)
    assert json.loads(data) == {"jobs": [], "count": 0, "limit": 200, "offset": 0}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"program_id": "qaoa"}, 400, "program_id"),
        ({"backend": "ibm_nowhere"}, 404, "Backend ibm_nowhere not found"),
        ({"params": [1]}, 400, "params"),
        ({"tags": "x"}, 400, "tags"),
        ({"cost": 0}, 400, "cost"),
        ({"log_level": "loud"}, 400, "log_level"),
        ({"session_id": "nope"}, 404, "Session not found"),
        ({"surprise": 1}, 400, "Unknown properties: surprise"),
    ],
)
async def test_job_create_validates_its_body(
    q: Q, body: dict[str, Any], status: int, says: str
) -> None:
    token = await q.token()
    got, answer = await _run(q, token, **body)
    assert got == status
    assert says in json.dumps(answer)
    assert len(q.emu.qiskit.jobs) == 0


@pytest.mark.emulator(seed=9, qiskit=attrs.evolve(FAST, jobs=QiskitJobsConfig(rate_limit=2)))
async def test_job_rate_limit_answers_429_with_retry_after(q: Q) -> None:
    token = await q.token()
    for _ in range(2):
        assert (await _run(q, token))[0] == 200
    async with q.http.post(
        q.base + "/v1/jobs",
        json={"program_id": "sampler", "backend": "ibm_kyiv", "params": {}},
        headers={"Authorization": f"Bearer {token}", "Service-CRN": CRN},
    ) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert "at most 2 jobs per 60 s" in (await resp.text())
    # Per user: another user still gets in.
    assert (await _run(q, await q.token("qiskit-key-bob")))[0] == 200
    assert q.emu.qiskit.jobs.rate_limited == 1


@pytest.mark.emulator(
    seed=9,
    qiskit=attrs.evolve(FAST, jobs=QiskitJobsConfig(usage_limit=0.0)),
)
async def test_job_usage_limit_answers_409(q: Q) -> None:
    token = await q.token()
    status, answer = await _run(q, token)
    assert status == 409
    assert answer["errors"][0]["message"] == "Usage exceeds instance limit."
    assert q.emu.qiskit.jobs.usage_refused == 1


async def test_jobs_in_a_session_need_it_to_accept_jobs(q: Q) -> None:
    token = await q.token()
    sid = (await q.create(token))["id"]
    status, created = await _run(q, token, session_id=sid)
    assert (status, created["session_id"]) == (200, sid)
    await q.call("PATCH", f"/v1/sessions/{sid}", token=token, body={"accepting_jobs": False})
    status, answer = await _run(q, token, session_id=sid)
    assert status == 400
    assert "no longer accepts jobs" in json.dumps(answer)


async def test_private_job_results_are_read_once(q: Q) -> None:
    token = await q.token()
    _, created = await _run(q, token, private=True)
    assert created["private"] is True
    record = q.emu.qiskit.jobs[created["id"]]
    await until(record.phases[-1].monotonic + 0.01)
    _, data = await q.call("GET", f"/v1/jobs/{record.id}", token=token)
    assert "params" not in json.loads(data)
    assert (await q.call("GET", f"/v1/jobs/{record.id}/results", token=token))[0] == 200
    assert (await q.call("GET", f"/v1/jobs/{record.id}/results", token=token))[0] == 404


def test_jobs_config_is_validated() -> None:
    with pytest.raises(ValueError, match="fail_rate"):
        QiskitJobsConfig(fail_rate=2)
    with pytest.raises(ValueError, match="rate_limit"):
        QiskitJobsConfig(rate_limit=0)
    with pytest.raises(ValueError, match="run_delay"):
        QiskitJobsConfig(run_delay=(1, 0))
