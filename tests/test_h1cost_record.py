"""The record an endpoint's poll thread keeps for each request, made cheaper, is the record it
kept before: a request's headers and a handling's response made when first read are the ones
that crossed the wire, also read after the caps dropped them or after the connection closed;
a connection's handlings are read from its endpoint's (no second copy to trim on every
request) and are exactly those of its requests the endpoint keeps, idle connections
included. And the classes read on every request answer their attributes the interpreter's
fast way (no ``__getattr__``). Through sockets; counts, no timings."""

from __future__ import annotations

import dataclasses
import socket
import threading

import pytest

from pytest_deproxy import Deproxy, Response, handlers
from pytest_deproxy.connections import ConnectionRecord
from pytest_deproxy.models import Headers, Request
from pytest_deproxy.record import Handling, SentLater

from .conftest import bodiless_answers

GET = b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Seq: %d\r\nx-seq: again\r\n\r\n"


@pytest.mark.parametrize("cls", [Request, Handling, ConnectionRecord, Response, Headers])
def test_the_classes_read_on_every_request_have_no_getattr_hook(cls: type) -> None:
    # A class with __getattr__ has every attribute of every instance looked up the slow way:
    # the interpreter does not specialize attribute reads on it.
    assert not hasattr(cls, "__getattr__"), cls


def test_unread_headers_and_a_response_made_later_are_what_crossed_the_wire() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        answers = bodiless_answers(endpoint.port, b"".join(GET % (n, n) for n in range(3)), 3)
        handlings = endpoint.handlings
        assert [h.request.path for h in handlings] == ["/0", "/1", "/2"]
        for number, handling in enumerate(handlings):
            assert handling.raw == GET % (number, number)
            assert handling.request.headers.items() == [
                ("Host", "127.0.0.1"),
                ("X-Seq", str(number)),
                ("x-seq", "again"),
            ]
            assert handling.request.headers.get_all("X-SEQ") == [str(number), "again"]
            response = handling.response
            assert response is not None and handling.response is response  # made once
            assert response.code == "200" and response.headers["Content-Length"] == "0"
        # The bytes of each answer are its response as recorded, head for head.
        heads = answers.split(b"\r\n\r\n")[:3]
        for head, handling in zip(heads, handlings, strict=True):
            lines = head.decode("iso-8859-1").split("\r\n")
            assert lines[0] == "HTTP/1.1 200 OK"
            assert [tuple(line.split(": ", 1)) for line in lines[1:]] == list(
                handling.response.headers.items()  # type: ignore[union-attr]
            )


def test_a_handling_first_read_after_the_caps_dropped_it_and_its_connection_closed() -> None:
    with Deproxy(keep_chains=1) as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple, keep_handlings=2)
        bodiless_answers(endpoint.port, GET % (1, 1), 1)
        held = endpoint.handlings[0]  # held before anything of it was read
        record = endpoint.connections[0]
        for number in range(2, 6):  # each on a new connection: the caps drop the first
            bodiless_answers(endpoint.port, GET % (number, number), 1)
        assert [h.request.path for h in endpoint.handlings] == ["/4", "/5"]
        assert record not in endpoint.connections and record.closed_by is not None
        assert record.handlings == []  # the endpoint keeps none of its requests now
        assert held.request.headers.items() == [
            ("Host", "127.0.0.1"),
            ("X-Seq", "1"),
            ("x-seq", "again"),
        ]
        assert held.response is not None and held.response.code == "200"
        assert held.done and held.responded_at is not None
        assert held.received_at <= held.responded_at
        assert held.raw == GET % (1, 1)
        assert "from 127.0.0.1:" in held.facts.summary  # type: ignore[union-attr]


def test_a_response_made_on_first_read_is_made_once_whichever_threads_ask() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        bodiless_answers(endpoint.port, b"".join(GET % (n, n) for n in range(50)), 50)
        handlings = endpoint.handlings
        seen: list[list[Response | None]] = []
        start = threading.Barrier(4)

        def read() -> None:
            start.wait(5)
            seen.append([h.response for h in handlings])

        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(seen) == 4
        for found in seen:
            assert [id(r) for r in found] == [id(h.response) for h in handlings]


