"""An HTTP/2 endpoint answers ``Expect: 100-continue`` as an HTTP/1.1 endpoint does (RFC 9110
10.1.1): with ``100`` as soon as the request's HEADERS arrive, so that a client that waits for
it before sending its body is not left waiting, and the 100 is on the handling's record. A
handler that takes a context runs as the HEADERS arrive and may refuse the body
(``context.send_continue = False``): no 100, its answer, then ``RST_STREAM(NO_ERROR)`` so
that the client stops (RFC 9113 8.1); a handler that reads the body gets the 100 sent first."""

from __future__ import annotations

import socket
import threading

import h2.config
import h2.connection
import h2.events

from pytest_deproxy import Deproxy, HandlerContext, Request, Response, handlers

from .conftest import eventually


def exchange(
    port: int,
    headers: list[tuple[str, str]],
    body: bytes | None,
    *,
    wait: bool = True,
    until: type = h2.events.StreamEnded,
) -> list[object]:
    """Send one request, its body (if any) after the 100 when ``wait``, else at once; the
    h2 events received, in order, until one of type ``until`` (the stream ended)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    events: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(client.data_to_send())
        client.send_headers(1, headers, end_stream=body is None)
        if body is not None and not wait:
            client.send_data(1, body, end_stream=True)
        sock.sendall(client.data_to_send())
        while not any(isinstance(event, until) for event in events):
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


def refuses(request: Request, context: HandlerContext) -> Response:
    context.send_continue = False
    return Response(417, body="no uploads here")


def test_a_handler_refuses_the_body_it_was_only_announced(deproxy: Deproxy) -> None:
    """The client waits for a 100 that never comes: it gets the 417, whole, then the reset
    that tells it not to send the body; the record has the head alone, and the connection
    serves the next stream."""
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=refuses)
    asked = [*REQUEST, ("expect", "100-continue"), ("content-length", "5")]

    events = exchange(endpoint.port, asked, b"hello", until=h2.events.StreamReset)

    assert statuses(events) == ["417"]
    ended = [e for e in events if isinstance(e, h2.events.StreamEnded)]
    (reset,) = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert len(ended) == 1 and events.index(ended[0]) < events.index(reset)
    assert reset.error_code == 0  # NO_ERROR: the answer stands, the body is not wanted
    (handling,) = endpoint.handlings
    assert handling.response is not None and handling.response.code == "417"
    assert handling.interim_responses == []
    assert handling.request.body == "" and handling.request.headers["content-length"] == "5"
    (record,) = endpoint.connections
    sent = [(e.type, e.stream_id, e.error) for e in record.events if e.direction == "sent"]
    assert ("RST_STREAM", 1, "NO_ERROR") in sent


def test_a_handler_that_reads_the_body_gets_the_100_sent_first(deproxy: Deproxy) -> None:
    seen: list[str] = []

    def reads(request: Request, context: HandlerContext) -> Response:
        seen.append("ran")  # before the body: the client has sent none yet
        return Response(200, body=request.body)

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=reads)
    asked = [*REQUEST, ("expect", "100-continue"), ("content-length", "5")]

    events = exchange(endpoint.port, asked, b"hello")

    assert statuses(events) == ["100", "200"]
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"hello"
    (handling,) = endpoint.handlings
    assert [r.code for r in handling.interim_responses] == ["100"]
    assert handling.request.body == "hello" and seen == ["ran"]


def test_a_stream_reset_while_its_handler_waits_for_the_body(deproxy: Deproxy) -> None:
    """The client takes the 100, then resets the stream instead of sending the body: the
    handler waiting for it goes on, with the request as far as it came, and nothing is
    answered."""
    reading = threading.Event()

    def reads(request: Request, context: HandlerContext) -> Response:
        reading.set()
        return Response(200, body=request.body)

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=reads)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    asked = [*REQUEST, ("expect", "100-continue"), ("content-length", "5")]
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
        client.send_headers(1, asked)
        client.send_data(1, b"he")  # part of the body, then the 100, then the reset
        sock.sendall(client.data_to_send())
        assert reading.wait(5)
        events: list[object] = []
        while not any(isinstance(e, h2.events.InformationalResponseReceived) for e in events):
            data = sock.recv(65536)
            assert data, "the endpoint closed the connection"
            events += client.receive_data(data)
        client.reset_stream(1, 8)  # CANCEL
        sock.sendall(client.data_to_send())
        eventually(lambda: all(h.done for h in endpoint.handlings))
    (handling,) = endpoint.handlings
    assert handling.response is None
    assert handling.request.body == "he"
    assert "reset stream 1 (CANCEL)" in (handling.action or "")
