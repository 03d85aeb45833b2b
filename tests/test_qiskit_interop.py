"""IBM's own Qiskit client (``qiskit-ibm-runtime``, the ``interop`` extra) against the emulator.

The vendor's client is the judge of fidelity: it must authenticate with the emulator's IAM
tokens (it decodes them as JWTs, and falls back to sending the raw API key when it cannot),
find its instance and backends, and open, read, drain and cancel sessions through its own
API client, with requests the emulator accepts. It is synchronous (``requests``), so the
emulator runs in its own thread (``threaded_emulator``).

It reaches the emulator through its own settings: ``IAM_URL``, ``GLOBAL_SEARCH_URL`` and
``GLOBAL_CATALOG_URL`` (see :func:`aiocompute.emulator._qiskit_platform.service_urls`), and a
``url_resolver`` (a documented argument of ``QiskitRuntimeService``) that records where the
client would have gone, then sends it to the emulator: an emulator on a loopback port cannot
be reached by the host name the client builds from the CRN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

# IBM's client and what it is built on: in the test extra, so never skipped. The client
# itself (qiskit_ibm_runtime, about 2 s to import) is imported by the tests that use it, so
# that collecting the suite does not pay for it on every pytest-xdist worker.
import ibm_cloud_sdk_core as sdk_core
import jwt
import pytest
import requests

from aiocompute import sync
from aiocompute.emulator import Emulator, QiskitEmulatorConfig
from aiocompute.emulator import qiskit as emulated_qiskit
from aiocompute.emulator._qiskit_platform import service_urls

US = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:inst-us::"
EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/abc:inst-eu::"
KEY = "qiskit-key"

pytestmark = [
    pytest.mark.emulator(qiskit=QiskitEmulatorConfig(instances=[US, EU])),
    pytest.mark.xdist_group("ibm-client"),  # one worker imports IBM's client, not each
]

# The vendor's client warns this, then sends "Authorization: apikey <key>", when it cannot
# read the IAM token (the bug this file guards against): make it an error.
FALLBACK = "Unable to retrieve IBM Cloud access token"


@pytest.fixture
def ibm_env(threaded_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The vendor's settings pointing at the emulator, and none of the user's."""
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_URL", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in service_urls(threaded_emulator.url + emulated_qiskit.PREFIX).items():
        monkeypatch.setenv(name, value)
    return threaded_emulator


@pytest.fixture
def no_fallback() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=FALLBACK)
        yield


def resolver_to(emu: Emulator, seen: list[str]) -> Callable[..., str]:
    """A ``url_resolver`` that notes the vendor's own choice of API base, then answers the
    emulator's."""
    from qiskit_ibm_runtime.api import utils as api_utils

    def resolve(url: str, instance: str, private_endpoint: bool | None, channel: str) -> str:
        seen.append(
            api_utils.default_runtime_url_resolver(url, instance, bool(private_endpoint), channel)
        )
        return emu.qiskit_url + "/v1"

    return resolve


