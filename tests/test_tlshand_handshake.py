"""The system calls a polled TLS connection costs the server: the handshake reads the socket
once per flight of the client, the listener hands its TCP_NODELAY to what it accepts, and a
connection closed from the poll thread is not taken out of epoll first (closing does it).
The TLS facts on the record stay exact (tests/test_tls.py, tests/test_tls2_server_tls.py)."""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import pytest

from pytest_deproxy import Deproxy, Endpoint, net
from pytest_deproxy.errors import NetworkError
from pytest_deproxy.net.servertls import ServerTLS
from pytest_deproxy.tls import CertificateAuthority

from .conftest import eventually

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


class CountingSocket:
    """A socket whose reads and writes are counted (the rest is the socket's own)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0
        self.sends = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def send(self, data: Any) -> int:
        self.sends += 1
        return self.sock.send(data)

    def sendall(self, data: Any) -> None:
        self.sends += 1
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


class Pair:
    """A client TLS object over memory buffers, and a polled server stream over a counted
    socket, on the two ends of a local TCP connection."""

    def __init__(self, ca: CertificateAuthority) -> None:
        context = ca.server_context("localhost")
        net.streams._serve_with(context)  # as a server's stream makes it: SNI noted
        listener = net.listen("127.0.0.1", 0)
        self.client_sock = socket.create_connection(listener.getsockname(), timeout=10)
        listener.setblocking(True)
        listener.settimeout(10)
        server_sock, _ = listener.accept()
        listener.close()
        server_sock.settimeout(0)
        self.counted = CountingSocket(server_sock)
        self.server = net.Stream(ServerTLS(self.counted, context), "client", 0)  # type: ignore[arg-type]
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.load_verify_locations(cadata=ca.cert_pem.decode())
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context.wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )

    def client_step(self, then: bytes = b"") -> None:
        """The client's handshake as far as it goes on what it has; its flight sent (with
        ``then``, encrypted, in the same write)."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        if then:
            self.tls.write(then)
        self.client_sock.sendall(self.outgoing.read())

    def client_receive(self) -> None:
        self.incoming.write(self.client_sock.recv(65536))

    def close(self) -> None:
        self.client_sock.close()
        self.server.close()


def wait_readable(sock: Any) -> None:
    poller = net.Poller()
    try:
        poller.watch(sock, "it")
        assert poller.ready(10) == ["it"]
    finally:
        poller.close()


def test_the_handshake_reads_the_socket_once_per_flight_of_the_client(
    ca: CertificateAuthority,
) -> None:
    """After the server's flight, the client's answer cannot be there yet: the poller says
    when it is, and a read then (failing) would be a system call for nothing."""
    pair = Pair(ca)
    try:
        pair.client_step()  # ClientHello
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "read"
        assert (pair.counted.recvs, pair.counted.sends) == (1, 1)  # ClientHello; the flight
        pair.client_receive()
        pair.client_step(then=REQUEST)  # Finished, and the request with it
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "done"
        assert pair.counted.recvs == 2
        assert pair.server.read_ready() == REQUEST
        assert pair.counted.recvs == 2  # the request came with Finished, decrypted already
    finally:
        pair.close()


def test_a_client_hello_in_pieces_is_waited_for_without_an_answer(
    ca: CertificateAuthority,
) -> None:
    pair = Pair(ca)
    try:
        try:
            pair.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = pair.outgoing.read()
        pair.client_sock.sendall(hello[:10])
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "read"
        assert pair.counted.sends == 0
        pair.client_sock.sendall(hello[10:])
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "read"
        assert pair.counted.sends == 1  # the server's flight, once the hello was whole
        pair.client_receive()
        pair.client_step()
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "done"
        facts = pair.server.tls_facts()
        assert facts is not None and facts["version"] == "TLSv1.3"
        assert facts["sni"] == "localhost" and facts["resumed"] is False
    finally:
        pair.close()


def test_a_client_gone_in_the_handshake_fails_it(ca: CertificateAuthority) -> None:
    pair = Pair(ca)
    try:
        pair.client_step()
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "read"
        pair.client_sock.shutdown(socket.SHUT_WR)
        wait_readable(pair.counted.sock)
        with pytest.raises(NetworkError, match="TLS handshake with client"):
            pair.server.handshake_ready()
    finally:
        pair.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux passes it on")
