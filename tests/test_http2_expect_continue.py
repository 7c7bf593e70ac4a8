"""An HTTP/2 endpoint answers ``Expect: 100-continue`` with ``100`` as soon as the request's
HEADERS arrive, as an HTTP/1.1 endpoint does (RFC 9110 10.1.1): a client that waits for it
before sending its body is not left waiting, and the 100 is on the handling's record."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events

from pytest_deproxy import Deproxy, handlers


def exchange(
    port: int, headers: list[tuple[str, str]], body: bytes | None, *, wait: bool = True
) -> list[object]:
    """Send one request, its body (if any) after the 100 when ``wait``, else at once; the
    h2 events received, in order, until the stream ends."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    events: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(client.data_to_send())
        client.send_headers(1, headers, end_stream=body is None)
        if body is not None and not wait:
            client.send_data(1, body, end_stream=True)
        sock.sendall(client.data_to_send())
        while not any(isinstance(event, h2.events.StreamEnded) for event in events):
            data = sock.recv(65536)  # a missing 100 times out here, after 5 s
            assert data, "the endpoint closed the connection"
            for event in client.receive_data(data):
                events.append(event)
                informational = isinstance(event, h2.events.InformationalResponseReceived)
                if informational and wait and body is not None:
                    client.send_data(1, body, end_stream=True)
            sock.sendall(client.data_to_send())
    return events


def statuses(events: list[object]) -> list[str]:
    found = []
    for event in events:
        if isinstance(event, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived)):
            found.append(dict(event.headers)[b":status"].decode())
    return found


REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/up")]


def test_a_request_asking_for_100_continue_gets_it_then_sends_its_body(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    asked = [*REQUEST, ("expect", "100-continue"), ("content-length", "5")]

    events = exchange(endpoint.port, asked, b"hello")

    assert statuses(events) == ["100", "200"]
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert b"hello" in body
    (handling,) = endpoint.handlings
    assert [r.code for r in handling.interim_responses] == ["100"]
    assert handling.request.body == "hello"  # the body sent after the 100 is on the record


def test_no_100_without_the_expectation_or_without_a_body_to_come(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    plain = exchange(endpoint.port, [*REQUEST, ("content-length", "2")], b"hi", wait=False)
    # A HEADERS that ends the stream announces no body: there is nothing to continue.
    ended = exchange(endpoint.port, [*REQUEST, ("expect", "100-continue")], None)
    assert statuses(plain) == ["200"] and statuses(ended) == ["200"]
    assert [h.interim_responses for h in endpoint.handlings] == [[], []]
