"""What IBM's own Qiskit client reads besides sessions: backends and IBM Cloud's instance look-up.

``qiskit-ibm-runtime`` (``QiskitRuntimeService``) makes these calls when it is built, before
any session: it checks that the instance CRN is one of the account's (IBM Cloud Global Search,
then Global Catalog for each instance's plan), then lists the instance's backends. They are
answered here, minimally but in the services' own shapes, so that the vendor's client can run
against the emulator (``tests/test_qiskit_interop.py``). Layout, under ``/qiskit``::

    GET  /api/v1/backends                       the backends        qiskit.list_backends
    GET  /api/v1/backends/{name}/configuration  one's configuration qiskit.backend_configuration
    POST /global-search/v3/resources/search     Global Search       qiskit.global_search
    GET  /global-catalog/api/v1/{id}            Global Catalog      qiskit.catalog_entry

Every call needs a bearer token from the emulator's IAM; ``/v1/backends`` also the
``Service-CRN`` header, like the sessions. IBM's client finds Global Search and Global
Catalog through the ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` environment variables
(see :func:`service_urls`) and IAM through ``IAM_URL``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from ._config import QiskitEmulatorConfig

__all__ = [
    "GLOBAL_CATALOG_PATH",
    "GLOBAL_SEARCH_PATH",
    "QiskitService",
    "add_routes",
    "service_urls",
]

#: Global Search's base under the Qiskit prefix (the service's ``https://api.global-search-tagging.cloud.ibm.com``).
GLOBAL_SEARCH_PATH = "/global-search"
#: Global Catalog's base under the Qiskit prefix (the service's ``https://globalcatalog.cloud.ibm.com/api/v1``).
GLOBAL_CATALOG_PATH = "/global-catalog/api/v1"

# The plan every emulated instance is on, as Global Catalog describes it.
_PLAN_ID = "emu-plan-open"
_PLAN = {"name": "open", "display_name": "Open", "pricing": "free"}
# Qubit counts and processor families of IBM's machines of those names; others get 127.
_PROCESSORS: dict[str, tuple[int, str, int]] = {
    "ibm_brisbane": (127, "Eagle", 3),
    "ibm_kyiv": (127, "Eagle", 3),
    "ibm_torino": (133, "Heron", 1),
    "ibm_fez": (156, "Heron", 2),
}


class QiskitService(Protocol):
    """What the handlers here use of :class:`~aiocompute.emulator.QiskitState` (which imports
    this module, so it is not imported here)."""

    config: QiskitEmulatorConfig

    def authenticate_user(self, request: web.Request) -> str: ...

    def _authenticate(self, request: web.Request) -> tuple[str, str]: ...

    async def _body(self, request: web.Request) -> dict[str, Any]: ...

    def error_response(self, status: int, code: Any, message: str) -> web.Response: ...

    async def answer(
        self,
        handler: Callable[[Any, web.Request], Awaitable[web.StreamResponse]],
        request: web.Request,
    ) -> web.StreamResponse: ...


def service_urls(qiskit_root: str) -> Mapping[str, str]:
    """The environment variables that point IBM's client at the emulator's IAM, Global
    Search and Global Catalog; ``qiskit_root`` is where the emulator serves the Qiskit API
    (``emulator.url + aiocompute.emulator.qiskit.PREFIX``)."""
    root = qiskit_root.rstrip("/")
    return {
        "IAM_URL": root + "/iam",
        "GLOBAL_SEARCH_URL": root + GLOBAL_SEARCH_PATH,
        "GLOBAL_CATALOG_URL": root + GLOBAL_CATALOG_PATH,
    }


def _device(name: str) -> dict[str, Any]:
    qubits, family, revision = _PROCESSORS.get(name, (127, "Eagle", 3))
    return {
        "name": name,
        "status": {"name": "online", "reason": "available"},
        "is_simulator": False,
        "qubits": qubits,
        "processor_type": {"family": family, "revision": revision},
        "queue_length": 0,
    }


def _instance_name(crn: str) -> str:
    # The CRN's eighth field is the service instance's id (empty in the emulator's default).
    fields = crn.split(":")
    ident = fields[7] if len(fields) > 7 and fields[7] else "instance"
    return f"emu-{ident}"


async def list_backends(state: QiskitService, request: web.Request) -> web.StreamResponse:
    """``GET /v1/backends`` -> ``{"devices": [...]}`` (``include_mocks`` is accepted)."""
    state._authenticate(request)
    return web.json_response({"devices": [_device(name) for name in state.config.backends]})


async def backend_configuration(state: QiskitService, request: web.Request) -> web.StreamResponse:
    """``GET /v1/backends/{name}/configuration``: a backend's configuration, in the shape IBM's
    client builds its backend objects from (which its ``Session`` needs), kept small: the
    qubits on a line, the backend's basis gates, no calibration data."""
    state._authenticate(request)
    name = request.match_info["name"]
    if name not in state.config.backends:
        return state.error_response(404, 1216, f"Backend {name} not found.")
    qubits, family, _ = _PROCESSORS.get(name, (127, "Eagle", 3))
    two_qubit = "cz" if family == "Heron" else "ecr"
    edges = [[i, i + 1] for i in range(qubits - 1)]
    one_qubit = {"id": [], "rz": ["theta"], "sx": [], "x": []}
    gates: list[dict[str, Any]] = [
        {
            "name": gate,
            "parameters": params,
            "qasm_def": f"gate {gate}",
            "coupling_map": [[q] for q in range(qubits)],
        }
        for gate, params in one_qubit.items()
    ]
    gates.append(
        {
            "name": two_qubit,
            "parameters": [],
            "qasm_def": f"gate {two_qubit}",
            "coupling_map": edges,
        }
    )
    return web.json_response(
        {
            "backend_name": name,
            "backend_version": "1.0.0",
            "n_qubits": qubits,
            "basis_gates": [*one_qubit, two_qubit],
            "gates": gates,
            "coupling_map": edges,
            "local": False,
            "simulator": False,
            "conditional": False,
            "open_pulse": False,
            "memory": True,
            "max_shots": 100000,
            "max_experiments": 300,
            "supported_instructions": [*one_qubit, two_qubit, "measure", "delay", "reset"],
            "dt": 5e-10,
            "online_date": "2023-01-01T00:00:00Z",
            "processor_type": {"family": family},
        }
    )


