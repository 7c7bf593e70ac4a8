"""deproxy.websocket(): the client side of WebSocket, against a small wsproto server in threads.

The server answers by path: /echo (default) echoes, /greet sends a message with its 101,
/fragments sends one message in three frames, /close/CODE closes with CODE, /limit/N closes
with 1009 past N message bytes, /no-pong ignores pings, /idle/SECONDS drops the connection
(no close frame) after that long without traffic, /reset resets it at once, /refuse answers 403. Each connection's record
says what wsproto saw: the close code it reported (1002 for a protocol error, 1006 for a
connection that ended with no close frame), pings, messages, bytes.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from pytest_deproxy import TRACKING_HEADER, Deproxy, DeproxyTimeout, Frame, Headers, ProtocolError
from pytest_deproxy.wire import MessageReader
from pytest_deproxy.ws import WebSocketClosed, accept_for, build_frame, handshake_problem, mask

from .conftest import MemoryStream, RawServer, echo_in_many_sessions, eventually, open_fds


@dataclass
class Seen:
    """What the server saw on one connection."""

    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    messages: list[str | bytes] = field(default_factory=list)
    pings: int = 0
    bytes_after_handshake: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    reset: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class WsServer:
    """A threaded WebSocket server on 127.0.0.1 (TLS if given a context), one thread a connection."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[Seen] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, name="ws-test-server")
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"{'wss' if self.context else 'ws'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            seen = Seen()
            thread = threading.Thread(target=self._serve, args=(sock, seen), name="ws-test-conn")
            with self._lock:
                self.seen.append(seen)
                self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, seen: Seen) -> None:
        try:
            sock.settimeout(10)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_side=True)
            self._talk(sock, seen)
        except ConnectionResetError:
            seen.reset = True
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()
            seen.done.set()

    def _talk(self, sock: socket.socket, seen: Seen) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        request = None
        while request is None:
            data = sock.recv(65536)
            if not data:
                return
            ws.receive_data(data)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        seen.path = request.target
        seen.headers = {n.decode().lower(): v.decode() for n, v in request.extra_headers}
        route, _, argument = request.target.strip("/").partition("/")
        if route == "refuse":
            reject = RejectConnection(403, [(b"content-length", b"9")], has_body=True)
            sock.sendall(ws.send(reject) + ws.send(RejectData(b"forbidden")))
            return
        subprotocol = "chat" if "chat" in request.subprotocols else None
        opening = ws.send(AcceptConnection(subprotocol=subprotocol))
        if route == "greet":
            opening += ws.send(TextMessage("welcome"))
        sock.sendall(opening)
        if route == "fragments":
            for part, last in (("one ", False), ("two ", False), ("three", True)):
                sock.sendall(ws.send(TextMessage(part, message_finished=last)))
        if route == "close":
            sock.sendall(ws.send(CloseConnection(int(argument), "server says bye")))
        if route == "idle":
            sock.settimeout(float(argument))
        if route == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed with an RST
        limit = int(argument) if route == "limit" else None
        message: list[str | bytes] = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if route == "idle":
                    return  # as a proxy's tunnel timeout does: no close frame
                raise
            seen.bytes_after_handshake += len(data)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    message.append(
                        bytes(event.data) if isinstance(event, BytesMessage) else event.data
                    )
                    size = sum(len(part) for part in message)
                    if limit is not None and size > limit:
                        seen.close_code = 1009
                        sock.sendall(ws.send(CloseConnection(1009, "too big")))
                        return
                    if event.message_finished:
                        whole: str | bytes = (
                            "".join(str(part) for part in message)
                            if isinstance(event, TextMessage)
                            else b"".join(bytes(part) for part in message)  # type: ignore[arg-type]
                        )
                        message = []
                        seen.messages.append(whole)
                        sock.sendall(
                            ws.send(
                                TextMessage(whole)
                                if isinstance(whole, str)
                                else BytesMessage(whole)
                            )
                        )
                elif isinstance(event, Ping):
                    seen.pings += 1
                    if route != "no-pong":
                        sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if seen.close_code is None or route == "close":
                        seen.close_code, seen.close_reason = int(event.code), event.reason
                    if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                        sock.sendall(ws.send(event.response()))
                    return
            if not data:
                return

    def connection(self, number: int = 0, timeout: float = 10.0) -> Seen:
        """The record of the ``number``-th connection, once the server is done with it."""
        eventually(lambda: len(self.seen) > number, timeout)
        seen = self.seen[number]
        assert seen.done.wait(timeout), "the server still talks on that connection"
        return seen

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accepting.join(5)
        for thread in list(self.threads):
            thread.join(10)