def test_a_handling_made_by_the_constructor_still_takes_and_shows_its_response() -> None:
    response = Response(204)
    handling = Handling("ep", Request("GET", "/"), "conn-1", response=response)  # type: ignore[arg-type]
    assert handling.response is response
    handling.finish(None, "reset")
    assert handling.response is None and handling.action == "reset"
    assert dataclasses.replace(handling, response=response).response is response
    assert "response=None" in repr(handling)


def test_an_idle_connection_holds_only_what_its_endpoint_keeps() -> None:
    # A keep-alive connection that goes quiet while others carry on: its record held its
    # handlings after the endpoint's cap had dropped them, until its next request.
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple, keep_handlings=4)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as quiet:
            bodiless_answers(endpoint.port, GET % (0, 0) + GET % (1, 1), 2, sock=quiet)
            busy = socket.create_connection(("127.0.0.1", endpoint.port), timeout=5)
            with busy:
                for number in range(2, 5):
                    bodiless_answers(endpoint.port, GET % (number, number), 1, sock=busy)
                first, second = endpoint.connections
                assert [h.request.path for h in first.handlings] == ["/1"]
                assert [h.request.path for h in second.handlings] == ["/2", "/3", "/4"]
                kept = endpoint.handlings
                assert first.handlings[0] is kept[0]
                assert [id(h) for h in second.handlings] == [id(h) for h in kept[1:]]
                for number in (5, 6):
                    bodiless_answers(endpoint.port, GET % (number, number), 1, sock=busy)
                assert first.handlings == []
                assert [h.request.path for h in second.handlings] == ["/3", "/4", "/5", "/6"]
                bodiless_answers(endpoint.port, GET % (7, 7), 1, sock=quiet)
                assert [h.request.path for h in first.handlings] == ["/7"]
                assert [h.request.path for h in second.handlings] == ["/4", "/5", "/6"]


def test_a_connection_keeps_every_handling_when_its_endpoint_keeps_all() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple, keep_handlings=None)
        bodiless_answers(endpoint.port, b"".join(GET % (n, n) for n in range(30)), 30)
        bodiless_answers(endpoint.port, GET % (99, 99), 1)
        first, second = endpoint.connections
        assert [h.request.path for h in first.handlings] == [f"/{n}" for n in range(30)]
        assert [h.request.path for h in second.handlings] == ["/99"]
        assert all(h.connection == first.id for h in first.handlings)


def test_a_bare_connection_record_has_no_handlings() -> None:
    assert ConnectionRecord("conn-1", "127.0.0.1:1").handlings == []


# -- attribution on the poll thread's path, at arrival -------------------------------------


