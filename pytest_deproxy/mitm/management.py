"""The management API on ``http://mitm-manager.local``: INSPIRE-MITMProxy's JSON shapes.

| call                               | does                                              |
|------------------------------------|---------------------------------------------------|
| GET /config                        | ``{"active_scenario": ...}``                      |
| PUT /config (merge, 204)           | POST /config (replace, 201)                       |
| PUT|POST /record ``{"enable": b}`` | recording on/off (400 without a boolean enable)   |
| GET /services                      | ``{"services": [{"type", "name", "hosts_list"}]}`` |
| PUT /services (add/replace by name, 204) | POST /services (replace all, 201)           |
| GET /scenarios                     | ``{scenario: {"responses": {service: [files]}}}`` |
| GET /service/<name>/interactions   | ``{"interaction_0": {"num_calls": N}}``, 404 if unknown |

Rules kept here: a bad request changes nothing and gets a 400 that says what was wrong; no
body, however malformed or deeply nested, gets a 500. Each change is one call to the MITM,
which makes it in one step (``PUT`` merges are never a read here and a write later), so
changes sent at once from many connections all take effect.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import urlsplit

from .._version import __version__
from ..models import Request, Response
from .services import MANAGEMENT_SERVICE, Service, parse_services

MAX_NESTING = 32  # INSPIRE-MITMProxy's documents nest 3 deep; json.loads recurses per level


class ManagedMitm(Protocol):
    """What the management API drives (a :class:`MitmEndpoint`)."""

    @property
    def config(self) -> dict[str, Any]: ...

    def replace_config(self, config: dict[str, Any]) -> None: ...

    def merge_config(self, update: dict[str, Any]) -> None: ...

    def set_recording(self, enable: bool) -> None: ...

    @property
    def services(self) -> list[Service]: ...

    def set_services(self, services: list[Service]) -> None: ...

    def merge_services(self, services: list[Service]) -> None: ...

    def scenario_tree(self) -> dict[str, Any]: ...

    def interactions(self, service_name: str) -> dict[str, dict[str, int]]: ...


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_response(status: int, document: Any = None) -> Response:
    body = "" if document is None else json.dumps(document, indent=2) + "\n"
    return Response(
        status,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Server": f"pytest-deproxy-mitm/{__version__}",
        },
        body=body,
    )


def _json_body(request: Request) -> Any:
    """The body as JSON (None if empty); BadRequest if it is not JSON or is nested too deeply."""
    too_deep = BadRequest(
        f"the body is nested too deeply: the management API takes at most {MAX_NESTING} "
        "levels of arrays and objects"
    )
    try:
        document = json.loads(request.raw_body or b"null")
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if _nesting(document) > MAX_NESTING:
        raise too_deep
    return document


def _nesting(document: Any) -> int:
    """How many levels of arrays and objects ``document`` has, counted without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending and deepest <= MAX_NESTING:
        value, depth = pending.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            pending.extend((item, depth + 1) for item in value)
    return deepest


def _json_object(request: Request) -> dict[str, Any]:
    document = _json_body(request)
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def handle(request: Request, mitm: ManagedMitm) -> Response:
    """Answer one management request."""
    path = urlsplit(request.path).path.rstrip("/") or "/"
    try:
        return _route(request.method, path, request, mitm)
    except BadRequest as problem:
        return json_response(problem.status, {"error": str(problem)})


def _route(method: str, path: str, request: Request, mitm: ManagedMitm) -> Response:
    if path == "/config":
        if method == "GET":
            return json_response(200, mitm.config)
        if method in ("PUT", "POST"):
            update = _json_object(request)
            try:
                mitm.merge_config(update) if method == "PUT" else mitm.replace_config(update)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            return json_response(204 if method == "PUT" else 201)
    elif path == "/record":
        if method in ("PUT", "POST"):
            enable = _json_object(request).get("enable")
            if not isinstance(enable, bool):
                raise BadRequest('send {"enable": true} or {"enable": false}')
            mitm.set_recording(enable)
            return json_response(204 if method == "PUT" else 201)
    elif path == "/services":
        if method == "GET":
            listed = [MANAGEMENT_SERVICE, *mitm.services]
            return json_response(200, {"services": [s.to_dict() for s in listed]})
        if method in ("PUT", "POST"):
            return _change_services(method, request, mitm)
    elif path == "/scenarios":
        if method == "GET":
            return json_response(200, mitm.scenario_tree())
    elif path.startswith("/service/") and path.endswith("/interactions"):
        if method == "GET":
            name = path[len("/service/") : -len("/interactions")]
            if name not in {s.name for s in mitm.services}:
                raise BadRequest(f"there is no service called {name!r}", 404)
            return json_response(200, mitm.interactions(name))
    else:
        raise BadRequest(f"no management call at {path}", 404)
    raise BadRequest(f"{method} is not allowed on {path}", 405)


def _change_services(method: str, request: Request, mitm: ManagedMitm) -> Response:
    document = _json_body(request)
    try:
        given = parse_services(document)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if method == "POST":
        mitm.set_services(given)
        return json_response(201)
    mitm.merge_services(given)  # one step: a concurrent change is never lost
    return json_response(204)
