"""Deproxy: the object on both sides of the proxy under test.

Rule kept here: a call's chain is in its registry (:class:`~pytest_deproxy.registry.ChainRegistry`)
exactly while its ``make_request`` runs; endpoints file what reaches them there, and ask this
object which handler answers.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import client, crafting, handlers, serving, wire
from .client import ClientConnection, Target, Verify
from .endpoint import DEFAULT_MAX_BODY_SIZE, DEFAULT_REQUEST_TIMEOUT, Endpoint
from .errors import DeproxyError, TunnelRefused
from .handlers import Handler
from .models import TRACKING_HEADER, Body, HeaderItems, Request
from .pollthreads import UNPOOLED, PollThreads, on_poll_thread
from .proxyproto import ProxyHeader
from .record import DEFAULT_KEEP, Handling, MessageChain
from .registry import ChainRegistry
from .servingwait import SMALL_BODY, ServingWait, lend_to_caller
from .tls import CertificateAuthority

# Loaded when first used (add_mitm_endpoint, an HTTP/2 connection, websocket()): the YAML
# parser, h2 and wsproto are costs only their users pay.
if TYPE_CHECKING:
    from .h2client import H2ClientConnection
    from .mitm import MitmEndpoint
    from .websocket import WebSocketSession

HandlerMap = Mapping[Any, Handler]
AnyEndpoint = TypeVar("AnyEndpoint", bound=Endpoint)


def raise_errors(errors: list[BaseException]) -> None:
    """Raise what endpoint threads reported: one error as itself, several as a group."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(  # type: ignore[type-var]
            f"{len(errors)} errors in endpoint threads", errors
        )


def _check_hostname(hostname: object, method: str) -> None:
    """Refuse a hostname that would listen on every interface (None) or on none ("")."""
    if not isinstance(hostname, str) or not hostname:
        raise ValueError(
            f'{method} needs hostname, the address to listen on, such as "127.0.0.1" or '
            f'"::1" (got {hostname!r}; None would listen on every interface of this machine)'
        )


# make_request's sending arguments when none is given: client.PLAIN
_PLAIN = (False, None, None, "1.1", False, None)


@dataclass(frozen=True)
class _Routing:
    """What a call in flight asks of the endpoints its request reaches."""

    handlers: HandlerMap | None
    default_handler: Handler | None


_NO_ROUTING = _Routing(None, None)


def _routing(handlers: HandlerMap | None, default_handler: Handler | None) -> _Routing:
    if handlers is None and default_handler is None:
        return _NO_ROUTING  # the usual call: one shared, immutable routing
    return _Routing(handlers, default_handler)


