"""Dispatch: which service answers a request, and the answers the MITM gives by itself.

The dispatcher finds the request's host (:mod:`.targets`) and hands the request to the first
service whose hosts include it: the management API, a whitelisted host (passed through) or a
recorded service (replayed, or recorded). What no service can answer gets an answer from here
that says why and what to do: 400 for a target the MITM will not act on, 501 when no service
handles the host or nothing recorded matches, 502 when the upstream failed, 500 for a
scenario file that cannot be loaded.

Rule kept here: the MITM is never an open proxy. The host that picks the service is the only
host a request is sent to (or that host's ``upstreams`` entry): a request whose URL, tunnel and
``Host`` header name different hosts, or whose target is malformed, is answered 400. Pure: no
I/O, no state (but :func:`.targets.located`'s memory of a pure function's results); the caller
passes the services as they are now.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .. import client
from ..errors import DeproxyError, ScenarioError
from ..models import Request, Response
from .matching import IncomingRequest
from .services import MANAGEMENT_SERVICE, Service
from .targets import BadTarget, located

log = logging.getLogger("pytest_deproxy.mitm")


@dataclass(frozen=True)
class Route:
    """Where a request goes: the service that answers it, for which target."""

    service: Service
    target: client.Target
    incoming: IncomingRequest  # the request as matching sees it (its whole URL)

    @property
    def url(self) -> str:
        return self.incoming.url

    @property
    def is_management(self) -> bool:
        return self.service is MANAGEMENT_SERVICE


def route(request: Request, tunnel: str | None, services: Sequence[Service]) -> Route | Response:
    """The service that answers ``request`` (which came through ``tunnel``, if any), or the
    answer to send when none can: 400 for a bad target, 501 for a host no service handles."""
    try:
        target, url = located(request.path, request.headers.get("Host"), tunnel)
    except BadTarget as problem:
        log.info("%s %s -> 400: %s", request.method, request.path[:200], problem)
        return bad_request(problem)
    incoming = IncomingRequest(request.method, url, request.headers, request.raw_body)
    host = target.host
    if MANAGEMENT_SERVICE.handles(host):
        return Route(MANAGEMENT_SERVICE, target, incoming)
    service = next((s for s in services if s.handles(host)), None)
    if service is None:
        log.info("%s %s -> no service: 501", request.method, url)
        return no_service(incoming, host, [MANAGEMENT_SERVICE, *services])
    return Route(service, target, incoming)


# -- the answers the MITM gives by itself ------------------------------------------------


def text_response(status: int, reason: str, text: str) -> Response:
    return Response(status, reason, {"Content-Type": "text/plain; charset=utf-8"}, text + "\n")


def bad_request(problem: BadTarget) -> Response:
    """The 400 for a request the MITM will not act on; the connection closes after it."""
    response = text_response(400, "Bad Request", f"Bad Request: {problem}")
    response.headers.add("Connection", "close")
    return response


def no_service(incoming: IncomingRequest, host: str, services: Sequence[Service]) -> Response:
    """The 501 for a host no service handles, listing every service and its hosts."""
    listing = "\n".join(f"  {s.name}: {', '.join(s.hosts)}" for s in services)
    return text_response(
        501,
        "NoServicesForRequest",
        f"NoServicesForRequest: no service handles host {host!r} "
        f"({incoming.method} {incoming.url}).\nServices and their hosts:\n{listing}\n"
        "Add the host to a service (services=..., services.yaml or PUT /services) "
        "or to the whitelist.",
    )


def no_match(explanation: str) -> Response:
    """The 501 for a request nothing recorded answers; ``explanation`` says why."""
    return text_response(501, "NoMatchingRecording", f"NoMatchingRecording: {explanation}")


def bad_gateway(incoming: IncomingRequest, error: DeproxyError) -> Response:
    """The 502 for a request whose upstream gave no answer."""
    log.info("%s %s -> upstream failed: %s", incoming.method, incoming.url, error)
    return text_response(502, "Bad Gateway", f"the upstream of {incoming.url} failed: {error}")


def scenario_error(error: ScenarioError) -> Response:
    """The 500 for a scenario that cannot be loaded (the error also goes to the test)."""
    return text_response(500, "Scenario Error", f"ScenarioError: {error}")
