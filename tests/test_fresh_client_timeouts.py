"""A client connection keeps its timeout in the kernel (SO_RCVTIMEO/SO_SNDTIMEO on a blocking
socket), so that Python does not poll the socket before each connect, send and receive; the
bounds stay what they were: a connect, a read and a whole write each fail with
DeproxyTimeout after the timeout, and a timeout changed on the way is the one that holds."""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_deproxy import Deproxy, net
from pytest_deproxy.errors import DeproxyTimeout
from pytest_deproxy.net.streams import Stream

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="kernel timeouts are used on Linux"
)


def kernel_timeouts(sock: socket.socket) -> tuple[float, float]:
    """(SO_RCVTIMEO, SO_SNDTIMEO) of ``sock`` in seconds (0: none)."""
    size = struct.calcsize("@ll")
    seconds = []
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        whole, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, size))
        seconds.append(whole + micro / 1_000_000)
    return seconds[0], seconds[1]


def raw_socket(stream: Stream) -> socket.socket:
    sock = stream._sock
    assert isinstance(sock, socket.socket)
    return sock


@contextmanager
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A listener that accepts and never answers nor reads: (port, the accepted sockets)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            accepted.append(sock)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        listener.close()


@linux_only
def test_a_connected_stream_is_blocking_with_its_timeout_in_the_kernel() -> None:
    with silent_server() as (port, _):
        stream = net.connect("127.0.0.1", port, 2.5)
        try:
            sock = raw_socket(stream)
            assert sock.gettimeout() is None  # no poll before each call
            received, sent = kernel_timeouts(sock)
            assert received == pytest.approx(2.5, abs=0.01)
            assert sent == pytest.approx(2.5, abs=0.01)
            assert stream.timeout == 2.5
            stream.timeout = 0.75  # a persistent connection's next call, say
            received, sent = kernel_timeouts(sock)
            assert received == pytest.approx(0.75, abs=0.01)
            assert sent == pytest.approx(0.75, abs=0.01)
            assert stream.timeout == 0.75 and sock.gettimeout() is None
            stream.timeout = None
            assert kernel_timeouts(sock) == (0.0, 0.0) and stream.timeout is None
            stream.timeout = 0  # never waits: Python's non-blocking socket
            assert sock.gettimeout() == 0 and kernel_timeouts(sock) == (0.0, 0.0)
            assert stream.read_ready() is None
        finally:
            stream.close()


def test_a_silent_server_times_a_fresh_request_out(deproxy: Deproxy) -> None:
    with silent_server() as (port, _):
        started = time.monotonic()
        chain = deproxy.make_request(f"http://127.0.0.1:{port}/", timeout=0.3)
        waited = time.monotonic() - started
    assert isinstance(chain.error, DeproxyTimeout)
    assert "timed out reading from 127.0.0.1" in str(chain.error)
    assert chain.received_response is None
    assert waited >= 0.25  # it waited for the answer, then gave up (no upper bound asserted)


def test_a_shorter_timeout_on_a_persistent_connection_is_the_one_that_holds(
    deproxy: Deproxy,
) -> None:
    with (
        silent_server() as (port, _),
        deproxy.connect(f"http://127.0.0.1:{port}/", timeout=30) as connection,
    ):
        started = time.monotonic()
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/", connection=connection, timeout=0.3
        )
        waited = time.monotonic() - started
    assert isinstance(chain.error, DeproxyTimeout), chain.error
    assert waited < 25  # not the 30 s the connection was opened with


def test_a_write_the_peer_never_reads_times_out_as_a_whole() -> None:
    body = b"x" * (8 * 1024 * 1024)  # more than both sockets' buffers hold
    with silent_server() as (port, _):
        stream = net.connect("127.0.0.1", port, 0.3)
        try:
            with pytest.raises(DeproxyTimeout, match=r"timed out writing to 127\.0\.0\.1"):
                stream.write(body)
        finally:
            stream.close()


def test_a_write_to_a_peer_reading_slowly_is_bounded_as_a_whole() -> None:
    """Each send that moves some bytes does not start the timeout again (as Python's
    sendall since 3.5): a reader taking a little at a time cannot stretch a write."""
    body = b"x" * (8 * 1024 * 1024)
    with silent_server() as (port, accepted):
        stream = net.connect("127.0.0.1", port, 0.5)
        stop = threading.Event()

        def read_slowly() -> None:
            while not accepted and not stop.is_set():
                time.sleep(0.01)
            while not stop.is_set():
                try:
                    accepted[0].recv(4096)
                except OSError:
                    return
                time.sleep(0.02)

        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        try:
            started = time.monotonic()
            with pytest.raises(DeproxyTimeout):
                stream.write(body)
            waited = time.monotonic() - started
        finally:
            stop.set()
            stream.close()
            reader.join(5)
    assert waited < 5  # 8 MiB at ~200 KiB/s would take ~40 s were each send's bound its own


def test_a_connect_the_server_never_takes_times_out() -> None:
    """A listener whose accept queue is full drops further SYNs: the connect waits, and gives
    up after its timeout with DeproxyTimeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the queue (never accepted)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        with pytest.raises(DeproxyTimeout, match=r"timed out connecting to 127\.0\.0\.1"):
            net.connect("127.0.0.1", port, 0.3).close()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_fresh_requests_over_tls_and_plain_both_answer(deproxy: Deproxy) -> None:
    """TLS takes the socket back to Python's timeout before wrapping it (an SSLSocket keeps
    its timeout itself): both kinds still answer, and a TLS client stream is Python's."""
    plain = deproxy.add_endpoint()
    secure = deproxy.add_endpoint(tls=True)
    for endpoint in (plain, secure, plain):
        chain = deproxy.make_request(endpoint.url, timeout=5)
        assert chain.error is None and chain.received_response is not None
        assert chain.received_response.code == "200"
    stream = net.connect("127.0.0.1", secure.port, 5)
    context = deproxy.ca.client_context()
    tls = stream.start_tls(context, server_side=False, server_hostname="127.0.0.1")
    try:
        sock = tls._sock
        assert isinstance(sock, socket.socket)
        assert sock.gettimeout() == 5 and tls.timeout == 5
    finally:
        tls.close()