class Deproxy:
    """Sends requests on the left of a proxy, serves them on the right, and ties the two.

    Use it as a context manager, or call :meth:`shutdown`::

        with Deproxy() as deproxy:
            server = deproxy.add_endpoint()
            chain = deproxy.make_request(server.url)
            assert chain.received_response.code == "200"
            assert len(chain.handlings) == 1
    """

    def __init__(
        self,
        default_handler: Handler | None = None,
        *,
        ca: CertificateAuthority | None = None,
        timeout: float = client.DEFAULT_TIMEOUT,
        keep_chains: int | None = DEFAULT_KEEP,
    ) -> None:
        """``keep_chains`` caps how many returned chains ``chains`` remembers: the latest
        10,000 by default, so that a long run costs bounded memory; ``None`` keeps every one.
        A chain that is no longer remembered stays whole for a test that holds it (its
        handlings included), but a late request carrying its id is then filed nowhere."""
        self.default_handler = default_handler
        self.timeout = timeout
        self._ca = ca
        # Where the CA comes from when it is first needed, if not given (None: a new one). The
        # deproxy fixture asks pytest for the session's deproxy_ca only then: most tests use
        # no TLS, and a session fixture requested by a test's fixture costs pytest work (and a
        # finalizer it keeps to the session's end) on every test.
        self._ca_source: Callable[[], CertificateAuthority] | None = None
        # A thread of its own for each endpoint's poll loop, ended at shutdown; the deproxy
        # fixture sets its session's pool, which keeps them for the next test's endpoints.
        self._poll_threads: PollThreads = UNPOOLED
        self._lock = threading.Lock()
        self._endpoints: list[Endpoint] = []
        self._serving_caller = threading.Lock()  # held by the caller that serves (see below)
        self._serving_thread: int | None = None  # ... and its thread's ident
        self._registry: ChainRegistry[_Routing] = ChainRegistry(keep_chains)
        # What endpoints call on every request: the registry's own, with no call in between.
        self.record: Callable[[Handling], None] = self._registry.record
        self.settled: Callable[[Handling], None] = self._registry.settled
        # The registry's calls in flight (live): an endpoint asks it at a glance whether any
        # chain could claim a request with no tracking id.
        self.in_flight_now: Collection[object] = self._registry.in_flight_now
        self._shut_down = False
        # Numbered per Deproxy, not per process: names and ids do not depend on test order.
        self._endpoint_numbers = itertools.count(1)
        self._connection_numbers = itertools.count(1)

    # -- the right side: endpoints ---------------------------------------------------------

    @property
    def ca(self) -> CertificateAuthority:
        """The CA behind every TLS endpoint of this Deproxy (made on first use if not given,
        or taken from the source the ``deproxy`` fixture gives it)."""
        with self._lock:
            if self._ca is None:
                source = self._ca_source
                self._ca = CertificateAuthority() if source is None else source()
            return self._ca

    @property
    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints)

    def add_endpoint(
        self,
        port: int = 0,
        name: str | None = None,
        hostname: str = "127.0.0.1",
        default_handler: Handler | None = None,
        *,
        tls: bool = False,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        keep_handlings: int | None = DEFAULT_KEEP,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        proxy_protocol: bool | str = False,
        client_certs: str | None = None,
        http2: bool | str = False,
    ) -> Endpoint:
        """Start an endpoint on ``hostname:port`` (``port=0``: a free one) and return it.

        ``request_timeout``: once a request has begun, each read must come within this many
        seconds, or the client gets a 408 and is closed (idle keep-alive connections may wait).
        ``keep_handlings`` caps what the endpoint remembers: its latest 10,000 handlings and
        connection records by default (``endpoint.handlings``, ``endpoint.connections``; each
        connection's ``handlings`` are those of its requests the endpoint still keeps), so that
        a long run costs bounded memory; ``None`` keeps every one. Chains still hold their own
        handlings, however old.
        ``max_body_size`` (default 256 MiB; None: no limit): a request body longer than this
        is not kept: the client gets a 413 and the connection closes, and the handling is
        recorded with the request's head, an empty body and the 413. A ``Content-Length``
        over the limit is refused before any of the body is read; a chunked body once what
        arrived passes it. Bodies are held in memory whole (about twice their size while
        they arrive), so the limit bounds what one request can cost.
        ``proxy_protocol``: ``True`` requires a PROXY protocol v1 or v2 header on every
        connection (haproxy's ``send-proxy``), ``"optional"`` accepts one; it is on
        ``endpoint.connections[i].proxy_protocol``. ``client_certs`` (with ``tls=True``):
        ``"optional"`` or ``"required"`` asks the client for a certificate signed by
        ``deproxy.ca`` (``ca.issue_client_cert(name)`` makes one). ``http2``: ``True``
        offers HTTP/2 over TLS ALPN (with ``tls=True``; HTTP/1.1 still served to clients that
        do not offer h2), ``"h2c"`` serves cleartext HTTP/2 (prior knowledge and ``Upgrade:
        h2c``); each stream is a handling with its ``stream_id``.
        """
        self._check_running()
        _check_hostname(hostname, "add_endpoint")
        if name is None:
            name = f"Endpoint-{next(self._endpoint_numbers)}"
        return self._register(
            Endpoint(
                self,
                name=name,
                hostname=hostname,
                port=port,
                default_handler=default_handler,
                tls=tls,
                request_timeout=request_timeout,
                keep_handlings=keep_handlings,
                max_body_size=max_body_size,
                proxy_protocol=proxy_protocol,
                client_certs=client_certs,
                http2=http2,
            )
        )

    def add_mitm_endpoint(
        self,
        port: int = 0,
        name: str = "mitm",
        hostname: str = "127.0.0.1",
        *,
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
    ) -> MitmEndpoint:
        """Start a scenario-replaying MITM forward proxy (see :class:`MitmEndpoint`).

        ``services`` is INSPIRE-MITMProxy's list (default: ``services.yaml`` in
        ``scenarios_path``); ``whitelist`` hosts always pass through; ``upstreams`` sends a
        host's upstream traffic elsewhere. Recordings hide secrets (see
        :mod:`pytest_deproxy.redaction`): ``redact_headers``, ``redact_query`` and
        ``redact_body_keys`` add header names, query parameters and JSON/form keys (patterns
        such as ``X-*-Auth`` allowed, case-insensitive) to the defaults. Upstream TLS is
        verified against the system's CAs and the MITM's own; ``verify_upstream=False`` turns
        that off (INSPIRE-MITMProxy's ``--ssl-insecure``).
        """
        from .mitm import MitmEndpoint

        self._check_running()
        _check_hostname(hostname, "add_mitm_endpoint")
        return self._register(
            MitmEndpoint(
                self,
                name=name,
                hostname=hostname,
                port=port,
                scenarios_path=scenarios_path,
                active_scenario=active_scenario,
                record=record,
                services=services,
                whitelist=whitelist,
                upstreams=upstreams,
                redact_headers=redact_headers,
                redact_query=redact_query,
                redact_body_keys=redact_body_keys,
                verify_upstream=verify_upstream,
            )
        )

    def _check_running(self) -> None:
        if self._shut_down:
            raise RuntimeError("this Deproxy has been shut down; make a new one")

    def _register(self, endpoint: AnyEndpoint) -> AnyEndpoint:
        with self._lock:
            self._endpoints.append(endpoint)
        endpoint.start()
        return endpoint

    # -- the left side: requests -----------------------------------------------------------

    def make_request(
        self,
        url: str,
        method: str = "GET",
        headers: HeaderItems = None,
        request_body: Body = None,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        default_handler: Handler | None = None,
        handlers: HandlerMap | None = None,
        add_default_headers: bool = True,
        chunked: bool = False,
        timeout: float | None = None,
        proxy: str | None = None,
        connection: ClientConnection | H2ClientConnection | None = None,
        verify: Verify = None,
        disconnect: str | None = None,
        dribble: tuple[int, float] | None = None,
        http_version: str = "1.1",
        expect_continue: bool = False,
        proxy_protocol: ProxyHeader | str | None = None,
        http2: bool | str = False,
        h2_reset_after: float | None = None,
        trailers: HeaderItems = None,
        h2_rapid_reset: int = 0,
        h2_continuation_flood: int = 0,
        h2_zero_window: bool = False,
        h2_fields: HeaderItems = None,
    ) -> MessageChain:
        """Send one request and return its :class:`MessageChain`.

        Network failures come back as data: ``chain.received_response is None`` and
        ``chain.error`` says why. A bad argument raises ``ValueError``/``TypeError``.
        ``disconnect="after_headers"``/``"mid_body"`` hangs up part way (the chain shows what
        the endpoint received); ``dribble=(pieces, seconds)`` sends the body slowly.

        ``http_version="1.0"`` sends an HTTP/1.0 request (a ``connection`` then stays open
        only if ``Connection: keep-alive`` was asked and answered). ``expect_continue=True``
        adds ``Expect: 100-continue``, sends the head, and sends the body after ``100
        Continue`` or a second of silence (as curl); if a final response comes first, the body
        is never sent and ``chain.body_withheld`` is true. Interim responses are in
        ``chain.interim_responses``. ``proxy_protocol`` sends a PROXY protocol header first: a
        :class:`ProxyHeader`, or ``"v1"``/``"v2"`` naming the connection's own addresses.
        ``http2=True`` sends the request over HTTP/2 (h2 by TLS ALPN: an https URL),
        ``"h2c"`` over cleartext HTTP/2 with prior knowledge; through a ``proxy``, inside a
        CONNECT tunnel. ``h2_reset_after=seconds`` resets the stream (RST_STREAM CANCEL) if
        no whole answer came by then; ``chain.error`` then says so. ``trailers`` are sent
        after the body (on HTTP/1.1 the body then goes chunked, trailers in its last chunk).
        HTTP/2 client faults: ``h2_rapid_reset=N`` first opens N streams and resets each at
        once, ``h2_continuation_flood=N`` sends the header block as HEADERS and N
        CONTINUATION frames, ``h2_zero_window=True`` advertises a zero window and gives no
        credit (for the rest of the connection), ``h2_fields=[(name, value), ...]`` is the
        header block as given; ``chain.error`` then says what the peer answered
        (``H2StreamError``, ``H2StreamTimeout``).
        """
        self._check_not_serving()
        client.check_http2(http2)
        over_h2 = bool(http2) or (connection is not None and connection.http2)
        if trailers is not None and not over_h2:
            chunked = True  # HTTP/1.1 carries trailers after a chunked body only
        if h2_reset_after is not None and not over_h2:
            raise ValueError("h2_reset_after resets an HTTP/2 stream: add http2=True or 'h2c'")
        if over_h2 and (
            chunked or disconnect or dribble or expect_continue or http_version != "1.1"
        ):
            raise ValueError(
                "chunked, disconnect, dribble, expect_continue and http_version are HTTP/1 "
                "ways of sending: leave them out of an HTTP/2 request"
            )
        h2_faults = (h2_rapid_reset, h2_continuation_flood, h2_zero_window, h2_fields)
        if (
            chunked,
            disconnect,
            dribble,
            http_version,
            expect_continue,
            proxy_protocol,
        ) == _PLAIN and h2_faults == (0, 0, False, None):
            sending = client.PLAIN  # the usual call: nothing to check, nothing to make
        else:
            sending = client.Sending(
                chunked=chunked,
                disconnect=disconnect,
                dribble=dribble,
                http_version=http_version,
                expect_continue=expect_continue,
                proxy_protocol=proxy_protocol,
                h2_rapid_reset=h2_rapid_reset,
                h2_continuation_flood=h2_continuation_flood,
                h2_zero_window=h2_zero_window,
                h2_fields=crafting.h2_fields(h2_fields),
            )
        if sending.h2_faults and not over_h2:
            raise ValueError("the h2_ faults are HTTP/2's: add http2=True or 'h2c'")
        if connection is not None and proxy_protocol is not None:
            raise ValueError(
                "proxy_protocol goes first on a new connection: pass it to connect(), "
                "not to make_request(connection=...)"
            )
        target = Target.parse(url)
        destination = target.with_port(port)  # Host still names the URL's port
        if proxy is not None:
            client.parse_proxy(proxy)
        request = client.build_request(
            target,
            method,
            headers,
            request_body,
            host=host,
            path=path,
            add_default_headers=add_default_headers,
            chunked=chunked,
            absolute_form=proxy is not None and target.scheme == "http" and not http2,
            sending=sending,
            trailers=trailers,
        )
        chain = MessageChain(request.headers[TRACKING_HEADER], request, url=url)
        wait = self.timeout if timeout is None else timeout
        with self._registry.in_flight(chain, _routing(handlers, default_handler)):
            try:
                if connection is not None and connection.http2:
                    response = connection.send(
                        request, sending, timeout=wait, chain=chain, reset_after=h2_reset_after
                    )
                elif connection is not None:
                    response = connection.send(request, sending, timeout=wait, chain=chain)
                else:
                    waiting = self._serving_wait(request, destination, sending, http2)
                    try:
                        response = client.exchange(
                            destination,
                            request,
                            timeout=wait,
                            verify=verify,
                            ca=self.ca if destination.scheme == "https" else None,
                            proxy=proxy,
                            sending=sending,
                            chain=chain,
                            http2=http2,
                            h2_reset_after=h2_reset_after,
                            on_connected=None if waiting is None else waiting.wait_on,
                        )
                    finally:
                        if waiting is not None:
                            self._served(waiting)
                chain.received_response = response
            except TunnelRefused as exc:
                chain.received_response = exc.response  # type: ignore[assignment]
                chain.error = exc
            except DeproxyError as exc:
                chain.error = exc
        return chain

    def _serving_wait(
        self, request: Request, destination: Target, sending: client.Sending, http2: bool | str
    ) -> ServingWait | None:
        """The endpoints, lent to this caller while it waits for its answer, if the request
        is one it may serve them for (see :mod:`.servingwait`) and no other caller does."""
        if (
            sending is not client.PLAIN
            or http2
            or destination.scheme != "http"
            or len(request.raw_body) > SMALL_BODY
            or not self._serving_caller.acquire(blocking=False)
        ):
            return None
        try:
            waiting = lend_to_caller([endpoint.server for endpoint in self.endpoints])
        except BaseException:
            self._serving_caller.release()
            raise
        if waiting is None:  # none could be lent: nothing to give back
            self._serving_caller.release()
            return None
        self._serving_thread = threading.get_ident()
        return waiting

    def _served(self, waiting: ServingWait) -> None:
        """Give the endpoints back (see :meth:`_serving_wait`)."""
        try:
            waiting.close()
        finally:
            self._serving_thread = None
            self._serving_caller.release()

    def _check_not_serving(self) -> None:
        """Refuse a request from a thread that serves endpoints: a ``non_blocking`` handler's,
        on a poll thread or on the thread of a caller waiting for its answer (which of the
        two runs it is a matter of timing, so both are refused alike)."""
        if self._serving_thread == threading.get_ident() or on_poll_thread():
            raise DeproxyError(
                "a request made by a handler marked non_blocking, which runs on a thread "
                "that serves endpoints (a poll thread, or the thread of a request of this "
                "Deproxy waiting for its answer): while it waited, that thread would serve "
                "nothing, this request's endpoint perhaps included. A handler that makes "
                "requests may wait: leave the mark off (it then has a thread of its own)"
            )

    def make_raw_request(
        self,
        url: str,
        data: bytes,
        *,
        placeholder: bytes = b"{request_id}",
        timeout: float | None = None,
        verify: Verify = None,
        handlers: HandlerMap | None = None,
        default_handler: Handler | None = None,
        proxy_protocol: ProxyHeader | str | None = None,
    ) -> MessageChain:
        """Send ``data`` exactly as given to ``url``'s server and read the answer.

        For requests a well-behaved client would never send (both ``Content-Length`` and
        ``Transfer-Encoding``, bad framing, not HTTP at all). Each ``placeholder`` in ``data``
        becomes a fresh tracking id, so what reaches endpoints lands in this chain::

            deproxy.make_raw_request(proxy_url, b"GET / HTTP/1.1\\r\\nHost: x\\r\\n"
                                     b"Deproxy-Request-ID: {request_id}\\r\\n\\r\\n")

        Interim (1xx) responses are in ``chain.interim_responses``; ``proxy_protocol`` is as
        for :meth:`make_request` (sent before ``data``).
        """
        self._check_not_serving()
        client.check_proxy_protocol(proxy_protocol)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"make_raw_request sends bytes, not {type(data).__name__}")
        target = Target.parse(url)
        request_id = client.new_request_id()
        payload = (
            bytes(data).replace(placeholder, request_id.encode()) if placeholder else bytes(data)
        )
        sent = wire.parse_sent_request(payload)
        chain = MessageChain(request_id, sent, url=url, sent_bytes=payload)
        wait = self.timeout if timeout is None else timeout
        with self._registry.in_flight(chain, _routing(handlers, default_handler)):
            try:
                ca = self.ca if target.scheme == "https" else None
                with client.open_connection(
                    target, timeout=wait, verify=verify, ca=ca, proxy_protocol=proxy_protocol
                ) as connection:
                    chain.received_response = connection.send_raw(
                        payload, method=sent.method, chain=chain
                    )
            except DeproxyError as exc:
                chain.error = exc
        return chain

    @overload
    def connect(
        self,
        url: str,
        *,
        timeout: float | None = None,
        verify: Verify = None,
        proxy_protocol: ProxyHeader | str | None = None,
        http2: Literal[False] = False,
        proxy: str | None = None,
    ) -> ClientConnection: ...

    @overload
    def connect(
        self,
        url: str,
        *,
        timeout: float | None = None,
        verify: Verify = None,
        proxy_protocol: ProxyHeader | str | None = None,
        http2: Literal[True, "h2c"],
        proxy: str | None = None,
    ) -> H2ClientConnection: ...

    def connect(
        self,
        url: str,
        *,
        timeout: float | None = None,
        verify: Verify = None,
        proxy_protocol: ProxyHeader | str | None = None,
        http2: bool | str = False,
        proxy: str | None = None,
    ) -> ClientConnection | H2ClientConnection:
        """A persistent client connection to ``url``'s server, for ``make_request(connection=)``.

        Unlike ``make_request``, a failure to connect raises :class:`NetworkError`.
        ``proxy_protocol`` (see :meth:`make_request`) is sent once, as the connection opens.
        ``http2`` (``True``: ALPN h2; ``"h2c"``: prior knowledge) gives a connection that
        multiplexes: several threads may ``make_request(connection=conn)`` at once, each on
        its own stream; ``conn.events`` lists its connection-level frames both ways.
        ``proxy`` reaches the server through a forward proxy's CONNECT tunnel (HTTP/2, https).
        """
        target = Target.parse(url)
        wait = self.timeout if timeout is None else timeout
        ca = self.ca if target.scheme == "https" else None
        return client.open_connection(
            target,
            timeout=wait,
            verify=verify,
            ca=ca,
            proxy_protocol=proxy_protocol,
            http2=http2,
            proxy=proxy,
        )

    def websocket(
        self,
        url: str,
        *,
        headers: HeaderItems = None,
        subprotocols: Iterable[str] = (),
        proxy: str | None = None,
        verify: Verify = None,
        timeout: float | None = None,
        handlers: HandlerMap | None = None,
        default_handler: Handler | None = None,
    ) -> WebSocketSession:
        """Open a WebSocket to ``url`` (ws://, wss://, or http(s)://) and return its session.

        The opening handshake is a chain like ``make_request``'s (``session.chain``, in flight
        for the handshake only); through ``proxy`` it goes in a CONNECT tunnel. An upgrade that
        fails is data, not an exception: ``session.open`` is False and ``session.error`` says
        why (``chain.received_response`` is the refusal, a 403 say). See
        :class:`~pytest_deproxy.WebSocketSession`::

            with deproxy.websocket(proxy_url + "/chat", subprotocols=["chat"]) as session:
                session.send("hi")
                assert session.receive() == "hi"
        """
        from .websocket import WebSocketSession, handshake_request, parse_url  # loads wsproto

        if isinstance(subprotocols, str):
            raise TypeError("subprotocols is a list of names, e.g. ['chat'], not a str")
        offered = tuple(subprotocols)
        target = parse_url(url)
        if proxy is not None:
            client.parse_proxy(proxy)
        request = handshake_request(target, headers, offered)
        chain = MessageChain(request.headers[TRACKING_HEADER], request, url=url)
        wait = self.timeout if timeout is None else timeout
        session = WebSocketSession(chain, wait)
        ca = self.ca if target.scheme == "https" else None
        with self._registry.in_flight(chain, _routing(handlers, default_handler)):
            session.handshake(target, verify=verify, ca=ca, proxy=proxy, subprotocols=offered)
        return session

    # -- what endpoints ask of their owner (HandlingRegistry) ------------------------------

    def handler_for(self, endpoint: Endpoint, request: Request) -> Handler:
        # With no call in flight (outside load: every request), no call's handlers to look up.
        registry = self._registry
        if registry.in_flight_now and (call := registry.routing_for_request(request)) is not None:
            if call.handlers:
                if endpoint in call.handlers:
                    return call.handlers[endpoint]
                if endpoint.name in call.handlers:
                    return call.handlers[endpoint.name]
            if call.default_handler is not None:
                return call.default_handler
        return self.unclaimed_handler(endpoint)

    def unclaimed_handler(self, endpoint: Endpoint) -> Handler:
        """The handler of a request to ``endpoint`` that no call claims (one with no tracking
        id, or a call's that asked nothing of this endpoint)."""
        if endpoint.default_handler is not None:
            return endpoint.default_handler
        if self.default_handler is not None:
            return self.default_handler
        return handlers.simple

    @property
    def poll_threads(self) -> PollThreads:
        """What runs the endpoints' poll loops (see :mod:`pytest_deproxy.pollthreads`)."""
        return self._poll_threads

    def new_connection_id(self) -> str:
        return f"conn-{next(self._connection_numbers)}"

    def report_error(self, error: BaseException) -> None:
        self._registry.report_error(error)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by handlers in endpoint threads; the fixture fails the test on them."""
        return self._registry.errors

    @property
    def chains(self) -> list[MessageChain]:
        """The chains this Deproxy's ``make_request`` returned, in order (the latest
        ``keep_chains``: 10,000 by default)."""
        return self._registry.chains

    # -- lifetime --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every endpoint and join its threads. Safe to call twice.

        Every endpoint is told to stop, and every thread of every endpoint woken, before any
        is waited for: a handler waiting on another endpoint (``handlers.route`` to one that
        hangs) is freed as soon as that one stops, and the whole takes no longer than the
        slowest thread. Threads are waited for until one deadline, ``JOIN_TIMEOUT`` (5) s
        away; one still running then (a handler blocked in ``time.sleep``, or on a server
        outside this Deproxy) is left behind and reported as a :class:`DeproxyError` on
        ``errors``, so the ``deproxy`` fixture fails the test. ``shutdown`` itself does not
        raise it, so that leaving a ``with`` block never hides the exception on its way out.
        """
        self._shut_down = True
        endpoints = self.endpoints
        deadline = time.monotonic() + serving.JOIN_TIMEOUT
        for endpoint in endpoints:
            endpoint.begin_shutdown(deadline)
        for endpoint in endpoints:
            endpoint.shutdown()

    def __enter__(self) -> Deproxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Shut down; then, unless an exception is already on its way out, raise what
        handlers raised in endpoint threads (the ``deproxy`` fixture does the same at the end
        of a test), so that a failure there is never silently dropped."""
        self.shutdown()
        if exc_info[0] is None:
            raise_errors(self.errors)
