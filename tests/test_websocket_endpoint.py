"""The endpoint's side of WebSocket (handlers.websocket and its faults) and of any other
upgrade (handlers.upgrade), talked to directly by deproxy.websocket or a raw socket.

Through real proxies: tests/test_websocket_proxies.py.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from pytest_deproxy import (
    TRACKING_HEADER,
    Deproxy,
    DeproxyTimeout,
    Endpoint,
    HandlerError,
    Response,
    handlers,
    to_har,
)
from pytest_deproxy.handlers import ServerSession, Upgraded
from pytest_deproxy.ws import WebSocketClosed, accept_for, build_frame, handshake_headers

from .conftest import deproxy_checking_its_own_errors, eventually

EndpointFactory = Callable[..., Endpoint]


def ws_url(server: Endpoint, path: str = "/socket") -> str:
    return server.url.replace("http", "ws", 1) + path


def kinds(frames: list) -> list[tuple[str, str, bool]]:  # type: ignore[type-arg]
    return [(f.direction, f.opcode, f.fin) for f in frames]


def open_raw(
    server: Endpoint, extra: bytes = b"", key: str = "dGhlIHNhbXBsZSBub25jZQ=="
) -> socket.socket:
    """A WebSocket opened by hand on a raw socket, ``extra`` sent in the same write as the
    handshake; returns the socket with the 101's head read."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    head = "".join(f"{n}: {v}\r\n" for n, v in handshake_headers(key))
    sock.sendall(f"GET /raw HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + extra)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101 "), answer
    assert f"Sec-WebSocket-Accept: {accept_for(key)}".encode() in answer
    return sock


# -- accepting, and the record --------------------------------------------------------------


