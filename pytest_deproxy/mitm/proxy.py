"""The MITM endpoint: a forward proxy that replies from recorded scenarios.

A request reaches it in absolute-form (``GET http://host/path``), inside a ``CONNECT`` tunnel
whose TLS it terminates with a certificate for that host, or in origin-form with a ``Host``
header (a reverse proxy under test that uses it as its upstream). The dispatcher hands it to
the first service whose hosts include the request's host: the management API, a whitelisted
host (passed through), or a recorded service (replayed, recorded, or answered 501 with the
reasons nothing matched). Everything it answers is recorded as a Handling, like any endpoint's.

Rule kept here: it is never an open proxy. The host that picks the service is the only host a
request is sent to (or that host's ``upstreams`` entry): a request whose URL, tunnel and
``Host`` header name different hosts, or whose target is malformed (:mod:`.targets` says
which), is answered 400 saying what was wrong, on the record like any other answer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import client
from ..endpoint import Endpoint, HandlingRegistry
from ..errors import DeproxyError, ScenarioError
from ..handlers import Handler, HandlerContext
from ..models import Headers, Request, Response
from ..redaction import DEFAULT as DEFAULT_REDACTION
from ..serving import Session
from . import management
from .matching import IncomingRequest, decide, explain
from .recording import encoded_body, interaction_document, write_interaction
from .interactions import Callback, Interaction
from .scenarios import ScenarioStore
from .services import (
    MANAGEMENT_SERVICE,
    ReplayState,
    Service,
    apply_whitelist,
    load_services_file,
    parse_services,
)
from .targets import BadTarget, locate, split_authority

log = logging.getLogger("pytest_deproxy.mitm")

HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ]
)
UPSTREAM_TIMEOUT = 30.0


@dataclass(frozen=True)
class Miss:
    """A request no recorded interaction answered, and why (``explanation``)."""

    service: str
    scenario: str
    request: IncomingRequest
    explanation: str


def _without_hop_by_hop(headers: Headers, *also: str) -> Headers:
    dropped = HOP_BY_HOP | {name.lower() for name in also}
    return Headers((n, v) for n, v in headers.items() if n.lower() not in dropped)


def text_response(status: int, reason: str, text: str) -> Response:
    return Response(status, reason, {"Content-Type": "text/plain; charset=utf-8"}, text + "\n")


def bad_request(problem: BadTarget) -> Response:
    """The 400 for a request the MITM will not act on; the connection closes after it."""
    response = text_response(400, "Bad Request", f"Bad Request: {problem}")
    response.headers.add("Connection", "close")
    return response


class MitmEndpoint(Endpoint):
    """The scenario-replaying forward proxy. Made by :meth:`Deproxy.add_mitm_endpoint`."""

    def __init__(
        self,
        registry: HandlingRegistry,
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
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.scenarios = ScenarioStore(scenarios_path)
        listed = parse_services(services) if services is not None else None
        if listed is None:
            listed = load_services_file(Path(scenarios_path)) or []
        self._services = apply_whitelist(listed, whitelist, environ)
        self._upstreams = {
            host.lower(): client.Target.parse(url) for host, url in (upstreams or {}).items()
        }
        self._state = ReplayState(active_scenario, record)
        self.redaction = DEFAULT_REDACTION.adding(redact_headers, redact_query, redact_body_keys)
        self._misses: list[Miss] = []
        self._callback_threads: list[threading.Thread] = []
        super().__init__(registry, name=name, hostname=hostname, port=port)

    # -- the Python side -------------------------------------------------------------------

    @property
    def active_scenario(self) -> str:
        return self._state.active_scenario

    def set_scenario(self, name: str) -> None:
        """Switch the active scenario (replay counts start again)."""
        self._state.merge_config({"active_scenario": name})

    @property
    def recording(self) -> bool:
        return self._state.recording

    def set_recording(self, enable: bool) -> None:
        """Switch recording on or off (replay counts start again)."""
        if not isinstance(enable, bool):
            raise TypeError(f"set_recording takes True or False, not {enable!r}")
        self._state.set_recording(enable)

    @property
    def config(self) -> dict[str, Any]:
        with self._state.lock:
            return dict(self._state.config)

    def replace_config(self, config: dict[str, Any]) -> None:
        self._state.replace_config(config)

    def merge_config(self, update: dict[str, Any]) -> None:
        self._state.merge_config(update)

    @property
    def services(self) -> list[Service]:
        with self._state.lock:
            return list(self._services)

    def set_services(self, services: list[Service]) -> None:
        with self._state.lock:
            self._services = list(services)

    def scenario_tree(self) -> dict[str, Any]:
        return self.scenarios.tree()

    def interactions(self, service_name: str) -> dict[str, dict[str, int]]:
        """``{"interaction_0": {"num_calls": N}, ...}`` for the active scenario, in file order."""
        recorded = self.scenarios.service(self.active_scenario, service_name)
        return {
            i.name: {"num_calls": self._state.replays(service_name, i.name)}
            for i in recorded.interactions
        }

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
        with self._lock:
            return list(self._misses)

    def proxy_env(self) -> dict[str, str]:
        """The environment a subprocess needs to go through this MITM and trust its CA."""
        ca_file = self.ca.cert_pem_path
        env = {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url}
        env.update({key.lower(): value for key, value in env.items()})
        env.update(
            {"REQUESTS_CA_BUNDLE": ca_file, "SSL_CERT_FILE": ca_file, "CURL_CA_BUNDLE": ca_file}
        )
        return env

    def shutdown(self) -> None:
        super().shutdown()
        with self._lock:
            threads = list(self._callback_threads)
        for thread in threads:
            thread.join(5)

    # -- the proxy side --------------------------------------------------------------------

    def _exchange(self, session: Session, request: Request) -> bool:
        if request.method != "CONNECT":
            return super()._exchange(session, request)
        try:
            host, _ = split_authority(request.path, "the CONNECT target", default_port=None)
        except BadTarget as problem:
            log.info("CONNECT %s -> 400: %s", request.path[:200], problem)
            data, keep_alive = self._answer(session, request, bad_request(problem))
            session.stream.write(data)
            return keep_alive
        session.stream.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._start_tls(session, self.ca.server_context(host))
        session.tunnel = request.path
        return True

    def _handler_for(self, request: Request) -> Handler:
        # The dispatcher decides; a call's default handler is meant for the servers behind.
        return self._dispatch

    def _dispatch(self, request: Request, context: HandlerContext) -> Response:
        try:
            target = locate(request.path, request.headers.get("Host"), context.tunnel)
        except BadTarget as problem:
            log.info("%s %s -> 400: %s", request.method, request.path[:200], problem)
            return bad_request(problem)
        url, host = target.origin + target.request_target, target.host
        incoming = IncomingRequest(request.method, url, request.headers, request.raw_body)
        service = next((s for s in [MANAGEMENT_SERVICE, *self.services] if s.handles(host)), None)
        if service is None:
            log.info("%s %s -> no service: 501", request.method, url)
            return self._no_service(incoming, host)
        if service is MANAGEMENT_SERVICE:
            log.info("%s %s -> management", request.method, url)
            return management.handle(request, self)
        if service.is_whitelist:
            log.info("%s %s -> whitelist: pass through", request.method, url)
            try:
                return self._forward(request, target)
            except DeproxyError as exc:
                return self._bad_gateway(request, url, exc)
        return self._replay_or_record(service, request, incoming, target)

    def _no_service(self, incoming: IncomingRequest, host: str) -> Response:
        listing = "\n".join(
            f"  {s.name}: {', '.join(s.hosts)}" for s in [MANAGEMENT_SERVICE, *self.services]
        )
        return text_response(
            501,
            "NoServicesForRequest",
            f"NoServicesForRequest: no service handles host {host!r} "
            f"({incoming.method} {incoming.url}).\nServices and their hosts:\n{listing}\n"
            "Add the host to a service (services=..., services.yaml or PUT /services) "
            "or to the whitelist.",
        )

    def _upstream_for(self, target: client.Target) -> tuple[client.Target, str]:
        """Where a request for ``target`` goes (its host's ``upstreams`` entry, or itself)."""
        mapped = self._upstreams.get(target.host)
        if mapped is None:
            return target, target.request_target
        return mapped, mapped.base_path + target.request_target

    def _forward(self, request: Request, target: client.Target) -> Response:
        """The upstream's answer; raises DeproxyError when none came."""
        destination, path = self._upstream_for(target)
        headers = _without_hop_by_hop(request.headers)
        if request.raw_body or request.method in ("POST", "PUT", "PATCH"):
            headers.add("Content-Length", str(len(request.raw_body)))
        forwarded = Request(request.method, path, headers, request.raw_body)
        answer = client.exchange(
            destination,
            forwarded,
            timeout=UPSTREAM_TIMEOUT,
            ca=self.ca if destination.scheme == "https" else None,
        )
        return Response(
            answer.code,
            answer.message,
            _without_hop_by_hop(answer.headers),
            answer.raw_body,
            answer.http_version,
        )

    @staticmethod
    def _bad_gateway(request: Request, url: str, error: DeproxyError) -> Response:
        log.info("%s %s -> upstream failed: %s", request.method, url, error)
        return text_response(502, "Bad Gateway", f"the upstream of {url} failed: {error}")

    def _replay_or_record(
        self,
        service: Service,
        request: Request,
        incoming: IncomingRequest,
        target: client.Target,
    ) -> Response:
        with self._state.lock:
            scenario, recording = self._state.active_scenario, self._state.recording
            try:
                recorded = self.scenarios.service(scenario, service.name)
            except ScenarioError as exc:
                self._registry.report_error(exc)
                return text_response(500, "Scenario Error", f"ScenarioError: {exc}")
            candidates = recorded.candidates(incoming.method, incoming.url)
            decision = decide(
                incoming, candidates, lambda i: self._state.replays(service.name, i.name)
            )
            if decision.interaction is not None:
                self._state.count_replay(service.name, decision.interaction.name)
        if decision.interaction is not None:
            log.info(
                "%s %s -> %s: replayed %s",
                incoming.method,
                incoming.url,
                service.name,
                decision.interaction.name,
            )
            self._schedule_callbacks(decision.interaction)
            return self._replayed(decision.interaction)
        if recording:
            return self._record_interaction(service, scenario, request, incoming, target)
        nearest = decide(
            incoming, recorded.interactions, lambda i: self._state.replays(service.name, i.name)
        )
        explanation = explain(
            incoming, nearest, f"service {service.name!r} in scenario {scenario!r}"
        )
        with self._lock:
            self._misses.append(Miss(service.name, scenario, incoming, explanation))
        log.info("%s %s -> %s: no match, 501", incoming.method, incoming.url, service.name)
        return text_response(501, "NoMatchingRecording", f"NoMatchingRecording: {explanation}")

    @staticmethod
    def _replayed(interaction: Interaction) -> Response:
        recorded = interaction.response
        headers = _without_hop_by_hop(recorded.headers)
        return Response(
            recorded.code, recorded.message, headers, encoded_body(recorded.body, recorded.headers)
        )

    def _record_interaction(
        self,
        service: Service,
        scenario: str,
        request: Request,
        incoming: IncomingRequest,
        target: client.Target,
    ) -> Response:
        try:
            response = self._forward(request, target)
        except DeproxyError as exc:  # nothing came back from upstream: nothing to record
            return self._bad_gateway(request, incoming.url, exc)
        sent = Request(
            request.method, request.path, _without_hop_by_hop(request.headers), request.raw_body
        )
        document = interaction_document(sent, incoming.url, response, self.redaction)
        try:
            path = write_interaction(self.scenarios.root, scenario, service.name, document)
        except ScenarioError as exc:
            self._registry.report_error(exc)
            log.warning(
                "%s %s -> %s: recording failed: %s",
                incoming.method,
                incoming.url,
                service.name,
                exc,
            )
            return response
        log.info(
            "%s %s -> %s: recorded as %s", incoming.method, incoming.url, service.name, path.name
        )
        return response

    # -- callbacks -------------------------------------------------------------------------

    def _schedule_callbacks(self, interaction: Interaction) -> None:
        with self._lock:
            self._callback_threads = [t for t in self._callback_threads if t.is_alive()]
            for number, callback in enumerate(interaction.callbacks):
                thread = threading.Thread(
                    target=self._run_callback,
                    args=(callback,),
                    name=f"deproxy-{self.name}-callback-{interaction.name}-{number}",
                    daemon=True,
                )
                self._callback_threads.append(thread)
                thread.start()

    def _run_callback(self, callback: Callback) -> None:
        url = callback.url
        try:
            if self._stopping.wait(callback.delay):
                return
            url = os.path.expandvars(callback.url)
            original = client.Target.parse(url)
            destination, path = self._upstream_for(original)
            headers = Headers((n, os.path.expandvars(v)) for n, v in callback.headers.items())
            request = client.build_request(
                original,
                callback.method,
                headers,
                callback.body,
                host=None,
                path=path,
                add_default_headers=True,
                chunked=False,
            )
            response = client.exchange(destination, request, timeout=UPSTREAM_TIMEOUT, ca=self.ca)
            log.info("callback %s %s -> %s", callback.method, url, response.code)
        except (DeproxyError, ValueError) as exc:
            log.warning("callback %s %s failed: %s", callback.method, url, exc)
            self._record_error(exc if isinstance(exc, DeproxyError) else DeproxyError(str(exc)))
        except Exception as exc:  # the thread must not die unheard: the test is told
            error = DeproxyError(
                f"callback {callback.method} {url} ({callback.where}) failed unexpectedly: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._registry.report_error(error)
