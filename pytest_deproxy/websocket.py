"""The client side of a WebSocket: open one through the proxy under test, then talk on it.

Rules kept here: the opening handshake is an HTTP request like any other (built by
:func:`client.build_request`, its answer read by :mod:`wire`), and whatever goes wrong with it is
data on the session's chain, as with ``make_request``: a session that did not open says why
(``session.error``) and refuses to send. Once open, one named reader thread per session reads
the connection, so pings and closes are answered, and frames stamped, when they arrive rather
than when the test asks; :meth:`WebSocketSession.close` (or leaving the ``with`` block) joins it.
The test's threads write while the reader thread reads: through a ``net.SharedStream``, whose
TLS calls never run at once (OpenSSL does not promise that they may). The frames go on the
handshake chain's ``frames`` as they cross.
Misuse raises ``ValueError``/``TypeError``; using a closed session raises ``WebSocketClosed``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from . import client, net, wire, ws
from .client import Target, Verify
from .errors import DeproxyError, DeproxyTimeout, ProtocolError, TunnelRefused
from .models import HeaderItems, Headers, Request
from .record import MessageChain
from .tls import CertificateAuthority
from .ws import Frame, WebSocketClosed

SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
CLOSE_GRACE = 2.0  # after the closing handshake, how long the server has to end the TCP connection


def parse_url(url: str) -> Target:
    """A ws://, wss://, http:// or https:// URL as the HTTP target of its handshake."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in SCHEMES:
        raise ValueError(f"{url!r} is not a ws://, wss://, http:// or https:// URL")
    return Target.parse(f"{SCHEMES[scheme.lower()]}://{rest}")


def handshake_request(
    target: Target, headers: HeaderItems, subprotocols: tuple[str, ...]
) -> Request:
    """The upgrade request: the caller's fields, then each handshake field they did not give."""
    given = Headers(headers)
    items = given.items()
    key = given.get("Sec-WebSocket-Key") or ws.new_key()
    items += [f for f in ws.handshake_headers(key, subprotocols) if f[0] not in given]
    return client.build_request(
        target, "GET", items, None, host=None, path=None, add_default_headers=True, chunked=False
    )


def connect_stream(
    target: Target,
    *,
    timeout: float | None,
    verify: Verify,
    ca: CertificateAuthority | None,
    proxy: str | None,
) -> net.Stream:
    """A connection to ``target``; through ``proxy`` it is a CONNECT tunnel (for ws:// too,
    as browsers do), then TLS for wss://."""
    context = client.client_tls_context(verify, ca) if target.scheme == "https" else None
    hop = target if proxy is None else client.parse_proxy(proxy)
    stream = net.connect(hop.host, hop.port, timeout)
    try:
        if proxy is not None:
            client.open_tunnel(stream, target, timeout)
        if context is not None:
            stream = stream.start_tls(context, server_side=False, server_hostname=target.host)
    except BaseException:
        stream.close()
        raise
    return stream