async def global_search(state: QiskitService, request: web.Request) -> web.StreamResponse:
    """``POST /v3/resources/search`` with ``{"query", "fields", "search_cursor"}``.

    A ``service_name:quantum-computing`` query finds every configured instance, on one
    page (no ``search_cursor`` in the answer); any other query finds nothing.
    """
    state.authenticate_user(request)
    body = await state._body(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        return state.error_response(400, 400, "query is required")
    items = []
    if "service_name:quantum-computing" in query.replace(" ", ""):
        items = [
            {
                "crn": crn,
                "name": _instance_name(crn),
                "service_plan_unique_id": _PLAN_ID,
                "tags": [],
                "doc": {"extensions": {"virtual_private_endpoints": {}, "allocations": ["emu"]}},
            }
            for crn in sorted(state.config.instances)
        ]
    return web.json_response({"items": items, "limit": len(items)})


async def catalog_entry(state: QiskitService, request: web.Request) -> web.StreamResponse:
    """``GET /{id}``: a plan's catalog entry (its display name and pricing type)."""
    state.authenticate_user(request)
    if request.match_info["id"] != _PLAN_ID:
        return state.error_response(404, 404, "Catalog entry not found")
    return web.json_response(
        {
            "id": _PLAN_ID,
            "name": _PLAN["name"],
            "kind": "plan",
            "overview_ui": {"en": {"display_name": _PLAN["display_name"]}},
            "metadata": {"pricing": {"type": _PLAN["pricing"]}},
        }
    )


Handler = Callable[[QiskitService, web.Request], Awaitable[web.StreamResponse]]

#: (HTTP method, path under the Qiskit prefix, route method name, handler).
ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    ("GET", "/api/v1/backends", "list_backends", list_backends),
    (
        "GET",
        "/api/v1/backends/{name}/configuration",
        "backend_configuration",
        backend_configuration,
    ),
    ("POST", f"{GLOBAL_SEARCH_PATH}/v3/resources/search", "global_search", global_search),
    ("GET", f"{GLOBAL_CATALOG_PATH}/{{id}}", "catalog_entry", catalog_entry),
)


def add_routes(app: web.Application, state: QiskitService, api: str) -> None:
    """Add the routes above to the Qiskit sub-application, named ``"<api>.<method>"``."""
    for verb, path, method, function in ROUTES:

        async def handler(
            request: web.Request, _function: Handler = function
        ) -> web.StreamResponse:
            return await state.answer(_function, request)

        app.router.add_route(verb, path, handler, name=f"{api}.{method}")
