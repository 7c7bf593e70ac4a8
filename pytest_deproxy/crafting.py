"""Crafting the request a client sends: the URL it names (Target), the request as built
(default headers, a fresh tracking id), and how it goes on the wire (Sending).

Rule kept here: pure, no socket. Everything a caller can get wrong is checked here, once, and
refused with a ``ValueError``/``TypeError`` that says what to pass instead.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import proxyproto
from ._version import __version__
from .models import TRACKING_HEADER, TRACKING_KEY, Body, HeaderItems, Headers, Request, encode_body
from .proxyproto import ProxyHeader

DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = f"pytest-deproxy/{__version__}"

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
    for one naming the connection's own addresses).

    On HTTP/2, the client-side faults: ``h2_rapid_reset`` (open that many streams, each a
    whole request reset at once, before the request itself), ``h2_continuation_flood`` (the
    request's header block spread over HEADERS and that many CONTINUATION frames),
    ``h2_zero_window`` (advertise ``SETTINGS_INITIAL_WINDOW_SIZE=0`` and give no
    flow-control credit back) and ``h2_fields`` (the header block exactly as given:
    pseudo-headers, duplicates, case and connection-specific fields included). Checked once,
    here."""

    chunked: bool = False
    disconnect: str | None = None
    dribble: tuple[int, float] | None = None
    http_version: str = "1.1"
    expect_continue: bool = False
    proxy_protocol: ProxyProtocol = None
    h2_rapid_reset: int = 0
    h2_continuation_flood: int = 0
    h2_zero_window: bool = False
    h2_fields: tuple[tuple[str, str], ...] | None = None

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
        for name in ("h2_rapid_reset", "h2_continuation_flood"):
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= H2_BURST:
                raise ValueError(f"{name} is a count of frames from 0 to {H2_BURST}, not {count!r}")
        if not isinstance(self.h2_zero_window, bool):
            raise TypeError(f"h2_zero_window is True or False, not {self.h2_zero_window!r}")
        if self.h2_fields is not None:
            check_h2_fields(self.h2_fields)

    @property
    def h2_faults(self) -> bool:
        """Whether any HTTP/2-only way of sending is asked for."""
        return bool(
            self.h2_rapid_reset
            or self.h2_continuation_flood
            or self.h2_zero_window
            or self.h2_fields is not None
        )


H2_BURST = 100_000  # the most streams or CONTINUATION frames one call may send


def h2_fields(fields: HeaderItems) -> tuple[tuple[str, str], ...] | None:
    """``make_request(h2_fields=...)`` as the pairs :class:`Sending` keeps: a mapping or an
    iterable of ``(name, value)`` str pairs, kept in order, duplicates and case as given."""
    if fields is None:
        return None
    items = fields.items() if isinstance(fields, (Mapping, Headers)) else fields
    try:
        pairs = tuple((name, value) for name, value in items)
    except (TypeError, ValueError):
        raise TypeError(
            "h2_fields is a list of (name, value) pairs, e.g. [(':method', 'GET'), "
            f"(':path', '/'), (':path', '/again')], not {fields!r}"
        ) from None
    check_h2_fields(pairs)
    return pairs


def check_h2_fields(fields: object) -> None:
    if not isinstance(fields, tuple) or not all(
        isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
        for pair in fields
    ):
        raise TypeError(f"h2_fields is a sequence of (name, value) str pairs, not {fields!r}")
    if not fields:
        raise ValueError("h2_fields is the whole header block: give at least one field")


def check_proxy_protocol(proxy_protocol: object) -> None:
    """Refuse anything but ``None``, ``"v1"``, ``"v2"`` or a :class:`ProxyHeader` it can encode."""
    if isinstance(proxy_protocol, ProxyHeader):
        proxyproto.encode(proxy_protocol)  # raises ValueError on what no header can say
    elif proxy_protocol not in (None, "v1", "v2"):
        raise ValueError(
            f'proxy_protocol is "v1", "v2" or a ProxyHeader(...), not {proxy_protocol!r}'
        )


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


# (name, value, the name lowered: looked for among the given names on every call)
_DEFAULT_HEADERS = (
    ("Accept", "*/*", "accept"),
    ("Accept-Encoding", "identity", "accept-encoding"),
    ("User-Agent", USER_AGENT, "user-agent"),
)


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
    trailers: HeaderItems = None,
) -> Request:
    """The request :meth:`Deproxy.make_request` sends, default and tracking headers included.

    ``sending`` gives the request line's HTTP version, and ``Expect: 100-continue`` is added
    (when absent) if it asks to wait for 100 Continue, default headers or not. A request with
    ``trailers`` gets no default ``Content-Length``: its body ends with its last chunk
    (HTTP/1.1, ``chunked``) or at END_STREAM (HTTP/2), as a streaming client's does; a proxy
    that turns HTTP/2 into HTTP/1.1 has to keep a declared length, and drops the trailers
    then (haproxy 2.6 does)."""
    chunked = chunked or sending.chunked
    # Built as lists and made Headers once: a request is built on every call.
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    given = Headers(headers)
    if host is not None:
        host = Headers([("Host", host)])["Host"]  # the caller's value: coerce it
        items.append(("Host", host))
        keys.append("host")
        given.delete_all("Host")
    elif add_default_headers and "Host" not in given:
        items.append(("Host", target.host_header))
        keys.append("host")
    for name, value in given.items():  # checked when `given` was made
        items.append((name, value))
        keys.append(name.lower())
    if add_default_headers:
        for name, value, key in _DEFAULT_HEADERS:
            if key not in keys:
                items.append((name, value))
                keys.append(key)
        framed = "content-length" in keys or "transfer-encoding" in keys
        if chunked and not framed:
            items.append(("Transfer-Encoding", "chunked"))
            keys.append("transfer-encoding")
        elif body is not None and not framed and trailers is None:
            length = len(encode_body(body, Headers.from_wire(items, keys)))
            items.append(("Content-Length", str(length)))
            keys.append("content-length")
    if sending.expect_continue and "expect" not in keys:
        items.append(("Expect", "100-continue"))
        keys.append("expect")
    if TRACKING_KEY not in keys:
        items.append((TRACKING_HEADER, new_request_id()))
        keys.append(TRACKING_KEY)
    final = Headers.from_wire(items, keys)
    request_target = path if path is not None else target.request_target
    if absolute_form and path is None:
        request_target = target.origin + target.request_target
    return Request(method, request_target, final, body, sending.http_version, trailers)


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