class WebSocketSession:
    """One WebSocket opened by :meth:`Deproxy.websocket`; a context manager that closes it.

    ``chain`` is the opening handshake (its ``handlings`` are what endpoints recorded). When
    the upgrade failed (a 403, no answer, a bad 101) ``open`` is False from the start,
    ``error`` says why, ``chain.received_response`` is the answer if one came, and sending
    raises ``WebSocketClosed``. Once over, ``closed_by`` (``"client"``: this session, or
    ``"server"``: whatever is on the other end of the connection, the proxy included),
    ``closed_at`` (``time.time()``), ``close_code`` (1006 when no close frame was exchanged)
    and ``close_reason`` say how it ended::

        with deproxy.websocket(proxy_url + "/chat") as session:
            session.send("hello")
            assert session.receive() == "hello"
    """

    def __init__(self, chain: MessageChain, timeout: float | None) -> None:
        self.chain = chain
        self.timeout = timeout
        self.error: str | None = None
        self.subprotocol: str | None = None
        self.opened_at: float | None = None
        self._channel: ws.Channel | None = None
        self._stream: net.SharedStream | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._messages: deque[str | bytes] = deque()
        self._pongs: list[ws.PongReceived] = []
        self._ended: str | None = None
        self._resetting = False

    # -- opening -----------------------------------------------------------------------

    def handshake(
        self,
        target: Target,
        *,
        verify: Verify,
        ca: CertificateAuthority | None,
        proxy: str | None,
        subprotocols: tuple[str, ...],
    ) -> None:
        """Connect, send the chain's request, check the answer; on a good 101, start reading."""
        chain, key = self.chain, self.chain.sent_request.headers["Sec-WebSocket-Key"]
        try:
            stream = connect_stream(target, timeout=self.timeout, verify=verify, ca=ca, proxy=proxy)
        except TunnelRefused as exc:
            chain.received_response, chain.error = exc.response, exc  # type: ignore[assignment]
            self.error = str(exc)
            return
        except DeproxyError as exc:
            chain.error, self.error = exc, str(exc)
            return
        try:
            stream.write(wire.serialize_request(chain.sent_request))
            reader = wire.MessageReader(stream)
            response = chain.received_response = reader.read_response("GET")
            problem = None
            if response.code != "101":
                problem = f"the upgrade was refused: {response.code} {response.message}".rstrip()
            elif (problem := ws.handshake_problem(response.headers, key, subprotocols)) is not None:
                chain.error = ProtocolError(problem)
        except DeproxyError as exc:
            chain.error, problem = exc, f"no answer to the upgrade: {exc}"
        if problem is not None:
            stream.close()
            self.error = problem
            return
        self.subprotocol = response.headers.get("Sec-WebSocket-Protocol")
        # The reader thread reads while the test's thread writes: under TLS, never at once.
        self._stream = net.SharedStream(stream)
        self._channel = ws.Channel(self._stream, "client", log=chain.frames)
        self.opened_at = time.time()
        self._thread = threading.Thread(
            target=self._read,
            args=(reader.pending,),
            name=f"websocket-{chain.request_id}",
            daemon=True,  # an open session must not keep the interpreter from exiting
        )
        self._thread.start()

    def _read(self, early: bytes) -> None:
        channel, stream = self._channel, self._stream
        assert channel is not None and stream is not None
        if early:  # frames that came with the 101
            self._deliver(channel.receive_data(early))
        while True:
            try:
                data = stream.read()
            except DeproxyTimeout:
                if self._ended is not None:
                    break  # the closing handshake is over and the server kept the connection
                continue
            except DeproxyError as exc:
                self._deliver([channel.connection_lost(str(exc))])
                break
            received = channel.receive_data(data)
            self._deliver(received)
            if not data:
                break
            if self._ended is not None:
                stream.timeout = CLOSE_GRACE
        channel.finish(reset=self._resetting)

    def _deliver(self, received: list[ws.Received]) -> None:
        if not received:
            return
        with self._changed:
            for item in received:
                if isinstance(item, ws.PongReceived):
                    self._pongs.append(item)
                elif isinstance(item, ws.Ended):
                    self._ended = self._ended or item.description
                else:
                    self._messages.append(item)
            self._changed.notify_all()

    # -- what happened -----------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Messages may be sent: the upgrade succeeded and no close has begun."""
        return self._channel is not None and self._channel.open

    @property
    def frames(self) -> list[Frame]:
        """Every frame both ways, in order (a snapshot)."""
        return [] if self._channel is None else self._channel.frames

    @property
    def closed_by(self) -> str | None:
        return None if self._channel is None else self._channel.closed_by

    @property
    def closed_at(self) -> float | None:
        return None if self._channel is None else self._channel.closed_at

    @property
    def close_code(self) -> int | None:
        return None if self._channel is None else self._channel.close_code

    @property
    def close_reason(self) -> str | None:
        return None if self._channel is None else self._channel.close_reason

    def _open_channel(self) -> ws.Channel:
        if self._channel is None:
            raise WebSocketClosed(f"the WebSocket was never opened: {self.error}")
        return self._channel

    def _wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(ready, self.timeout if timeout is None else timeout)

    # -- talking -----------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary one."""
        if not isinstance(data, (str, bytes, bytearray)):
            raise TypeError(f"send takes str or bytes, not {type(data).__name__}")
        self._open_channel().send_message(data)

    def send_fragments(self, parts: Iterable[str | bytes]) -> None:
        """Send one message as several frames, one a part (all ``str`` or all ``bytes``)."""
        pieces = list(parts)
        if not pieces or len({isinstance(p, str) for p in pieces}) != 1:
            raise ValueError("send_fragments takes one or more parts, all str or all bytes")
        channel = self._open_channel()
        for number, piece in enumerate(pieces):
            channel.send_message(piece, fin=number == len(pieces) - 1, first=number == 0)

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next whole message (``str`` for text). Waits at most ``timeout`` seconds (None:
        the session's timeout) and raises ``DeproxyTimeout``; raises ``WebSocketClosed``,
        saying who closed and with what code, once the WebSocket is over and nothing is left."""
        self._open_channel()
        if not self._wait(lambda: bool(self._messages) or self._ended is not None, timeout):
            raise DeproxyTimeout(f"no WebSocket message arrived within {timeout or self.timeout} s")
        with self._changed:
            if self._messages:
                return self._messages.popleft()
        raise WebSocketClosed(f"no more messages: the WebSocket was {self._ended}")

    def ping(self, data: bytes = b"", *, wait: bool = True, timeout: float | None = None) -> float:
        """Send a ping; with ``wait`` (the default), wait for a pong carrying the same ``data``
        and return the round trip in seconds (``DeproxyTimeout`` if none comes in ``timeout``).
        ``wait=False`` returns 0.0 at once: the pong, if any, shows up on ``frames``."""
        if len(data) > 125:
            raise ValueError(f"a ping carries at most 125 bytes, not {len(data)}")
        channel = self._open_channel()
        with self._changed:
            seen = len(self._pongs)
        sent = time.time()
        channel.send_ping(bytes(data))
        if not wait:
            return 0.0

        def answered() -> bool:
            return any(p.payload == data for p in self._pongs[seen:]) or self._ended is not None

        if not self._wait(answered, timeout):
            raise DeproxyTimeout(f"no pong within {timeout or self.timeout} s of a ping {data!r}")
        with self._changed:
            pong = next((p for p in self._pongs[seen:] if p.payload == data), None)
        if pong is None:
            raise WebSocketClosed(f"no pong: the WebSocket was {self._ended}")
        return pong.at - sent

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Begin the closing handshake (if nothing ended it yet), wait for the server to end the
        connection (at most ``timeout``), and release it. Safe to call twice."""
        ws.check_close(code, reason)
        if self._channel is None:
            return
        if self._channel.open:
            try:
                self._channel.send_close(code, reason)
            except DeproxyError:
                pass  # the connection broke: the reader thread records how
        self._finish(self.timeout if timeout is None else timeout)

    def _finish(self, timeout: float | None) -> None:
        assert self._channel is not None and self._stream is not None and self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stream.shutdown()
            self._thread.join()
        self._channel.finish()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the WebSocket is over (a close frame came, or the connection ended);
        whether it is. For idle timeouts: ``closed_by`` and ``closed_at`` then say who and when."""
        self._open_channel()
        return self._wait(lambda: self._ended is not None, timeout)

    # -- faults, on purpose --------------------------------------------------------------

    def send_raw_frame(
        self,
        opcode: str | int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        masked: bool = True,
        rsv: int = 0,
        length: int | None = None,
    ) -> bytes:
        """Send one frame built by hand, valid or not (see ``ws.build_frame``: ``length`` is the
        length the header declares, ``rsv`` the reserved bits); return its bytes."""
        data = ws.build_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv, length=length)
        name = opcode if isinstance(opcode, str) else ws.NAMES.get(opcode, f"0x{opcode:x}")
        self._open_channel().send_raw(data, [Frame("sent", name, payload, fin)])
        return data

    def send_truncated_frame(
        self, payload: bytes, *, opcode: str = "binary", keep: int | None = None, close: bool = True
    ) -> None:
        """Send a frame's header and only ``keep`` bytes (default: half) of its ``payload``;
        then, with ``close``, end the connection (FIN, no close frame): a frame cut short.
        ``close=False`` leaves the frame hanging, for a peer's or proxy's timeout to end."""
        keep = len(payload) // 2 if keep is None else keep
        if not 0 <= keep < len(payload):
            raise ValueError(f"keep is 0 to {len(payload) - 1} bytes of the payload, not {keep}")
        data = ws.build_frame(opcode, payload)
        head = len(data) - len(payload)
        channel = self._open_channel()
        channel.send_raw(data[: head + keep], [Frame("sent", opcode, payload[:keep])])
        if close:
            self.abort()

    def send_unmasked(self, data: str | bytes) -> None:
        """Send a message in a frame with no masking key, which RFC 6455 §5.1 forbids a client
        (a server must close with 1002)."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self.send_raw_frame("text" if isinstance(data, str) else "binary", payload, masked=False)

    def send_oversized(self, length: int = 2**63, payload: bytes = b"") -> None:
        """Send a binary frame header declaring ``length`` payload bytes, followed by only
        ``payload``. The default, 2**63, breaks RFC 6455 §5.2 (the top bit must be 0: 1002);
        a legal but huge length tests a peer's size limit (1009)."""
        self.send_raw_frame("binary", payload, length=length)

    def ping_flood(self, count: int, payload: bytes = b"") -> None:
        """Send ``count`` pings at once, without waiting for pongs (they land on ``frames``)."""
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"ping_flood sends 1 or more pings, not {count!r}")
        if len(payload) > 125:
            raise ValueError(f"a ping carries at most 125 bytes, not {len(payload)}")
        frames = [Frame("sent", "ping", payload) for _ in range(count)]
        data = b"".join(ws.build_frame("ping", payload) for _ in range(count))
        self._open_channel().send_raw(data, frames)

    def abort(self, *, reset: bool = False) -> None:
        """End the connection without a close frame: a FIN, or with ``reset`` a TCP RST."""
        channel = self._open_channel()
        self._resetting = reset
        channel.abort(reset=reset)
        assert self._thread is not None
        self._thread.join()  # its last act: finish(reset=...)

    def __enter__(self) -> WebSocketSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.open else (self.error or self._ended or "closed")
        return f"<WebSocketSession {self.chain.url} {state}, {len(self.frames)} frames>"