@pytest.fixture
def ws_server() -> Iterator[Callable[..., WsServer]]:
    started: list[WsServer] = []

    def start(context: ssl.SSLContext | None = None) -> WsServer:
        started.append(WsServer(context))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def kinds(frames: list[Frame]) -> list[tuple[str, str, bool]]:
    return [(f.direction, f.opcode, f.fin) for f in frames]


# -- the wire: a 101 is the final answer ---------------------------------------------------


def test_a_101_is_the_final_response_and_what_follows_stays_pending() -> None:
    frame = b"\x81\x05hello"
    reader = MessageReader(
        MemoryStream(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n" + frame
        )
    )
    response = reader.read_response("GET")
    assert (response.code, response.message) == ("101", "Switching Protocols")
    assert response.headers["Upgrade"] == "websocket"
    assert response.body == ""
    assert reader.pending + reader.stream.read() == frame


def test_other_interim_responses_are_still_skipped() -> None:
    reader = MessageReader(
        MemoryStream(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
    )
    response = reader.read_response("GET")
    assert (response.code, response.body) == ("200", "ok")


# -- frames and handshakes, no socket --------------------------------------------------------


def test_frames_built_by_hand_follow_rfc_6455_section_5_2() -> None:
    assert build_frame("binary", b"x" * 125, masked=False)[:2] == b"\x82\x7d"
    assert build_frame("text", b"x" * 126, masked=False)[:4] == b"\x81\x7e\x00\x7e"
    assert build_frame("binary", b"", masked=False, length=1 << 16) == b"\x82\x7f" + (
        1 << 16
    ).to_bytes(8, "big")
    assert build_frame("ping", b"", fin=False, rsv=5, masked=False) == b"\x59\x00"
    frame = build_frame("text", b"hello, masked")
    assert frame[1] == 0x80 | 13
    assert mask(frame[6:], frame[2:6]) == b"hello, masked"
    with pytest.raises(ValueError, match="not 'nope'"):
        build_frame("nope", b"")
    with pytest.raises(ValueError, match="2\\*\\*64"):
        build_frame("binary", b"", length=1 << 64)
    with pytest.raises(ValueError, match="direction"):
        Frame("up", "text", b"")


def test_what_is_wrong_with_a_101_is_said() -> None:
    good = Headers(
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_for("k")}
    )
    assert handshake_problem(good, "k", ()) is None
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    no_upgrade = Headers([(n, v) for n, v in good.items() if n != "Upgrade"])
    assert "Upgrade is None" in str(handshake_problem(no_upgrade, "k", ()))
    chosen = Headers([*good.items(), ("Sec-WebSocket-Protocol", "mqtt")])
    assert "'mqtt', which was not offered" in str(handshake_problem(chosen, "k", ("chat",)))


# -- talking -------------------------------------------------------------------------------


