"""The client side: build a request as the caller asked, send it, read the answer.

Rule kept here: functions here raise :class:`~pytest_deproxy.errors.DeproxyError` for anything
that goes wrong on the network; turning those into data on a chain is the caller's business
(:meth:`Deproxy.make_request`). What arrives besides the final response (interim 1xx
responses) is written on the chain the caller passes, as it arrives, so a later failure
loses none of it. Misuse (a malformed URL, a bad argument) raises ``ValueError``.
"""

from __future__ import annotations

import functools
import itertools
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Literal, overload
from urllib.parse import urlsplit

from . import net, proxyproto, wire
from ._version import __version__
from .errors import DeproxyTimeout, NetworkError, ProtocolError, TunnelRefused
from .h2client import H2ClientConnection
from .models import TRACKING_HEADER, Body, HeaderItems, Headers, Request, Response, encode_body
from .proxyproto import ProxyHeader
from .record import MessageChain
from .tls import CertificateAuthority, unverified_client_context

DEFAULT_TIMEOUT = 10.0
FORWARD_TIMEOUT = 30.0  # an intermediary waits longer for its upstream than a test's client
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = f"pytest-deproxy/{__version__}"

Verify = bool | ssl.SSLContext | None

# RFC 9110 §7.6.1: fields that describe one connection, never forwarded by an intermediary
# (with those ``Connection`` nominates); Proxy-Authorization/-Authenticate are the proxy's own.
# Content-Length goes too: whoever forwards frames the body anew.
HOP_BY_HOP = frozenset(
    {
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
    }
)


_ID_PREFIX = uuid.uuid4().hex[:12]  # random per process: ids never collide across workers
_id_numbers = itertools.count(1)


def new_request_id() -> str:
    """A fresh tracking id: a per-process random prefix and a counter (cheaper than uuid4)."""
    return f"{_ID_PREFIX}-{next(_id_numbers):08x}"


DISCONNECT_POINTS = ("after_headers", "mid_body")
HTTP_VERSIONS = ("1.0", "1.1")
CONTINUE_WAIT = 1.0  # seconds a client waits for 100 Continue before sending the body (curl's)

ProxyProtocol = ProxyHeader | str | None


@dataclass(frozen=True)
class Sending:
    """How a request goes on the wire, beyond its bytes: chunked framing, a hang-up part way
    (``disconnect``: ``"after_headers"`` or ``"mid_body"``), a body sent slowly
    (``dribble=(pieces, seconds)``), the HTTP version of the request line, ``expect_continue``
    (ask ``Expect: 100-continue`` and send the body only after ``100 Continue``, or after
    :data:`CONTINUE_WAIT` seconds of silence), and a PROXY protocol header sent before anything
    else on a new connection (``proxy_protocol``: a :class:`ProxyHeader`, or ``"v1"``/``"v2"``
    for one naming the connection's own addresses). Checked once, here."""

    chunked: bool = False
    disconnect: str | None = None
    dribble: tuple[int, float] | None = None
    http_version: str = "1.1"
    expect_continue: bool = False
    proxy_protocol: ProxyProtocol = None

    def __post_init__(self) -> None:
        if self.disconnect not in (None, *DISCONNECT_POINTS):
            raise ValueError(
                f"disconnect is 'after_headers' or 'mid_body', not {self.disconnect!r}"
            )
        if self.dribble is not None:
            pieces, seconds = self.dribble
            if pieces < 1 or seconds < 0:
                raise ValueError(f"dribble takes (pieces >= 1, seconds >= 0), got {self.dribble!r}")
        if self.http_version not in HTTP_VERSIONS:
            raise ValueError(f'http_version is "1.0" or "1.1", not {self.http_version!r}')
        if not isinstance(self.expect_continue, bool):
            raise TypeError(f"expect_continue is True or False, not {self.expect_continue!r}")
        check_proxy_protocol(self.proxy_protocol)


