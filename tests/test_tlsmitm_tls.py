"""A TLS endpoint ends its connections with close_notify (so a client keeps the session and
can resume it), a reset sends none, and the record says whether a session was resumed."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from pytest_deproxy import Deproxy, Endpoint, Response, handlers

from .conftest import eventually

EndpointFactory = Callable[..., Endpoint]
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def blocking_handler(request: object) -> Response:
    """A plain function, not marked non_blocking: its connection gets a thread."""
    return Response(200, body="from a thread")


def client_context(deproxy: Deproxy) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=deproxy.ca.cert_pem.decode())
    return context


def exchange(
    endpoint: Endpoint, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[bytes, ssl.SSLSession | None, bool]:
    """Send REQUEST, read to the end; the answer, the session, and whether it was resumed.
    An end without close_notify raises SSLEOFError here (ragged EOFs are not suppressed)."""
    parts = urlsplit(endpoint.url)
    assert parts.hostname is not None and parts.port is not None
    raw = socket.create_connection((parts.hostname, parts.port), timeout=10)
    with context.wrap_socket(
        raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False, session=session
    ) as sock:
        sock.sendall(REQUEST)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer, sock.session, bool(sock.session_reused)


@pytest.mark.parametrize("handler", [None, blocking_handler], ids=["poll-thread", "own-thread"])
def test_the_endpoint_ends_a_tls_connection_with_close_notify(
    deproxy: Deproxy, endpoint: EndpointFactory, handler: object
) -> None:
    server = endpoint(handler=handler, tls=True)
    answer, _, _ = exchange(server, client_context(deproxy))  # SSLEOFError without it
    assert answer.startswith(b"HTTP/1.1 200 ")
    eventually(lambda: server.connections and server.connections[0].closed_by is not None)
    assert server.connections[0].closed_by == "endpoint"


def test_a_resumed_session_is_on_the_record(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(tls=True)
    context = client_context(deproxy)
    first, session, resumed = exchange(server, context)
    assert first.startswith(b"HTTP/1.1 200 ") and not resumed and session is not None
    second, _, resumed_again = exchange(server, context, session)
    assert second.startswith(b"HTTP/1.1 200 ") and resumed_again
    eventually(lambda: len(server.connections) == 2 and server.connections[1].tls is not None)
    first_record, second_record = server.connections
    assert first_record.tls is not None and first_record.tls.resumed is False
    assert second_record.tls is not None and second_record.tls.resumed is True
    assert second_record.tls.version == "TLSv1.3" and second_record.tls.cipher


def test_a_reset_sends_no_close_notify(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.reset, tls=True)
    with pytest.raises((ConnectionResetError, ssl.SSLEOFError)):
        exchange(server, client_context(deproxy))
