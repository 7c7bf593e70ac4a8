"""A TLS endpoint's server side over memory buffers (net/servertls.py): what it sends, and
when, seen from a client that reads the TCP bytes itself; answers too big for the socket,
pipelined requests and a client gone, with the record byte-exact all the same."""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Endpoint, Request, Response, handlers

from .conftest import eventually

EndpointFactory = Callable[..., Endpoint]
REQUEST = b"GET /%d HTTP/1.1\r\nHost: localhost\r\n\r\n"


class RawTLSClient:
    """A TLS client over memory buffers: every byte it sends or receives on the TCP
    connection is its own to time and to count."""

    def __init__(self, deproxy: Deproxy, endpoint: Endpoint, receive_buffer: int = 0) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=deproxy.ca.cert_pem.decode())
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:  # before connecting: the window is agreed then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", endpoint.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handshake(self, *, then_send: bytes = b"") -> None:
        """Run the handshake; its last flight goes out with ``then_send`` (encrypted), in
        one write."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.receive()
        if then_send:
            self.tls.write(then_send)
        self.sock.sendall(self.outgoing.read())

    def receive(self) -> bytes:
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return data

    def plaintext(self) -> bytes:
        """What the received bytes decrypt to (tickets are taken in silently)."""
        out = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return out
            if not chunk:
                return out
            out += chunk

    def readable_within(self, seconds: float) -> bool:
        return bool(select.select([self.sock], [], [], seconds)[0])

    def close(self) -> None:
        self.sock.close()


def test_a_request_sent_with_the_end_of_the_handshake_gets_the_ticket_in_its_answers_write(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    client = RawTLSClient(deproxy, server)
    try:
        client.handshake(then_send=REQUEST % 1)
        first = client.receive()  # one write: the ticket and the whole answer
        answer = client.plaintext()
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")
        assert len(first) > len(answer)  # more than the answer: the ticket came with it
        assert client.tls.session is not None and client.tls.session.has_ticket
    finally:
        client.close()
    eventually(lambda: server.connections)
    record = server.connections[0]
    assert record.tls is not None and record.tls.version == "TLSv1.3"
    assert record.received == REQUEST % 1


def test_after_a_handshake_that_brought_no_request_the_ticket_goes_at_once(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """A client with Nagle's algorithm on holds its request until its last handshake flight
    is acknowledged: the ticket acknowledges it (else the kernel would, ~40 ms later)."""
    server = endpoint(tls=True)
    client = RawTLSClient(deproxy, server)
    try:
        client.handshake()
        assert client.receive()  # the ticket, unasked (the socket's timeout is 10 s)
        assert client.plaintext() == b"" and client.tls.session is not None
        assert client.tls.session.has_ticket
        client.tls.write(REQUEST % 1)
        client.sock.sendall(client.outgoing.read())
        client.receive()
        assert client.plaintext().startswith(b"HTTP/1.1 200 ")
    finally:
        client.close()


def test_requests_sent_with_the_last_handshake_flight_are_all_answered(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    client = RawTLSClient(deproxy, server)
    requests = b"".join(REQUEST % n for n in range(3))
    try:
        client.handshake(then_send=requests)
        answers = b""
        while answers.count(b"HTTP/1.1 200 ") < 3:
            assert client.receive(), f"closed after {answers!r}"
            answers += client.plaintext()
    finally:
        client.close()
    eventually(lambda: server.connections and server.connections[0].closed_by is not None)
    record = server.connections[0]
    assert record.received == requests
    assert record.sent == answers
    assert [h.request.path for h in record.handlings] == ["/0", "/1", "/2"]


def big_answer(request: Request) -> Response:
    return Response(200, body=BIG)


BIG = bytes(range(256)) * 4096 * 6  # 6 MiB: more than a loopback socket takes unread


@pytest.mark.parametrize(
    "handler", [handlers.non_blocking(big_answer), big_answer], ids=["poll-thread", "own-thread"]
)
def test_an_answer_bigger_than_the_socket_takes_arrives_whole_and_recorded(
    deproxy: Deproxy, endpoint: EndpointFactory, handler: Callable[[Request], Response]
) -> None:
    """On the poll thread the socket takes part of a TLS record; the rest is held and goes
    first when the connection's thread writes what the poll thread could not."""
    server = endpoint(handler=handler, tls=True)
    client = RawTLSClient(deproxy, server, receive_buffer=32768)
    try:
        client.handshake(then_send=REQUEST % 1)
        time.sleep(0.2)  # not reading: the server fills the socket
        received = b""
        while len(received) < len(BIG) or not received.endswith(BIG):
            assert client.receive(), f"closed after {len(received)} bytes"
            received += client.plaintext()
    finally:
        client.close()
    head, _, got = received.partition(b"\r\n\r\n")
    assert got == BIG and b"content-length: %d" % len(BIG) in head.lower()
    record = server.connections[0]  # its transcript keeps the first 4 MiB, and counts the rest
    eventually(lambda: len(record.sent) + record.outgoing.dropped == len(received))
    assert record.sent == received[: len(record.sent)] and record.outgoing.dropped > 0


def test_a_client_gone_before_its_handshake_ends_is_an_error_on_the_record(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    client = RawTLSClient(deproxy, server)
    try:
        client.tls.do_handshake()
    except ssl.SSLWantReadError:
        client.sock.sendall(client.outgoing.read())  # the ClientHello, then nothing
    client.receive()  # the server's flight
    client.close()
    eventually(lambda: server.connections and server.connections[0].closed_by is not None)
    record = server.connections[0]
    assert record.tls is None and record.handlings == []


def resume_once(deproxy: Deproxy, server: Endpoint) -> list[bool]:
    """Two connections, the second offering the session of the first; ``resumed`` of each."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=deproxy.ca.cert_pem.decode())
    session = None
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):  # to the end: the session (its ticket) is read by then
                pass
            session = sock.session
    eventually(lambda: len(server.connections) == 2)
    return [record.tls.resumed if record.tls else False for record in server.connections]


def test_a_session_is_resumed_from_the_servers_own_cache(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    assert resume_once(deproxy, server) == [False, True]
    context = deproxy.ca.server_context("localhost", "127.0.0.1")  # the endpoint's, cached
    stats = context.session_stats()
    assert stats["hits"] == 1 and stats["number"] >= 1  # a ticket was never decrypted


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_resumes_its_session_on_its_next_connection(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    server = endpoint(tls=True)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(deproxy.ca.cert_pem)
    url = f"https://127.0.0.1:{server.port}/"
    done = subprocess.run(
        ["curl", "-s", "--cacert", str(ca_file), "-H", "Connection: close"]
        + [arg for _ in range(3) for arg in (url, "-o", os.devnull)],
        capture_output=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if "CA_BUNDLE" not in k and "SSL_CERT" not in k},
    )
    assert done.returncode == 0, done.stderr
    eventually(lambda: len(server.connections) == 3)
    assert [record.tls.resumed for record in server.connections if record.tls] == [
        False,
        True,
        True,
    ]
