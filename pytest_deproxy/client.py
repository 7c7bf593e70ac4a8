"""The client side: connect, send a request (crafted by :mod:`~pytest_deproxy.crafting`),
read the answer.

Rule kept here: functions here raise :class:`~pytest_deproxy.errors.DeproxyError` for anything
that goes wrong on the network; turning those into data on a chain is the caller's business
(:meth:`Deproxy.make_request`). What arrives besides the final response (interim 1xx
responses) is written on the chain the caller passes, as it arrives, so a later failure
loses none of it. Misuse (a malformed URL, a bad argument) raises ``ValueError``.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, overload

from . import net, proxyproto, wire
from .crafting import CONTINUE_WAIT as CONTINUE_WAIT
from .crafting import DEFAULT_PORTS as DEFAULT_PORTS
from .crafting import PLAIN as PLAIN
from .crafting import USER_AGENT as USER_AGENT
from .crafting import ProxyProtocol as ProxyProtocol
from .crafting import Sending as Sending
from .crafting import Target as Target
from .crafting import build_request as build_request
from .crafting import check_http2 as check_http2
from .crafting import check_proxy_protocol as check_proxy_protocol
from .crafting import new_request_id as new_request_id
from .crafting import parse_proxy as parse_proxy
from .errors import DeproxyTimeout, NetworkError, ProtocolError, TunnelRefused
from .models import Request, Response
from .proxyproto import ProxyHeader
from .record import MessageChain

if TYPE_CHECKING:  # loaded by the first HTTP/2 connection: the h2 library is a cost of HTTP/2 only
    from .h2client import H2ClientConnection
from .tls import CertificateAuthority, unverified_client_context

DEFAULT_TIMEOUT = 10.0

Verify = bool | ssl.SSLContext | None


def proxy_header_bytes(proxy_protocol: ProxyHeader | str, stream: net.Stream) -> bytes:
    """The PROXY header to send first on ``stream``; ``"v1"``/``"v2"`` name its own addresses."""
    if isinstance(proxy_protocol, ProxyHeader):
        return proxyproto.encode(proxy_protocol)
    source, destination = stream.addresses
    version = 1 if proxy_protocol == "v1" else 2
    return proxyproto.encode(ProxyHeader(version, source=source, destination=destination))


def client_tls_context(
    verify: Verify, ca: CertificateAuthority | None, *, alpn: tuple[str, ...] = ()
) -> ssl.SSLContext:
    """The context for ``verify``; ``alpn`` (HTTP/2: ``("h2",)``) is offered unless
    ``verify`` is the caller's own context, which is used as given."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        if not alpn:
            return unverified_client_context()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.set_alpn_protocols(list(alpn))
        return context
    if verify not in (None, True):
        raise TypeError(f"verify must be None, False or an ssl.SSLContext, not {verify!r}")
    if ca is None:
        context = ssl.create_default_context()
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context
    return ca.client_context(include_system=True, alpn=alpn)