def test_echo_text_and_binary_and_the_handshake_is_a_chain(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    with deproxy.websocket(server.url + "/echo", subprotocols=["chat", "other"]) as session:
        assert session.open, session.error
        assert session.subprotocol == "chat"
        session.send("héllo")
        assert session.receive() == "héllo"
        session.send(b"\x00\xffbin")
        assert session.receive() == b"\x00\xffbin"
    chain = session.chain
    assert chain.received_response is not None and chain.received_response.code == "101"
    assert chain.sent_request.headers["Upgrade"] == "websocket"
    assert chain in deproxy.chains
    seen = server.connection()
    assert seen.headers[TRACKING_HEADER.lower()] == chain.request_id
    assert seen.messages == ["héllo", b"\x00\xffbin"]
    assert kinds(session.frames)[:4] == [
        ("sent", "text", True),
        ("received", "text", True),
        ("sent", "binary", True),
        ("received", "binary", True),
    ]
    assert session.frames[0].payload == "héllo".encode()
    assert all(a.at <= b.at for a, b in zip(session.frames, session.frames[1:], strict=False))
    assert (session.closed_by, session.close_code) == ("client", 1000)
    assert not session.open


def test_a_one_megabyte_message_both_ways(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    big = os.urandom(1 << 20)
    with deproxy.websocket(server.url) as session:
        session.send(big)
        assert session.receive() == big
    sent, received = session.frames[0], session.frames[1]
    assert (sent.opcode, len(sent.payload)) == ("binary", 1 << 20)
    assert (received.opcode, received.payload, received.fin) == ("binary", big, True)


def test_a_fragmented_message_from_the_server_is_reassembled(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    with deproxy.websocket(ws_server().url + "/fragments") as session:
        assert session.receive() == "one two three"
    assert [(f.opcode, f.payload, f.fin) for f in session.frames[:3]] == [
        ("text", b"one ", False),
        ("continuation", b"two ", False),
        ("continuation", b"three", True),
    ]


def test_sending_fragments(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        session.send_fragments([b"ab", b"cd", b"e"])
        assert session.receive() == b"abcde"
    assert kinds(session.frames)[:3] == [
        ("sent", "binary", False),
        ("sent", "continuation", False),
        ("sent", "continuation", True),
    ]
    assert server.connection().messages == [b"abcde"]


def test_a_message_sent_with_the_101_is_received(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    with deproxy.websocket(ws_server().url + "/greet") as session:
        assert session.receive() == "welcome"


def test_ping_waits_for_its_pong_and_both_are_recorded(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        round_trip = session.ping(b"are you there")
        assert round_trip >= 0
    assert [(f.direction, f.opcode, f.payload) for f in session.frames[:2]] == [
        ("sent", "ping", b"are you there"),
        ("received", "pong", b"are you there"),
    ]
    assert server.connection().pings == 1


def test_a_ping_with_no_pong_times_out(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    with deproxy.websocket(ws_server().url + "/no-pong") as session:
        with pytest.raises(DeproxyTimeout, match="no pong"):
            session.ping(b"x", timeout=0.2)
        with pytest.raises(DeproxyTimeout, match="no WebSocket message"):
            session.receive(timeout=0.05)


# -- closing -------------------------------------------------------------------------------


def test_the_close_code_and_reason_reach_the_server(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    session = deproxy.websocket(server.url)
    before = time.time()
    session.close(4000, "done here")
    seen = server.connection()
    assert (seen.close_code, seen.close_reason) == (4000, "done here")
    assert (session.closed_by, session.close_code, session.close_reason) == (
        "client",
        4000,
        "done here",
    )
    assert session.closed_at is not None and session.closed_at >= before
    assert [(f.direction, f.opcode) for f in session.frames] == [
        ("sent", "close"),
        ("received", "close"),
    ]
    assert session.frames[0].payload == b"\x0f\xa0done here"
    session.close()  # twice is fine
    with pytest.raises(WebSocketClosed, match="closed by the client with 4000"):
        session.send("too late")


def test_a_close_from_the_server_is_recorded_with_who_and_when(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    before = time.time()
    with deproxy.websocket(server.url + "/close/4001") as session:
        with pytest.raises(
            WebSocketClosed, match="closed by the server with 4001 'server says bye'"
        ):
            session.receive()
        assert not session.open
        assert (session.closed_by, session.close_code) == ("server", 4001)
        assert session.closed_at is not None and session.closed_at >= before
    assert server.connection().close_code == 4001
    assert [(f.direction, f.opcode, f.payload) for f in session.frames] == [
        ("received", "close", b"\x0f\xa1server says bye"),
        ("sent", "close", b"\x0f\xa1server says bye"),  # echoed, as RFC 6455 5.5.1 asks
    ]


def test_an_idle_connection_dropped_by_the_far_side_says_who_and_when(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    session = deproxy.websocket(server.url + "/idle/0.3")
    assert session.wait_closed(timeout=10)
    assert session.opened_at is not None and session.closed_at is not None
    # The server's 0.3 s start before the client's opened_at: the handshake answer's last leg
    # (a few ms) lies between them, so the gap seen here may fall just short of 0.3 s.
    assert session.closed_at - session.opened_at >= 0.25
    assert (session.closed_by, session.close_code) == ("server", 1006)
    assert session.close_reason == "closed without a close frame"
    with pytest.raises(WebSocketClosed, match="closed by the server with 1006"):
        session.receive()
    session.close()


def test_a_reset_from_the_far_side_is_recorded(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    session = deproxy.websocket(ws_server().url + "/reset")
    assert session.wait_closed(timeout=10)
    assert (session.closed_by, session.close_code) == ("server", 1006)
    assert "reset" in str(session.close_reason)
    with pytest.raises(WebSocketClosed, match="reset"):
        session.send("anyone?")
    session.close()


# -- the upgrade refused or broken: data, not exceptions -----------------------------------


def test_a_refused_upgrade_is_visible_on_the_chain(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    with deproxy.websocket(ws_server().url + "/refuse") as session:
        assert not session.open
        response = session.chain.received_response
        assert response is not None
        assert (response.code, response.body) == ("403", "forbidden")
        assert session.chain.error is None
        assert session.error == "the upgrade was refused: 403"  # wsproto sends no reason
        with pytest.raises(WebSocketClosed, match="never opened: the upgrade was refused: 403"):
            session.send("x")
        assert session.frames == [] and session.closed_by is None


def test_an_endpoint_records_the_handshake_on_the_chain(
    deproxy: Deproxy, endpoint: Callable[..., object]
) -> None:
    server = endpoint()
    session = deproxy.websocket(server.url + "/socket")  # type: ignore[attr-defined]
    assert not session.open
    assert session.error == "the upgrade was refused: 200 OK"
    [handling] = session.chain.handlings
    assert handling.request.path == "/socket"
    assert handling.request.headers["Sec-WebSocket-Version"] == "13"
    assert handling.request.headers[TRACKING_HEADER] == session.chain.request_id


def test_a_101_with_the_wrong_accept_is_a_protocol_error(
    deproxy: Deproxy, raw_server: Callable[..., RawServer]
) -> None:
    server = raw_server(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_for("not the key").encode() + b"\r\n\r\n"
    )
    session = deproxy.websocket(server.url)
    assert not session.open
    assert isinstance(session.chain.error, ProtocolError)
    assert "Sec-WebSocket-Accept" in str(session.chain.error)
    assert session.error is not None and "expected" in session.error


def test_no_server_is_data(deproxy: Deproxy) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    session = deproxy.websocket(f"ws://127.0.0.1:{port}/")
    assert not session.open
    assert session.chain.received_response is None
    assert "refused" in str(session.chain.error)


def test_misuse_raises(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    with pytest.raises(ValueError, match="not a ws://, wss://"):
        deproxy.websocket("ftp://127.0.0.1/")
    with pytest.raises(TypeError, match="list of names"):
        deproxy.websocket("ws://127.0.0.1:1/", subprotocols="chat")
    with deproxy.websocket(ws_server().url) as session:
        with pytest.raises(TypeError, match="str or bytes"):
            session.send(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="send_raw_frame"):
            session.close(1006)
        with pytest.raises(ValueError, match="125 bytes"):
            session.ping(b"x" * 126)


# -- TLS and forward proxies ---------------------------------------------------------------


def test_wss(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    server = ws_server(deproxy.ca.server_context("localhost", "127.0.0.1"))
    with deproxy.websocket(server.url + "/echo") as session:
        assert session.open, session.error
        session.send("over tls")
        assert session.receive() == "over tls"
    assert server.connection().messages == ["over tls"]


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_through_a_forward_proxy_with_connect(
    deproxy: Deproxy,
    ws_server: Callable[..., WsServer],
    tinyproxy: Callable[..., str],
    tls: bool,
) -> None:
    context = deproxy.ca.server_context("localhost", "127.0.0.1") if tls else None
    server = ws_server(context)
    with deproxy.websocket(server.url + "/echo", proxy=tinyproxy()) as session:
        assert session.open, session.error
        session.send("tunnelled")
        assert session.receive() == "tunnelled"
    seen = server.connection()
    assert seen.headers[TRACKING_HEADER.lower()] == session.chain.request_id
    assert "via" not in seen.headers  # a CONNECT tunnel: the proxy saw only bytes


def test_a_refused_connect_is_data(deproxy: Deproxy, tinyproxy: Callable[..., str]) -> None:
    session = deproxy.websocket("ws://127.0.0.1:9/", proxy=tinyproxy(connect_ports=[443]))
    assert not session.open
    assert session.chain.received_response is not None
    assert session.chain.received_response.code == "403"
    assert session.error is not None and "refused the CONNECT tunnel" in session.error


# -- faults a client commits ---------------------------------------------------------------


def test_an_unmasked_frame_is_a_protocol_error_at_the_server(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        session.send_unmasked("naked")
        assert session.wait_closed()
    assert server.connection().close_code == 1002
    assert ("sent", "text", True) in kinds(session.frames)
    assert (session.closed_by, session.close_code) == ("server", 1002)


def test_a_frame_cut_short(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    server = ws_server()
    session = deproxy.websocket(server.url)
    session.send_truncated_frame(b"x" * 1000, keep=100)
    seen = server.connection()
    assert seen.close_code == 1006  # wsproto: the connection ended with no close frame
    assert seen.bytes_after_handshake == 4 + 4 + 100  # header, mask, what was kept
    assert seen.messages == []
    assert (session.closed_by, session.close_code) == ("client", 1006)
    assert [(f.opcode, len(f.payload)) for f in session.frames] == [("binary", 100)]
    session.close()


def test_an_oversized_frame(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        session.send_oversized()  # 2**63: the top bit must be 0
        assert session.wait_closed()
    assert server.connection(0).close_code == 1002
    with deproxy.websocket(server.url + "/limit/16384") as session:
        session.send_oversized(2**40, b"y" * 20000)
        assert session.wait_closed()
        assert (session.closed_by, session.close_code) == ("server", 1009)
    assert server.connection(1).close_code == 1009


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_an_abrupt_close_without_a_close_frame(
    deproxy: Deproxy, ws_server: Callable[..., WsServer], reset: bool
) -> None:
    server = ws_server()
    session = deproxy.websocket(server.url)
    session.send("before")
    assert session.receive() == "before"
    session.abort(reset=reset)
    seen = server.connection()
    assert seen.reset is reset
    if not reset:
        assert seen.close_code == 1006
    assert (session.closed_by, session.close_code) == ("client", 1006)
    assert [f.opcode for f in session.frames] == ["text", "text"]


def test_a_ping_flood(deproxy: Deproxy, ws_server: Callable[..., WsServer]) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        session.ping_flood(200, b"flood")
        session.ping(b"last")  # pongs come in order: once this one is back, so are the rest
    assert server.connection().pings == 201
    pongs = [f for f in session.frames if f.opcode == "pong"]
    assert len(pongs) == 201
    assert {f.payload for f in pongs[:200]} == {b"flood"}


def test_a_raw_control_frame_over_125_bytes(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        data = session.send_raw_frame("ping", b"p" * 126)
        assert data[1] == 0x80 | 126
        assert session.wait_closed()
    assert server.connection().close_code == 1002


def test_a_frame_with_a_reserved_opcode(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    with deproxy.websocket(server.url) as session:
        session.send_raw_frame(3, b"?")
        assert session.wait_closed()
    assert (session.frames[0].opcode, session.frames[0].payload) == ("0x3", b"?")
    assert server.connection().close_code == 1002


# -- many at once --------------------------------------------------------------------------


def test_a_hundred_sessions_a_hundred_messages_each_leave_nothing_behind(
    deproxy: Deproxy, ws_server: Callable[..., WsServer]
) -> None:
    server = ws_server()
    threads_before, fds_before = threading.active_count(), open_fds()
    sessions, elapsed = echo_in_many_sessions(
        deproxy, lambda number: server.url, sessions=100, messages=100, join=60
    )
    assert len(sessions) == 100
    assert all(len(s.frames) == 202 for s in sessions)  # 200 messages and the two closes
    print(f"\n100 sessions x 100 round trips: {10000 / elapsed:.0f} messages/s")
    eventually(lambda: sum(1 for s in server.seen if s.done.is_set()) == 100)
    for thread in server.threads:
        thread.join(10)
    eventually(lambda: threading.active_count() <= threads_before)
    eventually(lambda: open_fds() <= fds_before)
