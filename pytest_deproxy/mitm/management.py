"""The management API on ``http://mitm-manager.local``: INSPIRE-MITMProxy's JSON shapes.

| call                               | answers                                           |
|------------------------------------|---------------------------------------------------|
| GET /config                        | 200 ``{"active_scenario": ...}``                  |
| PUT /config (merge)                | 204, no body                                      |
| POST /config (replace)             | 201 ``null``                                      |
| PUT /record ``{"enable": b}``      | 200 ``{"enabled": b}`` (the original: 204 + body) |
| POST /record ``{"enable": b}``     | 201 ``{"enabled": b}``                            |
| GET /services                      | 200 ``{"services": [{"type", "name", "hosts_list"}]}`` |
| PUT or POST /services (replace)    | 201 ``{"services": [...]}``, the new list         |
| GET /scenarios                     | 200 ``{scenario: {"responses": {service: [files]}}}`` |
| GET /service/<name>/interactions   | 200 ``{"interaction_0": {"num_calls": N}}``       |

Each answer is the original's, code and body, but where the original was broken: it sent a
body with its 204 to ``PUT /record``, which HTTP forbids (clients never read it, and on a
kept-alive connection it is read as the start of the next response), so that one is a 200
with the same body. Errors differ on purpose: 400 with ``{"error": ...}`` saying what was
wrong (the original: 400 with a text dump of the request), 404 for an unknown path or
service and 405 with ``Allow`` for a method a path does not take (the original: 501 for all).

Rules kept here: a bad request changes nothing and gets a 400 that says what was wrong; no
body, however malformed or deeply nested, gets a 500. Each change is one call to the MITM,
which makes it in one step, so changes sent at once from many connections all take effect.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .._version import __version__
from ..models import Request, Response
from .services import MANAGEMENT, MANAGEMENT_SERVICE, Service, parse_services

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

    def scenario_tree(self) -> dict[str, Any]: ...

    def interactions(self, service_name: str) -> dict[str, dict[str, int]]: ...


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, allow: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.allow = allow


_NO_BODY = object()


def json_response(status: int, document: Any = _NO_BODY) -> Response:
    """``document`` as JSON (``None`` is ``null``); with no document, no body."""
    body = "" if document is _NO_BODY else json.dumps(document, indent=2) + "\n"
    return Response(
        status,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Server": f"pytest-deproxy-mitm/{__version__}",
        },
        body=body,
    )


_ALLOWED = {
    "/config": "GET, PUT, POST",
    "/record": "PUT, POST",
    "/services": "GET, PUT, POST",
    "/scenarios": "GET",
}


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
        response = json_response(problem.status, {"error": str(problem)})
        if problem.allow is not None:
            response.headers.add("Allow", problem.allow)
        return response


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
            return json_response(204) if method == "PUT" else json_response(201, None)
    elif path == "/record":
        if method in ("PUT", "POST"):
            enable = _json_object(request).get("enable")
            if not isinstance(enable, bool):
                raise BadRequest('send {"enable": true} or {"enable": false}')
            mitm.set_recording(enable)
            return json_response(200 if method == "PUT" else 201, {"enabled": enable})
    elif path == "/services":
        if method == "GET":
            return json_response(200, _services_document(mitm))
        if method in ("PUT", "POST"):
            try:
                given = parse_services(_json_body(request))
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            mitm.set_services(given)  # both replace the list, as the original does
            return json_response(201, _services_document(mitm))
    elif path == "/scenarios":
        if method == "GET":
            return json_response(200, mitm.scenario_tree())
    elif path.startswith("/service/") and path.endswith("/interactions"):
        if method == "GET":
            name = unquote(path[len("/service/") : -len("/interactions")])
            if name == MANAGEMENT:
                return json_response(200, {})  # listed among the services, replays nothing
            if name not in {s.name for s in mitm.services}:
                raise BadRequest(f"there is no service called {name!r}", 404)
            return json_response(200, mitm.interactions(name))
        raise BadRequest(f"{method} is not allowed on {path}", 405, "GET")
    else:
        raise BadRequest(f"no management call at {path}", 404)
    raise BadRequest(f"{method} is not allowed on {path}", 405, _ALLOWED[path])


def _services_document(mitm: ManagedMitm) -> dict[str, Any]:
    return {"services": [s.to_dict() for s in [MANAGEMENT_SERVICE, *mitm.services]]}
