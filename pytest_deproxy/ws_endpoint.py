"""The endpoint's side of an upgraded connection: a WebSocket answered message by message,
or a raw tunnel.

Rules kept here: what a handler returns (a :class:`~pytest_deproxy.faults.Takeover`) is
computed from the request alone; the session runs only once the endpoint has recorded the
handshake's handling with its 101 and written it. Then the connection's own thread reads it
(one reader), and replies and anything else the handler sends leave through the channel's
outbox, from any thread. Every frame lands on the handshake's ``Handling.frames`` as it
crosses. The loop ends when the WebSocket is over (the closing handshake, the peer gone, a
fault that drops the connection) or when the endpoint shuts down (the stream then reads
``b""``), and notes who ended the connection on its record. An exception raised by the
handler's callbacks is reported (it fails the test) and the WebSocket closed with 1011, as
servers do.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import ws
from .errors import ConnectionReset, DeproxyError, DeproxyTimeout
from .faults import Duplex, Fault, Send, Takeover, Upgraded
from .models import Headers, Request, Response
from .record import Frame, Handling

CLOSE_GRACE = 2.0  # once the endpoint sent a close frame, how long the peer has to answer it
INTERNAL_ERROR = 1011  # RFC 6455 §7.4.1: the server met a condition it could not handle
PROXY_HINT = (
    "a proxy forwards Upgrade and Connection only when told to (nginx: proxy_http_version "
    '1.1 and proxy_set_header Upgrade $http_upgrade, Connection "upgrade")'
)

Message = str | bytes
OnMessage = Callable[[Message, "ServerSession"], "Message | None"]
OnOpen = Callable[["ServerSession"], None]
Subprotocol = str | Callable[[list[str]], "str | None"] | None


# -- the handshake ----------------------------------------------------------------------


def _refusal(status: int, why: str, headers: dict[str, str] | None = None) -> Fault:
    """A refused handshake: an ordinary answer, with the reason on the handling's action."""
    response = Response(
        status,
        headers={"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
        body=why + "\n",
    )
    return Fault(
        f"refused the upgrade: {why}",
        response,
        lambda _, head, body: [Send(head + body)],
        completes=True,
    )


def websocket_refusal(request: Request) -> Fault | None:
    """Why ``request`` is not a WebSocket opening handshake (RFC 6455 §4.2.1), as the
    answer that says so; ``None`` for a valid one."""
    headers = request.headers
    if request.method != "GET":
        return _refusal(405, f"a WebSocket opens with GET, not {request.method}")
    if not headers.has_token("Upgrade", "websocket"):
        got = headers.get("Upgrade")
        return _refusal(400, f"not a WebSocket upgrade: Upgrade is {got!r}; {PROXY_HINT}")
    if not headers.has_token("Connection", "upgrade"):
        got = headers.get("Connection")
        return _refusal(400, f"not a WebSocket upgrade: Connection is {got!r}; {PROXY_HINT}")
    if request.http_version != "1.1":
        version = request.http_version
        return _refusal(400, f"a WebSocket opens over HTTP/1.1, not HTTP/{version}; {PROXY_HINT}")
    if headers.get("Sec-WebSocket-Version") != "13":
        got = headers.get("Sec-WebSocket-Version")
        why = f"Sec-WebSocket-Version is {got!r}; this endpoint speaks 13"
        return _refusal(426, why, {"Sec-WebSocket-Version": "13"})
    key = headers.get("Sec-WebSocket-Key")
    try:
        valid = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return _refusal(400, f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64")
    return None


def offered_subprotocols(headers: Headers) -> list[str]:
    return [
        name.strip()
        for value in headers.get_all("Sec-WebSocket-Protocol")
        for name in value.split(",")
        if name.strip()
    ]


def choose_subprotocol(subprotocol: Subprotocol, request: Request) -> str | None:
    """The subprotocol to answer with: ``subprotocol`` if the client offered it, or what a
    callable picks from the offered list (sent as it picked, offered or not)."""
    offered = offered_subprotocols(request.headers)
    if callable(subprotocol):
        return subprotocol(offered)
    return subprotocol if subprotocol in offered else None


def accept_response(request: Request, subprotocol: str | None) -> Response:
    """The ``101 Switching Protocols`` that accepts ``request``'s WebSocket handshake."""
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ws.accept_for(request.headers["Sec-WebSocket-Key"])),
    ]
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    return Response(101, headers=fields)