def test_echo_of_text_and_binary_with_the_handshake_and_frames_on_the_handling(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("ws", handlers.websocket())
    with deproxy.websocket(ws_url(server)) as session:
        assert session.open, session.error
        session.send("hello")
        assert session.receive() == "hello"
        session.send(b"\x00\xffbinary")
        assert session.receive() == b"\x00\xffbinary"
    [handling] = session.chain.handlings
    assert handling.response is not None and handling.response.code == "101"
    assert handling.action is None and handling.done
    headers = handling.response.headers
    assert headers["Sec-WebSocket-Accept"] == accept_for(
        session.chain.sent_request.headers["Sec-WebSocket-Key"]
    )
    assert headers[TRACKING_HEADER] == session.chain.request_id
    # Both sides, frame for frame: what the client sent the endpoint received, and back.
    eventually(lambda: len(handling.frames) == 6)
    assert kinds(handling.frames) == [
        ("received", "text", True),
        ("sent", "text", True),
        ("received", "binary", True),
        ("sent", "binary", True),
        ("received", "close", True),
        ("sent", "close", True),
    ]
    client = [(f.opcode, f.payload) for f in session.frames]
    assert [(f.opcode, f.payload) for f in handling.frames] == client
    assert session.chain.frames == session.frames  # the client's frames are on its chain
    eventually(lambda: server.connections[0].closed_by is not None)
    assert server.connections[0].closed_by == "client"  # the client began the close


def test_on_message_answers_and_none_answers_nothing(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    seen: list[tuple[object, str]] = []

    def on_message(message: str | bytes, session: ServerSession) -> str | None:
        seen.append((message, session.request.path))
        return None if message == "quiet" else f"got {message!r}"

    server = endpoint("ws", handlers.websocket(on_message))
    with deproxy.websocket(ws_url(server, "/chat")) as session:
        session.send("quiet")
        session.send("loud")
        assert session.receive() == "got 'loud'"
        with pytest.raises(DeproxyTimeout):
            session.receive(timeout=0.2)
    assert seen == [("quiet", "/chat"), ("loud", "/chat")]


def test_on_open_sends_first_and_a_session_can_send_from_another_thread(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    sessions: list[ServerSession] = []
    ready = threading.Event()

    def on_open(session: ServerSession) -> None:
        session.send("welcome")
        sessions.append(session)
        ready.set()

    server = endpoint("ws", handlers.websocket(on_open=on_open))
    with deproxy.websocket(ws_url(server)) as session:
        assert session.receive() == "welcome"
        assert ready.wait(5)
        sessions[0].send(b"pushed")  # the test's thread, while the endpoint's reads
        assert session.receive() == b"pushed"
        assert sessions[0].open and sessions[0].subprotocol is None


@pytest.mark.parametrize(
    ("offered", "choice", "chosen"),
    [
        (["chat", "superchat"], "superchat", "superchat"),
        (["chat"], "superchat", None),
        (["a", "b"], lambda offered: offered[-1], "b"),
        ([], None, None),
    ],
    ids=["offered", "not-offered", "callable", "none"],
)
def test_subprotocol_selection(
    deproxy: Deproxy,
    endpoint: EndpointFactory,
    offered: list[str],
    choice: object,
    chosen: str | None,
) -> None:
    server = endpoint("ws", handlers.websocket(subprotocol=choice))  # type: ignore[arg-type]
    with deproxy.websocket(ws_url(server), subprotocols=offered) as session:
        assert session.open, session.error
        assert session.subprotocol == chosen
    response = session.chain.handlings[0].response
    assert response is not None and response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_frames_sent_with_the_handshake_are_read_first(endpoint: EndpointFactory) -> None:
    server = endpoint("ws", handlers.websocket())
    early = build_frame("text", b"early bird")  # in the same write as the request
    with open_raw(server, early) as sock:
        assert sock.recv(64) == b"\x81\x0aearly bird"  # the echo: fin, text, 10 bytes, unmasked
    eventually(lambda: len(server.handlings[0].frames) == 2)
    assert kinds(server.handlings[0].frames) == [("received", "text", True), ("sent", "text", True)]


def test_a_one_megabyte_message_both_ways_over_tls(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("wss", handlers.websocket(), tls=True)
    payload = os.urandom(1024 * 1024)
    with deproxy.websocket(ws_url(server)) as session:
        assert session.open, session.error
        session.send(payload)
        assert session.receive() == payload
    assert server.connections[0].tls is not None
    assert len(server.handlings[0].frames[0].payload) == len(payload)


# -- faults an endpoint commits -------------------------------------------------------------


def test_websocket_close_sends_its_code_and_reason(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("ws", handlers.websocket_close(4001, "go away"))
    session = deproxy.websocket(ws_url(server))
    assert session.wait_closed(timeout=5)
    assert (session.closed_by, session.close_code, session.close_reason) == (
        "server",
        4001,
        "go away",
    )
    with pytest.raises(WebSocketClosed, match="4001"):
        session.send("too late")
    session.close()
    [handling] = session.chain.handlings
    assert handling.action == "accepted the WebSocket, then closed it with 4001"
    eventually(lambda: server.connections[0].closed_by is not None)
    assert server.connections[0].closed_by == "endpoint"
    assert kinds(handling.frames) == [("sent", "close", True), ("received", "close", True)]


def test_websocket_close_refuses_a_code_that_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="send_raw_frame"):
        handlers.websocket_close(1006)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_websocket_drop_mid_message(
    deproxy: Deproxy, endpoint: EndpointFactory, reset: bool
) -> None:
    server = endpoint("ws", handlers.websocket_drop(after=1, mid_message=True, reset=reset))
    session = deproxy.websocket(ws_url(server))
    session.send("first")
    assert session.receive() == "first"
    session.send("second message")
    assert session.wait_closed(timeout=5)
    assert (session.closed_by, session.close_code) == ("server", 1006)
    with pytest.raises(WebSocketClosed):
        session.receive(timeout=1)  # half a frame is no message
    session.close()
    frames = server.handlings[0].frames
    assert frames[-1].opcode == "text" and frames[-1].payload == b"second "  # half of it
    eventually(lambda: server.connections[0].closed_by is not None)
    if reset:
        assert "reset" in str(session.close_reason)


def test_websocket_drop_at_once(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("ws", handlers.websocket_drop())
    session = deproxy.websocket(ws_url(server))
    session.send("bye?")
    assert session.wait_closed(timeout=5)
    assert (session.closed_by, session.close_code) == ("server", 1006)
    session.close()
    assert kinds(server.handlings[0].frames) == [("received", "text", True)]


def test_no_pong_when_pings_are_not_answered(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("ws", handlers.websocket(answer_pings=False))
    with deproxy.websocket(ws_url(server)) as session:
        with pytest.raises(DeproxyTimeout, match="no pong"):
            session.ping(b"anyone", timeout=0.3)
        session.send("still here")
        assert session.receive() == "still here"
    assert [f.opcode for f in server.handlings[0].frames][:3] == ["ping", "text", "text"]


def test_pings_are_answered(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("ws", handlers.websocket())
    with deproxy.websocket(ws_url(server)) as session:
        assert session.ping(b"1") >= 0
    assert [(f.direction, f.opcode, f.payload) for f in server.handlings[0].frames][:2] == [
        ("received", "ping", b"1"),
        ("sent", "pong", b"1"),
    ]


def test_a_fragmented_message(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("ws", handlers.websocket_fragments(3))
    with deproxy.websocket(ws_url(server)) as session:
        session.send("fragmented")
        assert session.receive() == "fragmented"
    received = [f for f in session.frames if f.direction == "received"][:3]
    assert [(f.opcode, f.payload, f.fin) for f in received] == [
        ("text", b"frag", False),
        ("continuation", b"ment", False),
        ("continuation", b"ed", True),
    ]


def test_a_refused_upgrade_is_a_plain_answer(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("ws", Response(403, body="no sockets here"))
    session = deproxy.websocket(ws_url(server))
    assert not session.open
    assert session.error == "the upgrade was refused: 403 Forbidden"
    assert server.handlings[0].response is not None
    assert server.handlings[0].response.code == "403"
    assert server.handlings[0].frames == []


def test_a_request_that_is_no_websocket_handshake_is_answered_400_saying_why(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("ws", handlers.websocket())
    chain = deproxy.make_request(server.url + "/socket")
    assert chain.received_response is not None
    assert chain.received_response.code == "400"
    assert "Upgrade is None" in str(chain.received_response.body)
    action = chain.handlings[0].action
    assert action is not None and action.startswith("refused the upgrade: not a WebSocket")
    assert "proxy_set_header Upgrade" in action
    assert "refused the upgrade" in chain.diagram()
    # The connection is still good for another request: a refusal is an ordinary answer.
    old = deproxy.make_request(
        server.url,
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"},
    )
    assert old.received_response is not None
    assert old.received_response.code == "426"
    assert old.received_response.headers["Sec-WebSocket-Version"] == "13"


def test_an_exception_in_on_message_closes_with_1011_and_fails_the_test() -> None:
    def broken(message: str | bytes, session: ServerSession) -> str:
        raise RuntimeError("handler bug")

    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(default_handler=handlers.websocket(broken))
        session = deproxy.websocket(ws_url(server))
        session.send("boom")
        assert session.wait_closed(timeout=5)
        assert (session.close_code, session.close_reason) == (
            1011,
            "the endpoint's handler raised RuntimeError",
        )
        session.close()
        [error] = deproxy.errors
        assert isinstance(error, HandlerError) and "handler bug" in str(error)


def test_a_reply_of_the_wrong_type_is_reported() -> None:
    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(
            default_handler=handlers.websocket(lambda message, session: 42)  # type: ignore[arg-type,return-value]
        )
        session = deproxy.websocket(ws_url(server))
        session.send("x")
        assert session.wait_closed(timeout=5)
        session.close()
        assert session.close_code == 1011
        assert "on_message returned int" in str(deproxy.errors[0])


def test_misuse_raises() -> None:
    with pytest.raises(TypeError, match="on_message is a function"):
        handlers.websocket("echo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subprotocol is a name"):
        handlers.websocket(subprotocol=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 or more pieces"):
        handlers.websocket_fragments(1)
    with pytest.raises(ValueError, match="after is a number"):
        handlers.websocket_drop(after=-1)


# -- shutdown, and many at once -------------------------------------------------------------


def test_shutdown_ends_an_open_websocket(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(default_handler=handlers.websocket())
    session = deproxy.websocket(ws_url(server))
    session.send("hi")
    assert session.receive() == "hi"
    started = time.monotonic()
    server.shutdown()
    took = time.monotonic() - started
    assert session.wait_closed(timeout=5)
    assert (session.closed_by, session.close_code) == ("server", 1006)
    session.close()
    assert server.connections[0].closed_by == "shutdown"
    assert not [t for t in threading.enumerate() if t.name.startswith(f"deproxy-{server.name}-")]
    print(f"\nshutdown with an open WebSocket: {took * 1000:.0f} ms")


def test_shutdown_ends_an_open_websocket_over_tls(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(default_handler=handlers.websocket(), tls=True)
    session = deproxy.websocket(ws_url(server))
    assert session.open, session.error
    server.shutdown()
    assert session.wait_closed(timeout=5)
    session.close()
    assert server.connections[0].closed_by == "shutdown"


def test_tls_reads_and_writes_never_overlap(
    deproxy: Deproxy, endpoint: EndpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL does not promise that one connection may be read and written at once: the
    client's reader thread and the test's thread take turns in TLS calls (wss)."""
    inside: dict[int, dict[int, int]] = {}  # per socket, the threads in a TLS call now
    most = [0]
    lock = threading.Lock()

    def counted(original: Callable[..., object]) -> Callable[..., object]:
        def call(self: ssl.SSLSocket, *args: object, **kwargs: object) -> object:
            me = threading.get_ident()  # sendall calls send: one thread, one call
            with lock:
                threads = inside.setdefault(id(self), {})
                threads[me] = threads.get(me, 0) + 1
                most[0] = max(most[0], len(threads))
            try:
                return original(self, *args, **kwargs)
            finally:
                with lock:
                    threads[me] -= 1
                    if not threads[me]:
                        del threads[me]

        return call

    for name in ("recv", "send", "sendall"):
        monkeypatch.setattr(ssl.SSLSocket, name, counted(getattr(ssl.SSLSocket, name)))
    pushed = threading.Event()

    def on_open(session: ServerSession) -> None:
        def push() -> None:  # the server talks while the client talks: both directions busy
            for number in range(200):
                session.send(f"push {number}" * 50)
            pushed.set()

        threading.Thread(target=push, name="test-push").start()

    server = endpoint("wss", handlers.websocket(lambda m, s: None, on_open=on_open), tls=True)
    with deproxy.websocket(ws_url(server)) as session:
        assert session.open, session.error
        for number in range(200):
            session.send(f"message {number}" * 50)
        got = [session.receive() for _ in range(200)]
        assert pushed.wait(10)
    assert got == [f"push {n}" * 50 for n in range(200)]
    assert most[0] == 1  # the client's and the endpoint's sockets: one TLS call at a time each


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_hundred_sessions_at_an_endpoint_leave_nothing_behind(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(default_handler=handlers.websocket())
    threads_before, fds_before = threading.active_count(), _fds()
    failures: list[BaseException] = []

    def talk(number: int) -> None:
        try:
            with deproxy.websocket(ws_url(server)) as session:
                for i in range(50):
                    session.send(f"{number}:{i}")
                    assert session.receive() == f"{number}:{i}"
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    clients = [threading.Thread(target=talk, args=(n,), name=f"client-{n}") for n in range(100)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(60)
    assert not failures, failures[:3]
    assert all(len(h.frames) == 102 for h in server.handlings)
    eventually(lambda: threading.active_count() <= threads_before)
    eventually(lambda: _fds() <= fds_before)


# -- other upgrades, and h2c ------------------------------------------------------------------


def test_upgrade_takes_the_raw_stream_and_echoes_bytes(endpoint: EndpointFactory) -> None:
    server = endpoint("tunnel", handlers.upgrade(protocol="echo/1"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo/1, other\r\n\r\n"
            b"early"
        )
        answer = b""
        while not answer.endswith(b"early"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Upgrade: echo/1\r\n" in answer
        sock.sendall(b"\x00not http at all\xff")
        assert sock.recv(4096) == b"\x00not http at all\xff"
    eventually(lambda: server.connections[0].closed_by is not None)
    assert server.connections[0].closed_by == "client"
    assert server.connections[0].received.endswith(b"early\x00not http at all\xff")


def test_upgrade_hands_the_connection_to_run(endpoint: EndpointFactory) -> None:
    seen: list[tuple[bytes, str]] = []

    def run(upgraded: Upgraded) -> None:
        seen.append((upgraded.early, upgraded.handling.request.path))
        upgraded.stream.write(b"hello from the other protocol")

    server = endpoint("tunnel", handlers.upgrade(run))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /mine HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: mine\r\n\r\n"
        )
        answer = b""
        while data := sock.recv(4096):
            answer += data
    assert answer.endswith(b"\r\n\r\nhello from the other protocol")
    assert seen == [(b"", "/mine")]
    assert server.connections[0].closed_by == "endpoint"


def test_upgrade_without_an_upgrade_header_is_refused(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("tunnel", handlers.upgrade())
    chain = deproxy.make_request(server.url)
    assert chain.received_response is not None and chain.received_response.code == "400"
    assert chain.handlings[0].action == (
        "refused the upgrade: no Upgrade header: nothing to switch to; a proxy forwards Upgrade "
        "and Connection only when told to (nginx: proxy_http_version 1.1 and proxy_set_header "
        'Upgrade $http_upgrade, Connection "upgrade")'
    )


def test_an_h2c_upgrade_request_is_recorded_as_received(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("plain")
    fields = {
        "Connection": "Upgrade, HTTP2-Settings",
        "Upgrade": "h2c",
        "HTTP2-Settings": "AAMAAABkAAQCAAAA",
    }
    chain = deproxy.make_request(server.url, headers=fields)
    assert chain.received_response is not None and chain.received_response.code == "200"
    request = chain.handlings[0].request
    for name, value in fields.items():
        assert request.headers[name] == value
    assert b"Upgrade: h2c\r\n" in chain.handlings[0].raw


# -- the record, shown -----------------------------------------------------------------------


def test_the_diagram_shows_the_frames_collapsed_past_a_few(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("ws", handlers.websocket())
    with deproxy.websocket(ws_url(server)) as session:
        for number in range(10):
            session.send(f"m{number}")
            session.receive()
    eventually(lambda: len(server.handlings[0].frames) == 22)
    lines = session.chain.diagram().splitlines()
    assert "  ws            ~~> text 2 B 'm0'" in lines
    assert "  ws            <~~ text 2 B 'm0'" in lines
    assert "  ws                ... 14 frames more (7 sent, 7 received) ..." in lines
    assert "  ws            ~~> close 1000" in lines
    assert "client          ~~> text 2 B 'm0'" in lines
    assert "client          <~~ close 1000" in lines
    assert not any("'m5'" in line for line in lines)


def test_har_has_websocket_messages_as_browsers_write_them(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("ws", handlers.websocket())
    with deproxy.websocket(ws_url(server)) as session:
        session.send(json.dumps({"user": "ann", "password": "hunter2"}))
        session.receive()
        session.send(b"\x01\x02")
        session.receive()
    eventually(lambda: len(server.handlings[0].frames) == 6)
    client, at_endpoint = to_har(session.chain)["log"]["entries"]
    for entry in (client, at_endpoint):
        messages = entry["_webSocketMessages"]
        assert [(m["type"], m["opcode"]) for m in messages] == [
            ("send", 1),
            ("receive", 1),
            ("send", 2),
            ("receive", 2),
            ("send", 8),
            ("receive", 8),
        ]
        assert json.loads(messages[0]["data"]) == {"user": "ann", "password": "<redacted>"}
        assert messages[2]["data"] == "AQI="  # binary: base64
        assert all(isinstance(m["time"], float) for m in messages)
    assert client["response"]["status"] == 101