def test_untracked_requests_answered_on_the_poll_thread_are_orphans_of_every_call_in_flight() -> (
    None
):
    with Deproxy() as deproxy:
        backend = deproxy.add_endpoint(name="backend", default_handler=handlers.simple)
        both_in_flight = threading.Barrier(2)

        def front_handler(request: Request) -> Response:
            both_in_flight.wait(5)  # both calls are in flight now
            if request.path == "/a":
                bodiless_answers(backend.port, b"".join(GET % (n, n) for n in range(3)), 3)
            both_in_flight.wait(5)  # and stay so until the backend answered
            return Response(200)

        front = deproxy.add_endpoint(name="front", default_handler=front_handler)
        chains = {}

        def call(path: str) -> None:
            chains[path] = deproxy.make_request(front.url + path)

        threads = [threading.Thread(target=call, args=(path,)) for path in ("/a", "/b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        kept = backend.handlings
        assert [h.request.path for h in kept] == ["/0", "/1", "/2"]
        for chain in chains.values():
            assert chain.received_response is not None
            assert [id(h) for h in chain.orphaned_handlings] == [id(h) for h in kept]
            assert [h.response.code for h in chain.orphaned_handlings] == ["200"] * 3  # type: ignore[union-attr]


def test_a_tracking_id_that_arrives_late_still_files_the_request_in_its_chain() -> None:
    # The head comes in two pieces, the tracking id in the second: the request is filed
    # when its head has arrived whole, in the chain whose id it carries, not as an orphan.
    with Deproxy() as deproxy:
        backend = deproxy.add_endpoint(name="backend", default_handler=handlers.simple)

        def front_handler(request: Request) -> Response:
            request_id = request.headers["Deproxy-Request-ID"]
            with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as sock:
                sock.sendall(b"GET /late HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                threading.Event().wait(0.05)  # the first piece is read alone
                rest = f"Deproxy-Request-ID: {request_id}\r\n\r\n".encode()
                bodiless_answers(backend.port, rest, 1, sock=sock)
                # and an untracked one after it, on the same connection: an orphan
                bodiless_answers(backend.port, GET % (1, 1), 1, sock=sock)
            return Response(200)

        front = deproxy.add_endpoint(name="front", default_handler=front_handler)
        chain = deproxy.make_request(front.url + "/call")
        late, untracked = backend.handlings
        assert [h.endpoint for h in chain.handlings] == [front, backend]
        assert chain.handlings[1] is late and late.request.path == "/late"
        assert late.response is not None
        assert late.response.headers["Deproxy-Request-ID"] == chain.request_id
        assert chain.orphaned_handlings == [untracked]
        assert untracked.request.headers.get("Deproxy-Request-ID") is None


def test_a_handling_answered_on_arrival_is_one_arrived_then_finished_as_made() -> None:
    request = Request("GET", "/x")
    made = responding_made()
    answered = Handling.answered("ep", request, "conn-1", 12.5, b"raw", None, made)  # type: ignore[arg-type]
    finished = Handling.arrived("ep", request, "conn-1", 12.5, b"raw", None)  # type: ignore[arg-type]
    finished.finish_as(made)
    assert answered.done and answered.responded_at is not None
    assert answered.received_at <= answered.responded_at
    for field in dataclasses.fields(Handling):
        if field.name not in ("responded_at", "response"):  # (each made anew: compared below)
            assert getattr(answered, field.name) == getattr(finished, field.name), field.name
    assert answered.response is not None and finished.response is not None
    assert answered.response is answered.response  # made once, then kept
    assert answered.response.headers.items() == finished.response.headers.items()
    assert answered.interim_responses == [] and answered.frames == []


def responding_made() -> SentLater:
    """An answer made by ``respond`` that ``respond_again`` gives again."""
    from pytest_deproxy import responding

    canned = Response(200, headers={"X-A": "1"})
    request = Request("GET", "/")
    for _ in range(3):  # made, then made again (also across a second's change)
        responding.respond(canned, request)
        again = responding.respond_again(canned, request)
        if again is not None:
            return again[0]
    raise AssertionError("respond_again never gave the answer made before")


def test_untracked_requests_arriving_while_a_call_is_in_flight_keep_their_headers_unread() -> None:
    # Choosing their handler looks for a tracking id without reading their headers: under
    # outside load during a test's call, each would have had its headers read at arrival.
    with Deproxy() as deproxy:
        backend = deproxy.add_endpoint(name="backend", default_handler=handlers.simple)

        def front_handler(request: Request) -> Response:
            bodiless_answers(backend.port, b"".join(GET % (n, n) for n in range(3)), 3)
            return Response(200)

        front = deproxy.add_endpoint(name="front", default_handler=front_handler)
        chain = deproxy.make_request(front.url + "/call")
        assert len(chain.orphaned_handlings) == 3
        for handling in backend.handlings:
            assert "headers" not in vars(handling.request)  # not read yet
        for number, handling in enumerate(backend.handlings):
            assert handling.request.headers.get_all("x-seq") == [str(number), "again"]