def test_the_listener_hands_tcp_nodelay_to_the_sockets_it_accepts() -> None:
    listener = net.listen("127.0.0.1", 0)
    client = socket.create_connection(listener.getsockname(), timeout=10)
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        wait_readable(listener)
        [(sock, peer)] = net.accept_all(listener)
        stream = net.accepted_stream(sock, peer, 0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        stream.close()
    finally:
        client.close()
        listener.close()


class CountingEpoll:
    def __init__(self, epoll: Any) -> None:
        self.epoll = epoll
        self.unregistered = 0

    def unregister(self, descriptor: int) -> None:
        self.unregistered += 1
        self.epoll.unregister(descriptor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.epoll, name)


@pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="epoll only")
def test_a_stream_forgotten_as_it_closes_is_left_to_its_close_to_take_out_of_epoll() -> None:
    poller = net.Poller()
    counting = CountingEpoll(poller._epoll)
    poller._epoll = counting  # type: ignore[assignment]
    left, right = socket.socketpair()
    try:
        stream = net.Stream(left, "peer", 0)
        poller.watch(stream, "first")
        right.send(b"x")
        assert poller.ready(10) == ["first"]
        poller.forget(stream, closing=True)
        assert counting.unregistered == 0
        assert poller.ready(0) == []  # forgotten at once, though still readable
        stream.close()
        again, other = socket.socketpair()  # may take the closed descriptor's number
        try:
            second = net.Stream(again, "peer", 0)
            poller.watch(second, "second")
            other.send(b"y")
            assert poller.ready(10) == ["second"]
            poller.forget(second)  # not closing: taken out of epoll now
            assert counting.unregistered == 1
        finally:
            again.close()
            other.close()
    finally:
        right.close()
        poller.close()


class CountingListener(socket.socket):
    """A listener that counts how often its ``family`` is read (an enum made each time)."""

    family_reads = 0

    @property
    def family(self) -> socket.AddressFamily:
        self.family_reads += 1
        return super().family


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_burst_is_accepted_without_making_enums_for_each_connection(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = CountingListener(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    listener.listen(16)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname()[:2], timeout=10) for _ in range(3)]
    try:
        accepted: list[tuple[socket.socket, str]] = []
        for _ in range(100):  # the three are in the queue once connected: at most a wake-up
            wait_readable(listener)
            accepted += net.accept_all(listener)
            if len(accepted) == 3:
                break
        assert len(accepted) == 3
        assert listener.family_reads == 0
        for sock, peer in accepted:
            assert sock.family == family and sock.type == socket.SOCK_STREAM
            assert sock.getpeername()[1] == int(peer.rsplit(":", 1)[1])
            sock.close()
    finally:
        for client in clients:
            client.close()
        listener.close()


def test_the_last_answer_takes_close_notify_with_it_in_one_write(
    ca: CertificateAuthority,
) -> None:
    pair = Pair(ca)
    try:
        pair.client_step()
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "read"
        pair.client_receive()
        pair.client_step(then=REQUEST)
        wait_readable(pair.counted.sock)
        assert pair.server.handshake_ready() == "done"
        assert pair.server.read_ready() == REQUEST
        sends = pair.counted.sends  # the flight (the ticket waits for the answer)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        assert pair.server.write_ready(answer, last=True) == len(answer)
        pair.server.close()
        assert pair.counted.sends == sends + 1  # the answer and close_notify: one write
        received = b""
        while chunk := pair.client_sock.recv(65536):
            received += chunk
        pair.incoming.write(received)
        assert pair.tls.read(65536) == answer
        # b"" (not SSLWantReadError: no end of file was given to the client's TLS): the
        # close_notify after the answer
        assert pair.tls.read(65536) == b""
    finally:
        pair.close()


def test_a_client_that_says_hello_after_it_was_accepted_is_served(
    deproxy: Deproxy, endpoint: Callable[..., Endpoint]
) -> None:
    """The handshake begins as the connection is accepted; a hello not there yet is waited
    for through the poller."""
    server = endpoint(tls=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=deproxy.ca.cert_pem.decode())
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    eventually(lambda: server.connections)  # accepted, and nothing sent yet
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        cipher = sock.cipher()
    assert received.startswith(b"HTTP/1.1 200 ")
    eventually(lambda: server.connections[0].closed_by is not None)
    record = server.connections[0]
    assert record.tls is not None
    assert (record.tls.version, record.tls.sni, record.tls.alpn, record.tls.resumed) == (
        "TLSv1.3",
        "localhost",
        None,
        False,
    )
    assert cipher is not None and record.tls.cipher == cipher[0]
    assert record.closed_by == "endpoint"
