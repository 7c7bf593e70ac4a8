"""The h2c endpoint's answers made once (h2serve, h2kept): a header block seen before on the
connection makes its request from the parts kept, and the same answer again in the same
second, to a request with no tracking id, is the one made before. The record must be what it
was when every request and answer was made anew: the same Request and Response values, a
Response of its own for every handling, made again when the answer or the Date changes, ids
echoed."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from pytest_deproxy import Deproxy, Request, Response, h2answering, h2kept, handlers, responding
from pytest_deproxy import h2serve as h2serve_module
from pytest_deproxy.h2frames import fields_text, request_of
from pytest_deproxy.models import TRACKING_HEADER

REQUEST = [(":method", "GET"), (":scheme", "http"), (":path", "/x"), ("accept", "*/*")]


def _exchange(
    address: tuple[str, int],
    requests: list[list[tuple[str, str]]],
    *,
    at_once: bool = True,
    between: Callable[[int], None] | None = None,
    window: int | None = None,
) -> dict[int, tuple[list[tuple[str, str]], bytes]]:
    """Send ``requests`` on one h2c connection (all at once, or one after another, calling
    ``between`` with the number of each first) with h2 alone, indexing every field, as
    h2load and browsers do; the answers by stream id. ``window``: each stream's initial
    flow-control window (the endpoint sends no more of a body until it is acknowledged)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    answers: dict[int, tuple[list[tuple[str, str]], bytes]] = {}
    with socket.create_connection(address, timeout=10) as sock:
        conn.initiate_connection()
        if window is not None:
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        sock.sendall(conn.data_to_send())
        groups = [requests] if at_once else [[fields] for fields in requests]
        for number, group in enumerate(groups):
            if between is not None:
                between(number)
            waiting = set()
            for fields in group:
                sid = conn.get_next_available_stream_id()
                authority = [(":authority", f"{address[0]}:{address[1]}")]
                conn.send_headers(sid, [*fields[:3], *authority, *fields[3:]], end_stream=True)
                waiting.add(sid)
                answers[sid] = ([], b"")
            sock.sendall(conn.data_to_send())
            while waiting:
                data = sock.recv(65536)
                assert data, "the endpoint closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        answers[event.stream_id] = (list(event.headers), b"")  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        fields, body = answers[event.stream_id]
                        answers[event.stream_id] = (fields, body + event.data)
                        conn.acknowledge_received_data(len(event.data), event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        waiting.discard(event.stream_id)
                sock.sendall(conn.data_to_send())
    return answers


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
def one_second(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The session's clock, held at one second (moved by the test), and the Date of that
    second: the answers of a test are made in the second it says."""
    clock = [1_000_000.0]
    monkeypatch.setattr(h2serve_module, "_time", lambda: clock[0], raising=False)
    monkeypatch.setattr(responding, "http_date", lambda: f"second {int(clock[0])}")
    return clock


def test_the_same_answer_again_is_made_once(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch, one_second: list[float]
) -> None:
    """Eight streams at once, then four one after another, asking the same: one answer made
    (responding.as_sent once), sent to each; each handling's Response as sent is its own and
    is what the answer made anew would be."""
    made = _counting(monkeypatch, responding, "as_sent")
    endpoint = deproxy.add_endpoint(http2="h2c")
    answers = list(_exchange(endpoint.address, [REQUEST] * 8).values())
    answers += _exchange(endpoint.address, [REQUEST] * 4, at_once=False).values()
    assert made == [1, 1]  # once per connection: the answer is kept by the connection's session
    expected_fields = [
        (":status", "200"),
        ("server", responding.SERVER_NAME),
        ("date", "second 1000000"),
        ("content-length", "0"),
    ]
    assert len(answers) == 12
    assert all(answer == (expected_fields, b"") for answer in answers)
    handlings = endpoint.handlings
    assert len(handlings) == 12
    first = handlings[0].request
    anew = responding.as_sent(Response(200), first)
    anew.http_version = "2"
    for handling in handlings:
        sent = handling.response
        assert sent is not None and handling.done and handling.action is None
        assert handling.responded_at is not None
        assert (sent.code, sent.message, sent.http_version) == ("200", "OK", "2")
        assert sent.headers.items() == anew.headers.items()
        assert (sent.body, sent.raw_body, sent.has_trailers) == ("", b"", False)
    responses = [handling.response for handling in handlings]
    assert len({id(response) for response in responses}) == 12
    assert len({id(response.headers) for response in responses if response}) == 12
    assert handlings[0].response is not None and handlings[1].response is not None
    handlings[0].response.headers.add("x-changed", "1")  # a test may change what it reads
    assert "x-changed" not in handlings[1].response.headers


def test_a_header_block_again_makes_its_request_from_what_was_kept(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same header block on every stream: request_of once per connection, and every
    handling's request, raw head, stream id and connection as request_of would make them."""
    parsed = _counting(monkeypatch, h2kept, "request_of")
    endpoint = deproxy.add_endpoint(http2="h2c")
    _exchange(endpoint.address, [REQUEST] * 6)
    assert parsed == [1]
    handlings = endpoint.handlings
    assert [h.stream_id for h in handlings] == [1, 3, 5, 7, 9, 11]
    assert len({h.connection for h in handlings}) == 1
    authority = f"{endpoint.address[0]}:{endpoint.address[1]}"
    fields = [*REQUEST[:3], (":authority", authority), *REQUEST[3:]]
    expected = request_of(fields)
    for handling in handlings:
        request = handling.request
        assert (request.method, request.path, request.http_version) == ("GET", "/x", "2")
        assert request.headers.items() == expected.headers.items() == fields
        assert (request.body, request.raw_body, request.has_trailers) == ("", b"", False)
        assert handling.raw_head == fields_text(fields)
        assert handling.raw == fields_text(fields)
    requests = [h.request for h in handlings]
    assert len({id(r) for r in requests}) == len({id(r.headers) for r in requests}) == 6
    requests[0].headers.add("x-changed", "1")
    assert "x-changed" not in requests[1].headers


def test_the_answer_is_made_again_when_it_changes(
    deproxy: Deproxy, one_second: list[float]
) -> None:
    """On one connection, one request after another: a canned Response changed between
    requests, then a handler's answers, equal ones and ones that differ in a header, the
    body, the status or its message, and a new second (a new Date). Each answer, on the wire
    and on the record, is what was asked."""
    canned = Response(200, body=b"one")

    def change(number: int) -> None:
        if number == 2:
            canned.headers.add("X-Version", "2")
        elif number == 4:
            canned.body, canned.raw_body = "three", b"three"
        elif number == 6:
            one_second[0] += 1

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=canned)
    answers = _exchange(endpoint.address, [REQUEST] * 8, at_once=False, between=change)
    wire = [answers[sid] for sid in sorted(answers)]
    assert [body for _, body in wire] == [b"one"] * 4 + [b"three"] * 4
    assert [dict(f).get("x-version") for f, _ in wire] == [None] * 2 + ["2"] * 6
    assert [dict(f)["content-length"] for f, _ in wire] == ["3"] * 4 + ["5"] * 4
    dates = [dict(f)["date"] for f, _ in wire]
    assert dates == ["second 1000000"] * 6 + ["second 1000001"] * 2
    recorded = [h.response for h in endpoint.handlings]
    assert all(r is not None for r in recorded)
    assert [(r.raw_body, r.body) for r in recorded if r] == [(b"one", b"one")] * 4 + [
        (b"three", "three")
    ] * 4
    assert [r.headers.get("X-Version") for r in recorded if r] == [None] * 2 + ["2"] * 6
    assert [r.headers["Content-Length"] for r in recorded if r] == ["3"] * 4 + ["5"] * 4
    assert [r.headers["Date"] for r in recorded if r] == dates

    v2 = {"X-Version": "2"}
    plan = [
        Response(200, body=b"a"),
        Response(200, body=b"a"),  # equal, another object: the answer again
        Response(200, headers=v2, body=b"a"),
        Response(200, headers=v2, body=b"b"),
        Response(201, headers=v2, body=b"b"),
        Response(201, "Made", headers=v2, body=b"b"),
        Response(201, "Made", headers=v2, body=b"b"),
    ]
    answers_made = iter(plan)

    @handlers.non_blocking
    def planned(request: Request) -> Response:
        return next(answers_made)

    other = deproxy.add_endpoint(http2="h2c", default_handler=planned)
    answers = _exchange(other.address, [REQUEST] * len(plan), at_once=False)
    wire = [answers[sid] for sid in sorted(answers)]
    assert [(dict(f)[":status"], dict(f).get("x-version"), b) for f, b in wire] == [
        ("200", None, b"a"),
        ("200", None, b"a"),
        ("200", "2", b"a"),
        ("200", "2", b"b"),
        ("201", "2", b"b"),
        ("201", "2", b"b"),
        ("201", "2", b"b"),
    ]
    recorded = [h.response for h in other.handlings]
    assert [(r.code, r.message, r.raw_body, r.headers.get("X-Version")) for r in recorded if r] == [
        ("200", "OK", b"a", None),
        ("200", "OK", b"a", None),
        ("200", "OK", b"a", "2"),
        ("200", "OK", b"b", "2"),
        ("201", "Created", b"b", "2"),
        ("201", "Made", b"b", "2"),
        ("201", "Made", b"b", "2"),
    ]


def test_ids_echoed_and_head_without_body_among_answers_made_once(
    deproxy: Deproxy, one_second: list[float]
) -> None:
    """On one connection: requests with the tracking id and without, GET and HEAD, asking the
    same canned answer. A tracking id is echoed to its own request only; HEAD gets the head
    (its Content-Length) and no body; the record says so of each."""
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=Response(200, body=b"hello"))
    head = [(":method", "HEAD"), *REQUEST[1:]]
    tracked = [[*REQUEST, (TRACKING_HEADER.lower(), f"id-{n}")] for n in range(3)]
    sent = [REQUEST, tracked[0], head, REQUEST, tracked[1], head, tracked[2], REQUEST]
    answers = _exchange(endpoint.address, sent)
    by_stream = [answers[sid] for sid in sorted(answers)]
    ids = [dict(fields).get(TRACKING_HEADER.lower()) for fields, _ in by_stream]
    assert ids == [None, "id-0", None, None, "id-1", None, "id-2", None]
    assert [body for _, body in by_stream] == [b"hello"] * 2 + [b""] + [b"hello"] * 2 + [b""] + [
        b"hello"
    ] * 2
    assert all(dict(fields)["content-length"] == "5" for fields, _ in by_stream)
    handlings = sorted(endpoint.handlings, key=lambda h: h.stream_id or 0)
    recorded_ids = [h.response.headers.get(TRACKING_HEADER) for h in handlings if h.response]
    assert recorded_ids == ids
    assert [h.request.method for h in handlings] == [f[0][1] for f in sent]
    assert [h.request_id for h in handlings] == ids


