"""The MITM endpoint: a forward proxy that replies from recorded scenarios.

A request reaches it in absolute-form (``GET http://host/path``), inside a ``CONNECT`` tunnel
whose TLS it terminates with a certificate for that host, or in origin-form with a ``Host``
header (a reverse proxy under test that uses it as its upstream). Everything it answers is
recorded as a Handling, like any endpoint's.

This module is the glue and the Python API. The parts: :mod:`.dispatch` picks the service (and
keeps the rule that the MITM is never an open proxy), :mod:`.replay` holds the replay state
and picks the interaction, :mod:`.callbacks` sends callbacks, :mod:`.recording` writes what
recording forwarded, :mod:`.management` is the HTTP API, and the services are a
:class:`~.services.ServiceTable`. Each part guards its own state with its own lock; this
module holds none of them while it calls another part, and has no state of its own to guard.

A replay, a miss or a refusal never waits: the dispatcher is then marked ``non_blocking`` and
the endpoint answers on its poll thread. Forwarding (the whitelist, recording) and the
management API run on a connection's own thread.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import client, forwarding
from ..endpoint import Endpoint, EndpointOwner
from ..errors import DeproxyError, ScenarioError
from ..handlers import Handler, HandlerContext, non_blocking
from ..models import Request, Response
from ..redaction import DEFAULT as DEFAULT_REDACTION
from . import dispatch, management
from .callbacks import CallbackRunner
from .dispatch import Route, bad_request
from .recording import record_exchange
from .replay import Miss, ReplayState, Settings, replayed_response
from .scenarios import ScenarioStore
from .services import Service, ServiceTable, apply_whitelist, load_services_file, parse_services
from .targets import BadTarget, Upstreams, split_authority

log = logging.getLogger("pytest_deproxy.mitm")

# The variables that name a CA file, for: requests, OpenSSL (Python's ssl, httpx, aiohttp),
# curl, git, Node, pip.
CA_VARIABLES = (
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
)


class MitmEndpoint(Endpoint):
    """The scenario-replaying forward proxy. Made by :meth:`Deproxy.add_mitm_endpoint`."""

    def __init__(
        self,
        owner: EndpointOwner,
        *,
        name: str,
        hostname: str,
        port: int,
        scenarios_path: str | os.PathLike[str],
        active_scenario: str = "default",
        record: bool = False,
        services: list[dict[str, Any]] | None = None,
        whitelist: Iterable[str] | None = None,
        upstreams: Mapping[str, str] | None = None,
        redact_headers: Iterable[str] = (),
        redact_query: Iterable[str] = (),
        redact_body_keys: Iterable[str] = (),
        verify_upstream: bool = True,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        if not isinstance(verify_upstream, bool):
            raise TypeError(f"verify_upstream takes True or False, not {verify_upstream!r}")
        self.scenarios = ScenarioStore(scenarios_path)
        listed = parse_services(services) if services is not None else None
        if listed is None:
            listed = load_services_file(Path(scenarios_path)) or []
        self._environ = environ
        self._services = ServiceTable(apply_whitelist(listed, whitelist, environ))
        self._upstreams = Upstreams(upstreams)
        self.verify_upstream = verify_upstream
        self._state = ReplayState(active_scenario, record)
        self.redaction = DEFAULT_REDACTION.adding(redact_headers, redact_query, redact_body_keys)
        self._report = owner.report_error
        # What _dispatcher_for found for the request this thread last asked it about (the
        # handler it chose runs next, on the same thread): the route, and the settings.
        self._routed = threading.local()
        self._answer_at_once = non_blocking(self._replay_at_once)
        self._callbacks = CallbackRunner(
            name,
            upstream=lambda target: self._upstream_for(target),  # looked up at each callback
            ca=owner.ca,
            report=owner.report_error,
        )
        super().__init__(
            owner,
            name=name,
            hostname=hostname,
            port=port,
            # The dispatcher answers everything: a call's handlers are for the servers behind.
            handler_for=self._dispatcher_for,
            tunnels=self._intercept,
        )

    # -- the Python side -------------------------------------------------------------------

    @property
    def active_scenario(self) -> str:
        return self._state.settings().scenario

    def set_scenario(self, name: str) -> None:
        """Switch the active scenario (replay counts start again)."""
        self._state.merge_config({"active_scenario": name})

    @property
    def recording(self) -> bool:
        return self._state.settings().recording

    def set_recording(self, enable: bool) -> None:
        """Switch recording on or off (replay counts start again)."""
        self._state.set_recording(enable)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the config (``{"active_scenario": ..., ...}``, as ``GET /config``)."""
        return self._state.config

    def replace_config(self, config: dict[str, Any]) -> None:
        """Set the whole config, as ``POST /config`` (replay counts start again)."""
        self._state.replace_config(config)

    def merge_config(self, update: dict[str, Any]) -> None:
        """Add ``update``'s keys to the config in one step, as ``PUT /config``."""
        self._state.merge_config(update)

    @property
    def services(self) -> list[Service]:
        """The services requests are dispatched to, in order (the management service aside)."""
        return self._services.snapshot()

    def set_services(self, services: list[Service]) -> None:
        """Dispatch to ``services`` from now on, as ``PUT`` and ``POST /services``
        (``$MITM_PROXY_WHITELIST``, when set, still gives the whitelist's hosts)."""
        self._services.replace(apply_whitelist(services, None, self._environ))

    def merge_services(self, services: list[Service]) -> None:
        """Replace the services of the same names and add the others, in one step
        (``$MITM_PROXY_WHITELIST``, when set, still gives the whitelist's hosts)."""
        self._services.merge(apply_whitelist(services, None, self._environ))

    def scenario_tree(self) -> dict[str, Any]:
        return self.scenarios.tree()

    def interactions(self, service_name: str) -> dict[str, dict[str, int]]:
        """``{"interaction_0": {"num_calls": N}, ...}`` for the active scenario, in file order."""
        recorded = self.scenarios.service(self.active_scenario, service_name)
        counts = self._state.replays(service_name)
        return {i.name: {"num_calls": counts.get(i.name, 0)} for i in recorded.interactions}

    def assert_interaction_used(
        self, service_name: str, interaction: str, times: int | None = None
    ) -> None:
        """Fail unless ``interaction`` was replayed (``times`` times if given); lists counts."""
        counts = self.interactions(service_name)
        calls = counts.get(interaction, {}).get("num_calls", 0)
        if (times is None and calls) or calls == times:
            return
        listing = "\n".join(f"  {name}: {c['num_calls']} calls" for name, c in counts.items())
        expected = "at least once" if times is None else f"{times} times"
        raise AssertionError(
            f"{interaction} of {service_name} in scenario {self.active_scenario!r} was expected to "
            f"be replayed {expected}, but was replayed {calls} times. All counts:\n"
            f"{listing or '  (the service has no interactions in this scenario)'}"
        )

    @property
    def misses(self) -> list[Miss]:
        """Every request no recorded interaction answered, with the reasons."""
        return self._state.misses

    @property
    def warnings(self) -> list[str]:
        """What loading scenario files let pass, once per file and key: an unknown top-level
        key (INSPIRE-MITMProxy ignores it; so does this, and says so here and in the log)."""
        return self.scenarios.warnings

    def proxy_env(self) -> dict[str, str]:
        """The environment a subprocess needs to go through this MITM and trust its CA:
        the proxy variables, and the CA file for requests, OpenSSL, curl, git, Node and pip.

        ``subprocess.run(cmd, env={**os.environ, **mitm.proxy_env()})``
        """
        ca_file = self.ca.cert_pem_path
        env = {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url}
        env.update({key.lower(): value for key, value in env.items()})
        for name in CA_VARIABLES:
            env[name] = ca_file
        return env

    def begin_shutdown(self, deadline: float | None = None) -> None:
        super().begin_shutdown(deadline)
        self._callbacks.begin_shutdown(deadline)

    def shutdown(self) -> None:
        super().shutdown()
        self._callbacks.shutdown()

    # -- the proxy side --------------------------------------------------------------------

    def _intercept(self, connect: Request) -> ssl.SSLContext | Response:
        """A CONNECT: the TLS context to intercept its tunnel with, or the 400 refusing it."""
        try:
            host, _ = split_authority(connect.path, "the CONNECT target", default_port=None)
        except BadTarget as problem:
            log.info("CONNECT %s -> 400: %s", connect.path[:200], problem)
            return bad_request(problem)
        return self.ca.server_context(host)

    def _dispatcher_for(self, request: Request) -> Handler:
        """The dispatcher, marked ``non_blocking`` when what it will do never waits (a replay,
        a miss, a refusal): the endpoint then answers on its poll thread. Forwarding (the
        whitelist, recording) and the management API keep a thread. Requests on the poll
        thread come through no tunnel; on a tunnel's thread, the dispatcher finds the route
        anew, through the tunnel."""
        route = dispatch.route(request, None, self._services.current())
        settings = self._state.settings()
        self._routed.last = (request, route, settings)
        if isinstance(route, Response):
            return self._answer_at_once
        if route.is_management or route.service.is_whitelist or settings.recording:
            return self._dispatch
        return self._answer_at_once

    def _replay_at_once(self, request: Request, context: HandlerContext) -> Response:
        """Answer as :meth:`_dispatcher_for` found, without waiting: a refusal, a replay or a
        miss, under the settings it saw (recording switched on since then begins with the
        next request). Through a tunnel (on a thread) the route is found anew."""
        asked, route, settings = getattr(self._routed, "last", (None, None, None))
        if asked is not request or context.tunnel is not None:
            return self._dispatch(request, context)
        if isinstance(route, Response):
            return route
        assert isinstance(route, Route) and isinstance(settings, Settings)
        return self._replay_or_record(request, route, settings)

    def _dispatch(self, request: Request, context: HandlerContext) -> Response:
        route = dispatch.route(request, context.tunnel, self._services.current())
        if isinstance(route, Response):
            return route
        if route.is_management:
            log.info("%s %s -> management", request.method, route.url)
            return management.handle(request, self)
        if route.service.is_whitelist:
            log.info("%s %s -> whitelist: pass through", request.method, route.url)
            try:
                return self._forward(request, route.target)
            except DeproxyError as exc:
                return dispatch.bad_gateway(route.incoming, exc)
        return self._replay_or_record(request, route)

    def _replay_or_record(
        self, request: Request, route: Route, settings: Settings | None = None
    ) -> Response:
        settings = self._state.settings() if settings is None else settings
        service, incoming = route.service.name, route.incoming
        try:  # may read files from disk: no replay lock is held meanwhile
            recorded = self.scenarios.service(settings.scenario, service)
        except ScenarioError as exc:
            self._report(exc)
            return dispatch.scenario_error(exc)
        interaction = self._state.choose(settings, service, incoming, recorded)
        if interaction is not None:
            log.info(
                "%s %s -> %s: replayed %s", incoming.method, route.url, service, interaction.name
            )
            self._callbacks.schedule(interaction)
            return replayed_response(interaction, request.method)
        if settings.recording:
            return self._record_upstream(request, route, settings)
        miss = self._state.miss(settings, service, incoming, recorded)
        log.info("%s %s -> %s: no match, 501", incoming.method, route.url, service)
        return dispatch.no_match(miss.explanation)

    def _record_upstream(self, request: Request, route: Route, settings: Settings) -> Response:
        """Forward ``request`` upstream and write the exchange as a new interaction."""
        service, url = route.service.name, route.url
        try:
            response = self._forward(request, route.target)
        except DeproxyError as exc:  # nothing came back from upstream: nothing to record
            return dispatch.bad_gateway(route.incoming, exc)
        try:
            path = record_exchange(
                self.scenarios.root,
                settings.scenario,
                service,
                request,
                url,
                response,
                self.redaction,
            )
        except ScenarioError as exc:
            self._report(exc)
            log.warning("%s %s -> %s: recording failed: %s", request.method, url, service, exc)
            return response
        log.info("%s %s -> %s: recorded as %s", request.method, url, service, path.name)
        return response

    def _upstream_for(self, target: client.Target) -> tuple[client.Target, str]:
        """Where a request for ``target`` goes (its host's ``upstreams`` entry, or itself)."""
        return self._upstreams.destination(target)

    def _forward(self, request: Request, target: client.Target) -> Response:
        """The upstream's answer, the ``Host`` header kept; raises DeproxyError when none came.
        Its TLS is verified against the system's CAs and ``mitm.ca``, unless
        ``verify_upstream`` is off (INSPIRE-MITMProxy's ``--ssl-insecure``)."""
        destination, path = self._upstream_for(target)
        https = destination.scheme == "https"
        return forwarding.forward(
            request,
            destination,
            path=path,
            host=None,  # the MITM stands in for the original host: the upstream sees its name
            timeout=forwarding.FORWARD_TIMEOUT,
            verify=None if self.verify_upstream else False,
            ca=self.ca if https else None,
        )