class ClientConnection:
    """A persistent client connection: send several requests over one TCP connection.

    Made by :meth:`Deproxy.connect`; pass it as ``make_request(..., connection=conn)``. It closes
    itself when a response says the server will close. After a ``101 Switching Protocols`` it
    carries no more HTTP/1 requests: the connection belongs to the protocol switched to, and
    the bytes that followed the 101 wait in its reader (``pending``).
    """

    http2: Literal[False] = False  # (an H2ClientConnection's is True: no isinstance, no import)

    def __init__(self, target: Target, stream: net.Stream) -> None:
        self.target = target
        self._stream = stream
        self._reader = wire.MessageReader(stream)
        self._lock = threading.Lock()
        self._switched = False

    @property
    def closed(self) -> bool:
        return self._stream.closed

    @property
    def pending(self) -> bytes:
        """Bytes received and not yet read as a message (after a 101: the new protocol's)."""
        return self._reader.pending

    def send(
        self,
        request: Request,
        sending: Sending = PLAIN,
        *,
        timeout: float | None = None,
        chain: MessageChain | None = None,
    ) -> Response:
        """Write ``request`` as ``sending`` says and read its response; raises
        ``DeproxyError`` on failure (a ``disconnect`` always ends in one).

        Interim (1xx) responses go to ``chain.interim_responses`` as they arrive, and a body
        withheld because the answer came before 100 Continue sets ``chain.body_withheld``."""
        data = wire.serialize_request(request, chunked=sending.chunked)
        interim: list[Response] = []  # the chain's own list only if there are some
        with self._lock:
            self._check_open(timeout)
            try:
                response, body_sent = self._exchange(data, request.method, sending, interim)
            except BaseException:
                self._stream.close()
                raise
            finally:
                if interim and chain is not None:
                    chain.interim_responses.extend(interim)
            if chain is not None:
                chain.body_withheld = not body_sent
            self._after(response, request, body_sent)
            return response

    def send_raw(
        self,
        data: bytes,
        *,
        method: str = "GET",
        timeout: float | None = None,
        chain: MessageChain | None = None,
    ) -> Response:
        """Write ``data`` as it is and read a response (framed as an answer to ``method``);
        interim (1xx) responses go to ``chain.interim_responses``."""
        interim: list[Response] = []
        with self._lock:
            self._check_open(timeout)
            try:
                self._stream.write(data)
                return self._reader.read_response(method, interim)
            finally:
                self._stream.close()
                if interim and chain is not None:
                    chain.interim_responses.extend(interim)

    def _check_open(self, timeout: float | None) -> None:
        if self._stream.closed:
            raise NetworkError(f"the connection to {self._stream.peer} is already closed")
        if self._switched:
            raise NetworkError(
                f"the connection to {self._stream.peer} switched protocols (101 Switching "
                "Protocols): it carries no more HTTP/1 requests; open a new one"
            )
        if timeout is not None:
            self._stream.timeout = timeout

    def _after(self, response: Response, request: Request, body_sent: bool) -> None:
        if response.code == "101":
            self._switched = True  # left open for whoever speaks the new protocol
        elif not body_sent or not wire.response_keeps_alive(response, request):
            # A server that answered before the body may still wait for it: never reuse.
            self._stream.close()

    def _exchange(
        self, data: bytes, method: str, sending: Sending, interim: list[Response] | None
    ) -> tuple[Response, bool]:
        """Write the request and read its answer; also whether the body was sent."""
        head_size = data.index(b"\r\n\r\n") + 4
        if sending.disconnect == "after_headers":
            self._stream.write(data[:head_size])
            self._stream.close()
            raise NetworkError("disconnected after sending the headers, as asked")
        sent = 0
        if sending.expect_continue:
            self._stream.write(data[:head_size])
            sent = head_size
            answer = self._await_continue(method, interim)
            if answer is not None:
                return answer, False
        self._write_rest(data, sent, head_size, sending)
        return self._reader.read_response(method, interim), True

    def _await_continue(self, method: str, interim: list[Response] | None) -> Response | None:
        """After a head asking ``Expect: 100-continue``: wait up to :data:`CONTINUE_WAIT`
        seconds for ``100 Continue`` (``None``: send the body now, as after the wait) or a final
        response (returned: the body is withheld). Other 1xx responses are recorded, waited past.
        """
        deadline = time.monotonic() + CONTINUE_WAIT
        while True:
            if not self._reader.pending and not self._wait_for_bytes(deadline):
                return None
            response = self._reader.read_any_response(method)
            if not wire.is_interim(response):
                return response
            if interim is not None:
                interim.append(response)
            if response.code == "100":
                return None

    def _wait_for_bytes(self, deadline: float) -> bool:
        """Wait until ``deadline`` for bytes to read (or the peer to close); whether any came."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        timeout = self._stream.timeout
        self._stream.timeout = remaining if timeout is None else min(remaining, timeout)
        try:
            data = self._stream.read()
        except DeproxyTimeout:
            return False
        finally:
            self._stream.timeout = timeout
        self._reader.pending += data  # b"": the reader finds the close itself, and says so
        return True

    def _write_rest(self, data: bytes, sent: int, head_size: int, sending: Sending) -> None:
        """Write ``data`` from ``sent`` on, as ``sending`` says: all, half and hang up, or
        the body in slow pieces."""
        if sending.disconnect == "mid_body":
            half = (len(data) - head_size) // 2
            self._stream.write(data[sent : head_size + half])
            self._stream.close()
            raise NetworkError(
                f"disconnected after sending {half} of {len(data) - head_size} body bytes, as asked"
            )
        if sending.dribble is None:
            self._stream.write(data[sent:])
            return
        if sent < head_size:
            self._stream.write(data[sent:head_size])
        pieces, seconds = sending.dribble
        body = data[head_size:]
        size = max(1, -(-len(body) // pieces))
        for number, start in enumerate(range(0, len(body), size)):
            if number:
                time.sleep(seconds)  # the caller's own thread: nothing else waits on it
            self._stream.write(body[start : start + size])

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_tunnel(stream: net.Stream, target: Target, timeout: float | None) -> None:
    """Ask the forward proxy on ``stream`` for a ``CONNECT`` tunnel to ``target``."""
    authority = net.format_address(target.host, target.port)
    connect = Request("CONNECT", authority, [("Host", authority), ("User-Agent", USER_AGENT)])
    stream.write(wire.serialize_request(connect))
    reader = wire.MessageReader(stream)
    response = reader.read_response("CONNECT")
    if not 200 <= response.status < 300:
        stream.close()
        raise TunnelRefused(
            f"the proxy refused the CONNECT tunnel to {authority}: "
            f"{response.code} {response.message}".rstrip(),
            response,
        )


@overload
def open_connection(
    target: Target,
    *,
    timeout: float | None,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
    proxy: str | None = None,
    proxy_protocol: ProxyProtocol = None,
    http2: Literal[False] = False,
) -> ClientConnection: ...


@overload
def open_connection(
    target: Target,
    *,
    timeout: float | None,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
    proxy: str | None = None,
    proxy_protocol: ProxyProtocol = None,
    http2: bool | str,
) -> ClientConnection | H2ClientConnection: ...


def open_connection(
    target: Target,
    *,
    timeout: float | None,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
    proxy: str | None = None,
    proxy_protocol: ProxyProtocol = None,
    http2: bool | str = False,
) -> ClientConnection | H2ClientConnection:
    """Connect to ``target`` (through ``proxy`` if given), TLS included for https.

    ``proxy_protocol`` (see :class:`Sending`) is the first thing sent on the TCP connection,
    before a tunnel or TLS. ``http2``: ``True`` asks for h2 over TLS ALPN (an https URL),
    ``"h2c"`` speaks HTTP/2 in cleartext from the first byte (prior knowledge); through a
    ``proxy``, either goes through a CONNECT tunnel."""
    check_proxy_protocol(proxy_protocol)
    check_http2(http2)
    if http2 is True and target.scheme != "https":
        raise ValueError("http2=True negotiates h2 over TLS: use an https URL, or http2='h2c'")
    if http2 == "h2c" and target.scheme != "http":
        raise ValueError("http2='h2c' is cleartext HTTP/2: use an http URL, or http2=True")
    alpn = ("h2",) if http2 is True else ()
    context = client_tls_context(verify, ca, alpn=alpn) if target.scheme == "https" else None
    first_hop = target if proxy is None else parse_proxy(proxy)
    stream = net.connect(first_hop.host, first_hop.port, timeout)
    try:
        if proxy_protocol is not None:
            stream.write(proxy_header_bytes(proxy_protocol, stream))
        if proxy is not None and (target.scheme == "https" or http2):
            open_tunnel(stream, target, timeout)
    except BaseException:
        stream.close()
        raise
    if context is not None:
        try:
            stream = stream.start_tls(context, server_side=False, server_hostname=target.host)
        except BaseException:
            stream.close()
            raise
    if not http2:
        return ClientConnection(target, stream)
    facts = stream.tls_facts()
    alpn_chosen = None if facts is None else facts["alpn"]
    if http2 is True and alpn_chosen != "h2":
        stream.close()
        raise ProtocolError(
            f"{target.origin} did not agree to HTTP/2 over ALPN (it chose {alpn_chosen!r}); "
            "make the request without http2=True, or enable h2 on the server"
        )
    from .h2client import H2ClientConnection

    try:
        return H2ClientConnection(
            target, stream, scheme=target.scheme, authority=target.host_header
        )
    except BaseException:
        stream.close()
        raise


def exchange(
    target: Target,
    request: Request,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
    proxy: str | None = None,
    sending: Sending = PLAIN,
    chain: MessageChain | None = None,
    http2: bool | str = False,
    h2_reset_after: float | None = None,
    on_connected: Callable[[net.Stream], object] | None = None,
) -> Response:
    """One request on a fresh connection, closed afterwards (what it received beyond the
    response goes to ``chain``, when given: see :meth:`ClientConnection.send`). ``http2``
    and ``h2_reset_after``: see :func:`open_connection` and :meth:`H2ClientConnection.send`.
    ``on_connected`` is given the HTTP/1 connection's stream before the request is sent."""
    with open_connection(
        target,
        timeout=timeout,
        verify=verify,
        ca=ca,
        proxy=proxy,
        proxy_protocol=sending.proxy_protocol,
        http2=http2,
    ) as connection:
        if connection.http2:
            return connection.send(
                request, sending, timeout=timeout, chain=chain, reset_after=h2_reset_after
            )
        if on_connected is not None:
            on_connected(connection._stream)
        return connection.send(request, sending, chain=chain)
