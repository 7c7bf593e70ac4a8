"""Endpoints: HTTP(S) servers that stand in for the servers behind a proxy.

Rules kept here: an endpoint's options are checked when it is made, and its threads start
in :meth:`Endpoint.start`, not before. Every request that reaches an endpoint is recorded,
the ones it refuses and the ones cut short included, and ``handlings`` hands out snapshots
of that record. An endpoint is made of parts: the listener and its threads
(:mod:`~pytest_deproxy.serving`), the responder they serve connections with
(:mod:`~pytest_deproxy.h1answering`, which hands HTTP/2 connections to
:mod:`~pytest_deproxy.h2answering`), and what both protocols answer with
(:mod:`~pytest_deproxy.answering`; refusals in :mod:`~pytest_deproxy.refusals`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Protocol

from . import net
from .answering import Answering
from .connections import ConnectionRecord
from .errors import DeproxyError
from .h1answering import Http1Responder, TunnelPolicy
from .h2answering import H2Answering
from .handlers import Handler
from .models import Request
from .pollthreads import PollThreads
from .record import DEFAULT_KEEP, Handling, check_keep
from .refusals import LINGER_SECONDS as LINGER_SECONDS
from .serving import Server
from .tls import CertificateAuthority

DEFAULT_REQUEST_TIMEOUT = 30.0  # per read, once a request has begun (slowloris)
# A request body is held in memory whole. 256 MiB is more than upload tests through a proxy
# send (proxies' own limits are far lower: nginx's client_max_body_size is 1 MiB), and a
# body that never ends then costs at most about twice that while it is read, not all the
# memory of a CI runner.
DEFAULT_MAX_BODY_SIZE = 256 * 1024 * 1024
CLIENT_CERTS = (None, "optional", "required")
HTTP2 = (False, True, "h2c")


class EndpointOwner(Protocol):
    """What an endpoint needs from its owner (a :class:`Deproxy`)."""

    @property
    def ca(self) -> CertificateAuthority: ...

    def handler_for(self, endpoint: Endpoint, request: Request) -> Handler: ...

    def unclaimed_handler(self, endpoint: Endpoint) -> Handler: ...

    def record(self, handling: Handling) -> None: ...

    def settled(self, handling: Handling) -> None: ...

    def report_error(self, error: BaseException) -> None: ...

    def new_connection_id(self) -> str: ...

    @property
    def poll_threads(self) -> PollThreads:
        """What runs the endpoint's poll loop (see :mod:`.pollthreads`)."""
        ...

    @property
    def in_flight_now(self) -> Collection[object]:
        """The calls in flight, as they change (empty: none)."""
        ...


def _check_options(
    max_body_size: object, proxy_protocol: object, client_certs: object, tls: bool
) -> None:
    if max_body_size is not None and (
        not isinstance(max_body_size, int) or isinstance(max_body_size, bool)
    ):
        raise TypeError(
            f"max_body_size is a number of bytes (an int) or None for no limit, "
            f"not {type(max_body_size).__name__}"
        )
    if isinstance(max_body_size, int) and max_body_size < 0:
        raise ValueError(f"max_body_size is a number of bytes >= 0, got {max_body_size}")
    if proxy_protocol not in (False, True, "optional"):
        raise ValueError(f"proxy_protocol is True, 'optional' or False, not {proxy_protocol!r}")
    if client_certs not in CLIENT_CERTS:
        raise ValueError(f"client_certs is 'optional', 'required' or None, not {client_certs!r}")
    if client_certs is not None and not tls:
        raise ValueError("client_certs asks for TLS client certificates: add tls=True")