def check_proxy_protocol(proxy_protocol: object) -> None:
    """Refuse anything but ``None``, ``"v1"``, ``"v2"`` or a :class:`ProxyHeader` it can encode."""
    if isinstance(proxy_protocol, ProxyHeader):
        proxyproto.encode(proxy_protocol)  # raises ValueError on what no header can say
    elif proxy_protocol not in (None, "v1", "v2"):
        raise ValueError(
            f'proxy_protocol is "v1", "v2" or a ProxyHeader(...), not {proxy_protocol!r}'
        )


def proxy_header_bytes(proxy_protocol: ProxyHeader | str, stream: net.Stream) -> bytes:
    """The PROXY header to send first on ``stream``; ``"v1"``/``"v2"`` name its own addresses."""
    if isinstance(proxy_protocol, ProxyHeader):
        return proxyproto.encode(proxy_protocol)
    source, destination = stream.addresses
    version = 1 if proxy_protocol == "v1" else 2
    return proxyproto.encode(ProxyHeader(version, source=source, destination=destination))


PLAIN = Sending()


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, host, port, and the request target it names."""

    scheme: str
    host: str
    port: int
    request_target: str

    @classmethod
    def parse(cls, url: str) -> Target:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        return _parse_target(url)

    @classmethod
    def _parse(cls, url: str) -> Target:
        without_fragment = url.split("#", 1)[0]
        parts = urlsplit(without_fragment)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host; write it like http://127.0.0.1:8080/path")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ValueError(f"{url!r} has a bad port: {exc}") from None
        # The target is everything after the authority, as written: "?" alone is kept.
        rest = without_fragment.split("//", 1)[1][len(parts.netloc) :]
        if not rest.startswith("/"):
            rest = "/" + rest
        return cls(parts.scheme, parts.hostname, port, rest)

    @property
    def host_header(self) -> str:
        """``host[:port]``, the port left out when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header}"

    @property
    def base_path(self) -> str:
        """The URL's path without its query or a trailing slash (``""`` for the root)."""
        return self.request_target.split("?", 1)[0].rstrip("/")

    def with_port(self, port: int | None) -> Target:
        if port is None:
            return self
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
        return Target(self.scheme, self.host, port, self.request_target)


@functools.lru_cache(maxsize=1024)
def _parse_target(url: str) -> Target:
    return Target._parse(url)  # a Target is immutable: the same URL parses once


def build_request(
    target: Target,
    method: str,
    headers: HeaderItems,
    body: Body,
    *,
    host: str | None,
    path: str | None,
    add_default_headers: bool,
    chunked: bool,
    absolute_form: bool = False,
    sending: Sending = PLAIN,
) -> Request:
    """The request :meth:`Deproxy.make_request` sends, default and tracking headers included.

    ``sending`` gives the request line's HTTP version, and ``Expect: 100-continue`` is added
    (when absent) if it asks to wait for 100 Continue, default headers or not."""
    chunked = chunked or sending.chunked
    given = Headers(headers)
    final = Headers()
    if host is not None:
        final.add("Host", host)  # the caller's value: coerce it
        given.delete_all("Host")
    elif add_default_headers and "Host" not in given:
        final._append("Host", target.host_header)
    for name, value in given.items():
        final._append(name, value)  # checked when `given` was made
    if add_default_headers:
        for name, value in (
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", USER_AGENT),
        ):
            if name not in final:
                final._append(name, value)
        framed = "Content-Length" in final or "Transfer-Encoding" in final
        if chunked and not framed:
            final._append("Transfer-Encoding", "chunked")
        elif body is not None and not framed:
            final._append("Content-Length", str(len(encode_body(body, final))))
    if sending.expect_continue and "Expect" not in final:
        final._append("Expect", "100-continue")
    if TRACKING_HEADER not in final:
        final._append(TRACKING_HEADER, new_request_id())
    request_target = path if path is not None else target.request_target
    if absolute_form and path is None:
        request_target = target.origin + target.request_target
    return Request(method, request_target, final, body, sending.http_version)


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