def accept(
    request: Request,
    *,
    on_message: OnMessage | None,
    on_open: OnOpen | None = None,
    subprotocol: Subprotocol = None,
    answer_pings: bool = True,
    description: str | None = None,
) -> Takeover | Fault:
    """What a WebSocket handler answers ``request`` with: a takeover that runs the session,
    or the refusal of a handshake that is not one."""
    refusal = websocket_refusal(request)
    if refusal is not None:
        return refusal
    chosen = choose_subprotocol(subprotocol, request)
    plan = Plan(on_message, on_open, answer_pings, chosen)
    return Takeover(accept_response(request, chosen), plan.run, description)


# -- the session --------------------------------------------------------------------------


class ServerSession:
    """The endpoint's end of one WebSocket, as ``on_message(message, session)`` and
    ``on_open(session)`` see it.

    ``handling`` is the opening handshake's (its ``frames`` fill as they cross), ``request``
    its request, ``subprotocol`` the one chosen. :meth:`send`, :meth:`ping` and :meth:`close`
    may be called from any thread; the faults (:meth:`drop`, :meth:`send_truncated`,
    :meth:`send_raw_frame`) commit on purpose what a broken server does. Once over,
    ``closed_by`` (``"endpoint"`` or ``"client"``: whatever is on the other end, the proxy
    included), ``close_code`` (1006 when no close frame was exchanged) and ``close_reason``
    say how it ended.
    """

    def __init__(self, upgraded: Upgraded, channel: ws.Channel, subprotocol: str | None) -> None:
        self.handling: Handling = upgraded.handling
        self.request: Request = upgraded.handling.request
        self.subprotocol = subprotocol
        self._channel = channel
        self._stream: Duplex = upgraded.stream
        self._reset = False

    @property
    def frames(self) -> list[Frame]:
        """Every frame both ways so far, in order (a snapshot)."""
        return self._channel.frames

    @property
    def open(self) -> bool:
        return self._channel.open

    @property
    def closed_by(self) -> str | None:
        by = self._channel.closed_by
        return "endpoint" if by == "server" else by

    @property
    def close_code(self) -> int | None:
        return self._channel.close_code

    @property
    def close_reason(self) -> str | None:
        return self._channel.close_reason

    def send(self, data: Message) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary one."""
        if not isinstance(data, (str, bytes, bytearray)):
            raise TypeError(f"send takes str or bytes, not {type(data).__name__}")
        self._channel.send_message(data)

    def send_fragments(self, parts: Iterable[Message]) -> None:
        """Send one message as several frames, one a part (all ``str`` or all ``bytes``)."""
        pieces = list(parts)
        if not pieces or len({isinstance(p, str) for p in pieces}) != 1:
            raise ValueError("send_fragments takes one or more parts, all str or all bytes")
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            self._channel.send_message(piece, fin=last, first=number == 0)

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (its pong, if one comes, lands on ``frames``)."""
        if len(data) > 125:
            raise ValueError(f"a ping carries at most 125 bytes, not {len(data)}")
        self._channel.send_ping(bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Begin the closing handshake; the peer has ``CLOSE_GRACE`` s to answer it."""
        ws.check_close(code, reason)
        if self._channel.open:
            self._channel.send_close(code, reason)

    # -- faults, on purpose --------------------------------------------------------------

    def drop(self, *, reset: bool = False) -> None:
        """End the connection with no close frame: a FIN, or with ``reset`` a TCP RST."""
        self._reset = self._reset or reset
        self._channel.abort(reset=reset)

    def send_raw_frame(
        self,
        opcode: str | int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        masked: bool = False,
        rsv: int = 0,
        length: int | None = None,
    ) -> bytes:
        """Send one frame built by hand, valid or not (see ``ws.build_frame``; a server's
        frames are not masked unless asked); return its bytes."""
        data = ws.build_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv, length=length)
        name = opcode if isinstance(opcode, str) else ws.NAMES.get(opcode, f"0x{opcode:x}")
        self._channel.send_raw(data, [Frame("sent", name, payload, fin)])
        return data

    def send_truncated(
        self,
        payload: bytes,
        *,
        keep: int | None = None,
        opcode: str = "binary",
        reset: bool = False,
    ) -> None:
        """Drop the connection mid-message: send a frame's header and only ``keep`` bytes
        (default: half) of its ``payload``, then end the connection (FIN, or RST)."""
        keep = len(payload) // 2 if keep is None else keep
        if not 0 <= keep < len(payload):
            raise ValueError(f"keep is 0 to {len(payload) - 1} bytes of the payload, not {keep}")
        data = ws.build_frame(opcode, payload, masked=False)
        head = len(data) - len(payload)
        self._channel.send_raw(data[: head + keep], [Frame("sent", opcode, payload[:keep])])
        self.drop(reset=reset)

    def __repr__(self) -> str:
        state = "open" if self.open else self._channel.describe_close()
        return f"<ServerSession {self.request.path} {state}, {len(self.frames)} frames>"


@dataclass(frozen=True)
class Plan:
    """What one accepted WebSocket does: the handler's callbacks and options."""

    on_message: OnMessage | None
    on_open: OnOpen | None
    answer_pings: bool
    subprotocol: str | None

    def run(self, upgraded: Upgraded) -> None:
        """Serve the WebSocket on the connection's thread until it is over."""
        stream = upgraded.stream
        channel = ws.Channel(
            stream, "server", answer_pings=self.answer_pings, log=upgraded.handling.frames
        )
        session = ServerSession(upgraded, channel, self.subprotocol)
        reset = False
        try:
            on_open = self.on_open
            if on_open is not None:
                self._call(upgraded, session, on_open, session)
            pending = upgraded.early
            while not channel.ended:
                if pending:
                    data, pending = pending, b""
                else:
                    try:
                        data = stream.read()
                    except DeproxyTimeout:
                        break  # the peer never answered the endpoint's close
                    except DeproxyError as exc:
                        reset = isinstance(exc, ConnectionReset)
                        channel.connection_lost(str(exc))
                        break
                    if not data and upgraded.stopping.is_set():
                        break  # the endpoint shut down: not the peer's doing
                if (
                    self._deliver(upgraded, session, channel, channel.receive_data(data))
                    or not data
                ):
                    break
                if channel.closed_by is not None:
                    stream.timeout = CLOSE_GRACE  # closing: the peer has a while to answer
        finally:
            if not upgraded.stopping.is_set():  # on the record before the FIN
                by = channel.closed_by
                upgraded.closed("reset" if reset else "client" if by == "client" else "endpoint")
            channel.finish(reset=session._reset)

    def _deliver(
        self,
        upgraded: Upgraded,
        session: ServerSession,
        channel: ws.Channel,
        received: list[ws.Received],
    ) -> bool:
        """Answer each message that arrived; whether the WebSocket is over."""
        for item in received:
            if isinstance(item, ws.Ended):
                channel.flush()
                return True
            if not isinstance(item, (str, bytes)):
                continue  # a pong: it is on the record
            if self.on_message is None:
                reply: object = item
            else:
                reply = self._call(upgraded, session, self.on_message, item, session)
            if reply is None or not session.open:
                continue
            if not isinstance(reply, (str, bytes, bytearray)):
                error = TypeError(
                    f"on_message returned {type(reply).__name__}; it returns the reply "
                    "(str or bytes) or None to send nothing"
                )
                self._fail(upgraded, session, error)
                continue
            try:  # the replies to what one read brought leave together, in one write
                channel.send_message(
                    bytes(reply) if isinstance(reply, bytearray) else reply, now=False
                )
            except ws.WebSocketClosed:
                pass  # the peer went away meanwhile: the record says how
        channel.flush()
        return False

    def _call(
        self,
        upgraded: Upgraded,
        session: ServerSession,
        callback: Callable[..., object],
        *arguments: object,
    ) -> object:
        """The handler's ``callback(*arguments)``; an exception it raises is reported."""
        try:
            return callback(*arguments)
        except DeproxyError:
            return None  # the connection broke under the handler: the record says how
        except Exception as exc:
            self._fail(upgraded, session, exc)
            return None

    @staticmethod
    def _fail(upgraded: Upgraded, session: ServerSession, error: Exception) -> None:
        upgraded.report(error)
        if session.open:
            reason = f"the endpoint's handler raised {type(error).__name__}"
            try:
                session.close(INTERNAL_ERROR, reason[:123])
            except DeproxyError:
                pass


# -- a raw tunnel ----------------------------------------------------------------------------


def upgrade_refusal(request: Request) -> Fault | None:
    """Why ``request`` asks for no upgrade at all, as the answer that says so."""
    if "Upgrade" not in request.headers:
        return _refusal(400, f"no Upgrade header: nothing to switch to; {PROXY_HINT}")
    if not request.headers.has_token("Connection", "upgrade"):
        got = request.headers.get("Connection")
        return _refusal(400, f"Connection is {got!r}, without 'upgrade'; {PROXY_HINT}")
    return None


def echo_bytes(upgraded: Upgraded) -> None:
    """A tunnel that sends back every byte it reads until the client closes."""
    stream = upgraded.stream
    if upgraded.early:
        stream.write(upgraded.early)
    while data := stream.read():
        stream.write(data)
    if not upgraded.stopping.is_set():
        upgraded.closed("client")