@pytest.mark.usefixtures("no_fallback")
@pytest.mark.parametrize(
    ("crn", "host"),
    [(US, "https://quantum.cloud.ibm.com"), (EU, "https://eu-de.quantum.cloud.ibm.com")],
)
def test_the_vendors_client_opens_and_closes_sessions(
    ibm_env: Emulator, crn: str, host: str
) -> None:
    import qiskit_ibm_runtime as runtime
    from qiskit_ibm_runtime import session as runtime_session

    emu = ibm_env
    seen: list[str] = []
    before = dict(emu.stats)
    service = runtime.QiskitRuntimeService(
        channel="ibm_quantum_platform",
        token=KEY,
        instance=crn,
        url="https://cloud.ibm.com",
        url_resolver=resolver_to(emu, seen),
    )
    # It found the instance through Global Search (and its plan in Global Catalog), with a
    # bearer token from the emulator's IAM, and listed the instance's backends.
    assert crn in [i["crn"] for i in service.instances()]
    assert seen
    assert set(seen) == {f"{host}/api/v1"}  # where it would have gone: the CRN's region
    backend = service.backend("ibm_kyiv")
    assert backend.name == "ibm_kyiv"

    # A session, through the vendor's public API: created, read, drained on exit.
    with runtime.Session(backend=backend, max_time=600) as session:
        sid = session.session_id
        assert sid in emu.qiskit.sessions
        details = session.details()
        assert details is not None
        assert (details["id"], details["max_time"]) == (sid, 600)
        assert session.status() in {"Pending", "In progress, accepting new jobs"}
    record = emu.qiskit.sessions[sid]
    assert record.create_body == {
        "mode": "dedicated",
        "backend": "ibm_kyiv",
        "instance": crn,
        "max_ttl": 600,
    }
    assert (record.instance, record.user_id, record.accepting_jobs) == (crn, "user-alice", False)

    # A batch, cancelled: closed at once.
    batch = runtime.Batch(backend=backend)
    assert emu.qiskit.sessions[batch.session_id].create_body == {
        "mode": "batch",
        "backend": "ibm_kyiv",
        "instance": crn,  # no max_ttl when none is set
    }
    batch.cancel()
    assert batch.status() == "Closed"

    # Extra create fields (the advanced sessions' ones) are accepted and ignored.
    advanced = runtime_session.AdvancedSession(backend=backend, private=True)
    assert emu.qiskit.sessions[advanced.session_id].create_body["private"] is True
    advanced.close()

    # IAM got only its form: never the instance CRN or the API version.
    assert emu.qiskit.iam_header_names
    for names in emu.qiskit.iam_header_names:
        assert not names & {"service-crn", "ibm-api-version", "authorization"}
    assert emu.qiskit.api_versions >= {"2026-04-15"}
    calls = {k: v - before.get(k, 0) for k, v in emu.stats.items()}
    for key in ("global_search", "catalog_entry", "list_backends", "backend_configuration"):
        assert calls[f"qiskit.{key}"] >= 1

    # Our client reads what the vendor's created, with the same key and instance.
    with sync.QiskitRuntimeClient(
        token=KEY, instance=crn, base_url=emu.qiskit_url, iam_url=emu.qiskit_iam_url
    ) as ours:
        assert ours.sessions.get(batch.session_id).state == "closed"
        # ... and the vendor's reads what ours created (once active it names its backend).
        mine = ours.sessions.create("ibm_fez")
        ours.sessions.wait(mine.id, until="active", timeout=60)
    theirs = runtime.Batch.from_id(mine.id, service)  # "batch", our default mode
    assert theirs.backend() == "ibm_fez"
    theirs.cancel()
    assert emu.qiskit.sessions[mine.id].state == "closed"


def test_iam_tokens_are_jwts_the_vendors_sdk_reads(ibm_env: Emulator) -> None:
    # The token manager IBM's client uses decodes the token to know when to refresh it.
    manager = sdk_core.IAMTokenManager(KEY, url=ibm_env.qiskit_iam_url)
    token = manager.get_token()
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    info = manager.token_info
    assert {"iat", "exp", "sub"} <= set(claims)
    assert claims["exp"] - claims["iat"] == info["expires_in"] == 3600
    assert claims["exp"] == info["expiration"] == manager.expire_time
    assert manager.refresh_time < manager.expire_time  # it will refresh before expiry
    # The emulator checks the signature: the same claims signed by another key are refused.
    forged = jwt.encode(claims, "not-the-emulator's-key-" + "x" * 16, algorithm="HS256")
    url = f"{ibm_env.qiskit_url}/v1/backends"
    for bearer, status in ((token, 200), (forged, 401)):
        answer = requests.get(
            url, headers={"Authorization": f"Bearer {bearer}", "Service-CRN": US}, timeout=60
        )
        assert answer.status_code == status


@pytest.mark.parametrize(
    ("env", "crn"),
    [
        ({}, US),
        ({}, EU),
        ({"QISKIT_IBM_URL": "https://cloud.ibm.com"}, EU),
        ({"QISKIT_IBM_URL": "https://test.cloud.ibm.com/"}, US),
        ({"QISKIT_IBM_URL": "https://test.cloud.ibm.com"}, EU),
    ],
)
def test_our_client_reads_the_settings_as_the_vendors_does(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], crn: str
) -> None:
    from qiskit_ibm_runtime import accounts
    from qiskit_ibm_runtime.api import client_parameters

    # The same environment, read by both clients: the same API base (ours has no /v1).
    for name in ("QISKIT_IBM_URL", "QISKIT_IBM_CHANNEL", "AIOCOMPUTE_QISKIT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "some-key")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", crn)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    account = accounts.AccountManager.get(channel="ibm_quantum_platform")
    assert account is not None
    theirs = client_parameters.ClientParameters(
        channel=account.channel, token=account.token, url=account.url, instance=account.instance
    ).get_runtime_api_base_url()
    with sync.QiskitRuntimeClient() as ours:
        assert ours._async.instance == account.instance
        assert ours._async._transport.base_url + "/v1" == theirs