def test_the_stock_answer_is_sent_without_calling_its_handler(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint's default handler (``handlers.simple``) always answers ``Response(200)``:
    the h2c endpoint sends that canned answer, as the HTTP/1 poll path does, rather than
    make a Response per stream by calling it; the record is the same."""
    made: list[int] = []
    init = Response.__init__

    def counting(self: Response, *args: Any, **kwargs: Any) -> None:
        made.append(1)
        init(self, *args, **kwargs)

    endpoint = deproxy.add_endpoint(http2="h2c")
    monkeypatch.setattr(Response, "__init__", counting)
    answers = _exchange(endpoint.address, [REQUEST] * 6)
    monkeypatch.undo()
    assert made == []
    assert [dict(fields)[":status"] for fields, _ in answers.values()] == ["200"] * 6
    recorded = [h.response for h in endpoint.handlings]
    assert [(r.code, r.message, r.raw_body) for r in recorded if r] == [("200", "OK", b"")] * 6


def _handling_facts(handling: Any) -> tuple[object, ...]:
    """What the record says of a handling, but for its stream id and times."""
    request, response = handling.request, handling.response
    return (
        request.method,
        request.path,
        request.headers.items(),
        request.raw_body,
        handling.raw_head,
        handling.connection,
        handling.facts,
        handling.action,
        handling.done,
        handling.interim_responses,
        (response.code, response.message, response.http_version),
        response.headers.items(),
        response.raw_body,
    )


@pytest.mark.parametrize("body", [b"", b"hello"], ids=["no body", "a body"])
def test_a_stream_answered_again_is_recorded_as_the_first_was(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch, one_second: list[float], body: bytes
) -> None:
    """One connection, six streams with no tracking id asking the same canned answer, one
    after another: the first is answered through the handler's lookup, the others as it
    was, each recorded done in one step. Every handling says what the first says, with its
    own stream id, received before it was answered."""
    looked_up = _counting(monkeypatch, h2answering.H2Answering, "answer_now")
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=Response(200, body=body))
    answers = _exchange(endpoint.address, [REQUEST] * 6, at_once=False)
    assert looked_up == [1]  # the other five were answered again
    assert [answers[sid][1] for sid in sorted(answers)] == [body] * 6
    handlings = endpoint.handlings
    assert [h.stream_id for h in handlings] == [1, 3, 5, 7, 9, 11]
    first = _handling_facts(handlings[0])
    for handling in handlings:
        assert _handling_facts(handling) == first
        assert handling.responded_at is not None
        assert handling.received_at <= handling.responded_at
    assert len({id(h.response) for h in handlings}) == 6


def test_streams_answered_again_while_a_call_is_in_flight_are_its_orphans(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch, one_second: list[float]
) -> None:
    """Streams with no tracking id reach the h2c endpoint while a call is in flight (its
    handler sends them): every one is an orphaned handling of that call, those answered
    again as the first was, as an HTTP/1 request with no tracking id would be."""
    looked_up = _counting(monkeypatch, h2answering.H2Answering, "answer_now")
    h2c = deproxy.add_endpoint(http2="h2c")

    def send_streams(request: Request) -> Response:
        _exchange(h2c.address, [REQUEST] * 4, at_once=False)
        return Response(204)

    caller = deproxy.add_endpoint(default_handler=send_streams)
    chain = deproxy.make_request(caller.url + "/")
    assert chain.received_response is not None and chain.received_response.code == "204"
    assert looked_up == [1]
    assert [h.stream_id for h in chain.orphaned_handlings] == [1, 3, 5, 7]
    assert all(h.endpoint is h2c and h.done for h in chain.orphaned_handlings)
    assert [h.endpoint for h in chain.handlings] == [caller]


def test_an_answer_again_larger_than_the_window_goes_on_as_it_opens(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch, one_second: list[float]
) -> None:
    """A canned body larger than each stream's flow-control window (the client's setting):
    answered again, what the window does not take goes on as the client acknowledges what
    came, and every stream gets all of it."""
    looked_up = _counting(monkeypatch, h2answering.H2Answering, "answer_now")
    body = bytes(range(256)) * 8
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=Response(200, body=body))
    answers = _exchange(endpoint.address, [REQUEST] * 4, at_once=False, window=100)
    assert looked_up == [1]
    assert [answers[sid][1] for sid in sorted(answers)] == [body] * 4
    assert [h.response.raw_body for h in endpoint.handlings if h.response] == [body] * 4