class Endpoint:
    """An HTTP(S) server on a local port that answers through handlers and records what it saw.

    Made by :meth:`Deproxy.add_endpoint`. ``handlings`` is every :class:`Handling` in order
    of arrival, ``connections`` every :class:`ConnectionRecord` (the latest
    ``keep_handlings`` of each, 10,000 by default; None keeps all); ``errors`` the failures on
    its connections (malformed requests, failed TLS handshakes). A request body over
    ``max_body_size`` bytes (None: no limit) is answered 413 unread, and the connection
    closed; that handling is recorded with the head, an empty body and the 413.
    """

    def __init__(
        self,
        owner: EndpointOwner,
        *,
        name: str,
        hostname: str = "127.0.0.1",
        port: int = 0,
        default_handler: Handler | None = None,
        tls: bool = False,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        keep_handlings: int | None = DEFAULT_KEEP,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        proxy_protocol: bool | str = False,
        client_certs: str | None = None,
        handler_for: Callable[[Request], Handler] | None = None,
        tunnels: TunnelPolicy | None = None,
        http2: bool | str = False,
    ) -> None:
        _check_options(max_body_size, proxy_protocol, client_certs, tls)
        if http2 not in HTTP2:
            raise ValueError(
                f"http2 is True (ALPN h2, with tls=True), 'h2c' or False, not {http2!r}"
            )
        if http2 is True and not tls:
            raise ValueError("http2=True offers h2 over TLS ALPN: add tls=True, or use http2='h2c'")
        self.http2 = http2
        self.name = name
        self.hostname = hostname
        self.default_handler = default_handler
        self.tls = tls
        self._owner = owner
        # The last `keep_handlings` handlings are kept (None keeps every one), and as many
        # connection records, each with at most as many handlings.
        check_keep(keep_handlings, "keep_handlings")
        # The MITM passes its own handler_for (its dispatcher answers everything), and then
        # there is no handler of the owner's for requests no call claims.
        unclaimed_handler: Callable[[], Handler] | None = None
        if handler_for is None:
            handler_for = functools.partial(owner.handler_for, self)
            unclaimed_handler = functools.partial(owner.unclaimed_handler, self)
        self._answering = Answering(
            self,
            name=name,
            keep_handlings=keep_handlings,
            handler_for=handler_for,
            unclaimed_handler=unclaimed_handler,
            record=owner.record,
            settled=owner.settled,
            report_error=owner.report_error,
            record_error=self._record_error,
            in_flight=owner.in_flight_now,
        )
        responder = Http1Responder(
            self._answering,
            h2=H2Answering(self._answering, http2) if http2 else None,
            tunnels=tunnels,
            request_timeout=request_timeout,
        )
        context = None
        if tls:
            hosts = ("localhost", "127.0.0.1", hostname)
            alpn = ("h2", "http/1.1") if http2 else ()
            context = owner.ca.server_context(*hosts, client_certs=client_certs, alpn=alpn)
        self._server = Server(
            responder,
            name=name,
            hostname=hostname,
            port=port,
            tls_context=context,
            request_timeout=request_timeout,
            max_body_size=max_body_size,
            new_connection_id=owner.new_connection_id,
            proxy_protocol=proxy_protocol,
            keep_connections=keep_handlings,
            connection_handlings=self._answering.handlings,
            poll_threads=owner.poll_threads,
        )
        self.port = self._server.port

    def start(self) -> Endpoint:
        """Start serving (the port is already taken); returns the endpoint."""
        self._server.start()
        return self

    # -- public surface --------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{net.format_address(self.hostname, self.port)}"

    @property
    def address(self) -> tuple[str, int]:
        """The address the endpoint's socket is bound to: ``(host, port)``."""
        return self._server.address

    @property
    def ca(self) -> CertificateAuthority:
        """The CA that signs this endpoint's certificate and that its ``route`` handlers trust."""
        return self._owner.ca

    @property
    def handlings(self) -> list[Handling]:
        """A snapshot of the handlings this endpoint made, in order of arrival (the latest
        ``keep_handlings``: 10,000 by default)."""
        return list(
            self._answering.handlings.copy()
        )  # copy() holds the deque still while it copies

    @property
    def connections(self) -> list[ConnectionRecord]:
        """A snapshot of the records of every connection this endpoint accepted, in order."""
        return self._server.connections

    @property
    def errors(self) -> list[DeproxyError]:
        """A snapshot of the failures seen on this endpoint's connections."""
        return self._server.errors

    @property
    def request_timeout(self) -> float | None:
        return self._server.request_timeout

    @property
    def server(self) -> Server:
        """What serves the endpoint's connections (its owner lends it to a waiting caller)."""
        return self._server

    def begin_shutdown(self, deadline: float | None = None) -> None:
        """Stop accepting and wake every thread, without waiting (see :meth:`shutdown`)."""
        self._server.begin_shutdown(deadline)

    def shutdown(self) -> None:
        """Stop listening, close every connection and join every thread. Safe to call twice.

        A thread still running ``serving.JOIN_TIMEOUT`` s after shutdown began is left
        behind and reported to the owner, so the ``deproxy`` fixture fails the test.
        """
        self._server.shutdown()

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.url}>"

    def _record_error(self, error: DeproxyError) -> None:
        self._server.record_error(error)