def check_http2(http2: object) -> None:
    if http2 not in (False, True, "h2c"):
        raise ValueError(
            f"http2 is True (h2 over TLS ALPN), 'h2c' (cleartext, prior knowledge) or False, "
            f"not {http2!r}"
        )


def parse_proxy(proxy: str) -> Target:
    if not (isinstance(proxy, str) and proxy.startswith("http://")):
        raise ValueError(f"proxy must be an http://host:port URL, got {proxy!r}")
    return Target.parse(proxy)


class ClientConnection:
    """A persistent client connection: send several requests over one TCP connection.

    Made by :meth:`Deproxy.connect`; pass it as ``make_request(..., connection=conn)``. It closes
    itself when a response says the server will close. After a ``101 Switching Protocols`` it
    carries no more HTTP/1 requests: the connection belongs to the protocol switched to, and
    the bytes that followed the 101 wait in its reader (``pending``).
    """

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
        interim = chain.interim_responses if chain is not None else None
        with self._lock:
            self._check_open(timeout)
            try:
                response, body_sent = self._exchange(data, request.method, sending, interim)
            except BaseException:
                self._stream.close()
                raise
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
        interim = chain.interim_responses if chain is not None else None
        with self._lock:
            self._check_open(timeout)
            try:
                self._stream.write(data)
                return self._reader.read_response(method, interim)
            finally:
                self._stream.close()

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
) -> Response:
    """One request on a fresh connection, closed afterwards (what it received beyond the
    response goes to ``chain``, when given: see :meth:`ClientConnection.send`). ``http2``
    and ``h2_reset_after``: see :func:`open_connection` and :meth:`H2ClientConnection.send`."""
    with open_connection(
        target,
        timeout=timeout,
        verify=verify,
        ca=ca,
        proxy=proxy,
        proxy_protocol=sending.proxy_protocol,
        http2=http2,
    ) as connection:
        if isinstance(connection, H2ClientConnection):
            return connection.send(
                request, sending, timeout=timeout, chain=chain, reset_after=h2_reset_after
            )
        return connection.send(request, sending, chain=chain)


def end_to_end(headers: Headers) -> Headers:
    """``headers`` without the hop-by-hop fields, nor those ``Connection`` nominates."""
    nominated = {
        part.strip().lower()
        for value in headers.get_all("Connection")
        for part in value.split(",")
        if part.strip()
    }
    dropped = HOP_BY_HOP | nominated
    return Headers([(n, v) for n, v in headers.items() if n.lower() not in dropped])


def forward(
    request: Request,
    target: Target,
    *,
    path: str,
    host: str | None = None,
    timeout: float | None = FORWARD_TIMEOUT,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
) -> Response:
    """Forward ``request`` to ``target`` as an intermediary does, and return the answer.

    Hop-by-hop fields are dropped both ways (a Content-Length stays on the answer to a HEAD
    and on a 304, which carry no body), the body is framed anew by its length, ``path``
    is the request target upstream, and ``host`` (when given) replaces ``Host``. The answer's
    body is left for whoever sends it on to frame. Raises ``DeproxyError`` when no answer came.
    """
    headers = end_to_end(request.headers)
    if host is not None:
        headers.set("Host", host)
    if request.raw_body or request.method in ("POST", "PUT", "PATCH"):
        headers.add("Content-Length", str(len(request.raw_body)))
    upstream = Request(request.method, path, headers, request.raw_body)  # in our own HTTP/1.1
    answer = exchange(target, upstream, timeout=timeout, verify=verify, ca=ca)
    headers = end_to_end(answer.headers)
    if request.method == "HEAD" or answer.code == "304":  # no body: the length is information
        for value in answer.headers.get_all("Content-Length"):
            headers.add("Content-Length", value)
    return Response(answer.code, answer.message, headers, answer.raw_body, answer.http_version)
