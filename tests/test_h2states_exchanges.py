"""The common HTTP/2 exchange kept out of h2's stream state machines (h2conn's exchanges): a
request whole in one header block, answered whole. Whatever comes next, h2 must carry on as
if it had held the stream all along: the same events, errors and bytes out as h2 alone, and
the same state inside (streams, their state machines and windows, the streams let go and in
what order, the connection's windows and HPACK tables), step by step."""

from __future__ import annotations

import copy
import copyreg
import re
import threading
from collections.abc import Callable
from typing import Any, cast

import h2.config
import h2.exceptions
import h2.stream
import hpack
import pytest

from pytest_deproxy import Deproxy, Request, Response, handlers
from pytest_deproxy.h2conn import H2Connection
from pytest_deproxy.h2frames import PREFACE, frame

from .test_h2speed_fast_path import CONFIG, REQUEST

OK = [(":status", "200"), ("server", "deproxy"), ("content-length", "2")]
EMPTY = [(":status", "204"), ("server", "deproxy")]
OK_TUPLE, EMPTY_TUPLE = tuple(OK), tuple(EMPTY)


def _server(closed_kept: int | None = None) -> H2Connection:
    conn = H2Connection(h2.config.H2Configuration(client_side=False, **CONFIG))
    if closed_kept is not None:  # h2 keeps 65,536 closed streams: fewer, to see them go
        cast(Any, conn._closed_streams)._size_limit = closed_kept
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def _values(thing: object) -> object:
    """An object's state as plain values (h2's streams, state machines, window managers)."""
    if (
        isinstance(thing, (h2.stream.H2Stream, h2.stream.H2StreamStateMachine))
        or type(thing).__name__ == "WindowManager"
    ):
        return {k: _values(v) for k, v in sorted(vars(thing).items()) if k != "config"}
    return thing


def _state(conn: H2Connection) -> dict[str, object]:
    """What h2 holds, as it sees it (on a copy: looking hands the exchanges over)."""
    kinds = (hpack.HeaderTuple, hpack.NeverIndexedHeaderTuple)
    for kind in kinds:  # copied as made: their __new__ takes the two values, not one tuple
        copyreg.dispatch_table[kind] = lambda field: (type(field), tuple(field))
    try:
        seen = copy.deepcopy(conn)
    finally:
        for kind in kinds:
            del copyreg.dispatch_table[kind]
    streams = seen.streams
    return {
        "streams": [(sid, _values(stream)) for sid, stream in streams.items()],
        "closed": list(seen._closed_streams.items()),
        "ids": (seen.highest_inbound_stream_id, seen.highest_outbound_stream_id),
        "window": seen.outbound_flow_control_window,
        "inbound": _values(seen._inbound_flow_control_window_manager),
        "machine": seen.state_machine.state,
        "tables": (
            list(seen.encoder.header_table.dynamic_entries),
            list(seen.decoder.header_table.dynamic_entries),
        ),
        "frame size": seen.max_outbound_frame_size,
    }


def _event_values(events: list[Any]) -> list[object]:
    out: list[object] = []
    for event in events:
        values = {
            k: [tuple(field) for field in v] if k == "headers" else repr(v)
            for k, v in vars(event).items()
            if k not in ("stream_ended", "priority_updated")
        }
        out.append((type(event).__name__, sorted(values.items(), key=str)))
    return out


def _step(conn: H2Connection, step: tuple[Any, ...], fast: bool) -> list[object]:
    """One step, the plain h2 way or the fast way (as h2wire drives it); its outcome."""
    kind = step[0]
    try:
        if kind == "in":
            events = conn.receive_fast(step[1]) if fast else conn.receive_data(step[1])
            outcome: list[object] = _event_values(events)
        elif kind == "answer":  # (sid, fields, body): HEADERS, and DATA when there is a body
            _, sid, fields, body = step
            if not fast:
                conn.send_headers(sid, fields, end_stream=not body)
                if body:
                    conn.send_data(sid, body, end_stream=True)
            elif not (body and conn.send_answer_fast(sid, fields, body)):
                if not conn.send_headers_fast(sid, fields, not body):
                    conn.send_headers(sid, fields, end_stream=not body)
                if body:
                    conn.send_data(sid, body, end_stream=True)
            outcome = ["answered"]
        elif kind == "headers":  # (sid, fields, end_stream): an interim response, trailers
            _, sid, fields, end = step
            if not (fast and conn.send_headers_fast(sid, fields, end)):
                conn.send_headers(sid, fields, end_stream=end)
            outcome = ["headers"]
        elif kind == "data":
            conn.send_data(step[1], step[2], end_stream=step[3])
            outcome = ["data"]
        elif kind == "reset":
            conn.reset_stream(step[1], step[2])
            outcome = ["reset"]
        elif kind == "window":
            outcome = [conn.local_flow_control_window(step[1])]
        elif kind == "settings":  # ours, in force once the client acknowledges them
            conn.update_settings(step[1])
            outcome = ["settings"]
        else:
            raise AssertionError(kind)
    except h2.exceptions.H2Error as exc:
        outcome = [("error", type(exc).__name__, re.sub("0x[0-9a-f]+", "0x", str(exc)))]
    return [*outcome, ("sent", bytes(conn.data_to_send()))]


def _headers(stream_id: int, block: bytes, flags: int = 0x5) -> bytes:
    return frame(0x1, flags, stream_id, block)


def _settings(**values: int) -> bytes:
    codes = {"initial_window_size": 0x4, "max_frame_size": 0x5, "header_table_size": 0x1}
    payload = b"".join(
        codes[name].to_bytes(2, "big") + value.to_bytes(4, "big") for name, value in values.items()
    )
    return frame(0x4, 0, 0, payload)


def _window_update(stream_id: int, increment: int) -> bytes:
    return frame(0x8, 0, stream_id, increment.to_bytes(4, "big"))


def _reset(stream_id: int, code: int = 0x8) -> bytes:
    return frame(0x3, 0, stream_id, code.to_bytes(4, "big"))


def _case(name: str) -> tuple[list[tuple[Any, ...]], int | None]:
    """The steps of a case, and the server's stream limit. Each case has its own client
    HPACK context, and encodes its blocks in the order it sends them."""
    p = hpack.Encoder()

    def req(*extra: tuple[str, str]) -> bytes:
        return p.encode([*REQUEST, *extra])

    def start() -> tuple[Any, ...]:
        return ("in", PREFACE + frame(0x4, 0, 0, b""))

    def first() -> tuple[Any, ...]:  # the first stream opens the connection: h2's
        return ("in", _headers(1, req()))

    def batch() -> tuple[Any, ...]:
        return ("in", _headers(3, req()) + _headers(5, req(("x-id", "5"))) + _headers(7, req()))

    answers = [("answer", 3, OK, b"ok"), ("answer", 5, EMPTY, b""), ("answer", 7, OK, b"ok")]

    def common() -> list[tuple[Any, ...]]:
        return [start(), first(), ("answer", 1, OK, b"ok"), batch(), *answers]

    cases: dict[str, Callable[[], tuple[list[tuple[Any, ...]], int | None]]] = {
        "the common exchange, batch after batch": lambda: (
            [
                *common(),
                ("in", _headers(9, req()) + _headers(11, req())),
                ("answer", 9, EMPTY, b""),
                ("answer", 11, OK, b"ok"),
                ("in", _headers(13, req())),
                ("answer", 13, OK, b"ok"),
            ],
            None,
        ),
        "streams let go in order, over h2's limit": lambda: (
            [
                *common(),
                ("in", _headers(9, req())),
                ("answer", 9, OK, b"ok"),
                ("in", _headers(11, req())),
                ("in", _headers(13, req())),
            ],
            3,
        ),
        "frames on an exchange before its answer": lambda: (
            [
                start(),
                first(),
                batch(),
                ("in", _window_update(3, 100) + frame(2, 0, 5, bytes((0, 0, 0, 1, 9)))),
                ("window", 3),
                *answers,
            ],
            None,
        ),
        "the client resets an exchange before and after its answer": lambda: (
            [
                start(),
                first(),
                batch(),
                ("in", _reset(3)),
                ("answer", 5, EMPTY, b""),
                ("in", _reset(5)),
                ("answer", 3, OK, b"ok"),
                ("answer", 7, OK, b"ok"),
            ],
            None,
        ),
        "a reset on an exchange answered, once let go": lambda: (
            [*common(), ("in", _headers(9, req())), ("in", _reset(3))],
            None,
        ),
        "data and headers after END_STREAM": lambda: (
            [start(), first(), batch(), ("in", frame(0x0, 0x1, 3, b"late"))],
            None,
        ),
        "headers again on an exchange": lambda: (
            [start(), first(), batch(), ("in", _headers(5, req()))],
            None,
        ),
        "settings change the windows of exchanges": lambda: (
            [
                start(),
                first(),
                batch(),
                ("in", _settings(initial_window_size=1)),
                ("window", 5),
                ("answer", 3, OK, b"ok"),
                ("answer", 5, EMPTY, b""),
            ],
            None,
        ),
        "a larger frame size allowed": lambda: (
            [start(), first(), batch(), ("in", _settings(max_frame_size=20_000)), *answers],
            None,
        ),
        "an answer larger than the window": lambda: (
            [
                start(),
                first(),
                ("in", _settings(initial_window_size=4)),
                batch(),
                ("answer", 3, OK, b"too long"),
                ("window", 3),
                ("in", _window_update(3, 10)),
                ("answer", 5, EMPTY, b""),
            ],
            None,
        ),
        "an answer larger than the connection's window": lambda: (
            [
                start(),
                first(),
                ("answer", 1, OK, b"x" * 65535),
                batch(),
                ("answer", 3, OK, b"ok"),
                ("in", _window_update(0, 5)),
                ("answer", 5, OK, b"ok"),
            ],
            None,
        ),
        "interim response, trailers and a reset by us": lambda: (
            [
                start(),
                first(),
                batch(),
                ("headers", 3, [(":status", "103"), ("link", "</a>")], False),
                ("headers", 5, OK, False),
                ("headers", 5, [("x-t", "1")], True),
                ("reset", 7, 8),
                ("answer", 3, OK, b"ok"),
            ],
            None,
        ),
        "answered twice": lambda: (
            [*common(), ("answer", 5, EMPTY, b""), ("answer", 7, OK, b"ok")],
            None,
        ),
        "too many streams": lambda: (
            [
                start(),
                first(),
                ("in", _headers(3, req()) + _headers(5, req()) + _headers(7, req())),
            ],
            2,
        ),
        "requests h2 checks further": lambda: (
            [
                start(),
                first(),
                ("in", _headers(3, req(("content-length", "5")))),
                ("in", _headers(5, req(("content-length", "0"))) + _headers(7, req())),
                ("in", _headers(9, p.encode([(":status", "101"), *REQUEST]))),
            ],
            None,
        ),
        "a request with a body": lambda: (
            [
                start(),
                first(),
                ("in", _headers(3, req(), 4) + frame(0, 1, 3, b"b")),
                ("answer", 3, OK, b"ok"),
            ],
            None,
        ),
        "the same block after the table moved": lambda: (
            [
                start(),
                first(),
                ("in", _headers(3, same := req())),  # every field indexed, one in the table
                ("in", _headers(5, req(("x-a", "1")))),  # the table moves: 62 is x-a now
                ("in", _headers(7, same)),
                ("in", _headers(9, same)),
            ],
            None,
        ),
        "GOAWAY from us, then requests": lambda: (
            [start(), first(), batch(), ("in", _headers(9, req()))],
            None,
        ),
        # The settings a new stream reads, read once per batch of whole blocks, are read
        # again after any frame h2 takes between them: the client's SETTINGS (the windows),
        # its ACK of ours (the most streams we take).
        "settings between header blocks in one read": lambda: (
            [
                start(),
                first(),
                ("answer", 1, OK, b"ok"),
                ("settings", {0x3: 2}),
                (
                    "in",
                    _headers(3, req()) + _settings(initial_window_size=4) + _headers(5, req()),
                ),
                ("answer", 3, OK, b"ok"),
                ("answer", 5, OK, b"too long"),
                (
                    "in",
                    _headers(7, req())
                    + frame(0x4, 0x1, 0, b"")
                    + _headers(9, req())
                    + _headers(11, req()),
                ),
                ("window", 5),
            ],
            None,
        ),
        # An answer's fields as one tuple: its block is kept while the encoder's table
        # stays as it was, and made again once the table moved.
        "the same answer again, a tuple, while the table moves": lambda: (
            [
                start(),
                first(),
                ("answer", 1, EMPTY_TUPLE, b""),
                batch(),
                ("answer", 3, EMPTY_TUPLE, b""),
                ("answer", 5, (*OK_TUPLE[:2], ("x-date", "1"), OK_TUPLE[2]), b"ok"),
                ("answer", 7, EMPTY_TUPLE, b""),
                ("in", _headers(9, req()) + _headers(11, req()) + _headers(13, req())),
                ("answer", 9, OK_TUPLE, b"ok"),
                ("answer", 11, OK_TUPLE, b"ok"),
                ("headers", 13, [(":status", "103"), ("link", "</c>")], False),
                ("answer", 13, EMPTY_TUPLE, b""),
                ("in", _headers(15, req()) + _headers(17, req())),
                ("answer", 15, EMPTY_TUPLE, b""),
                ("answer", 17, EMPTY_TUPLE, b""),
            ],
            None,
        ),
    }
    return cases[name]()


CASES = [
    "the common exchange, batch after batch",
    "streams let go in order, over h2's limit",
    "frames on an exchange before its answer",
    "the client resets an exchange before and after its answer",
    "a reset on an exchange answered, once let go",
    "data and headers after END_STREAM",
    "headers again on an exchange",
    "settings change the windows of exchanges",
    "a larger frame size allowed",
    "an answer larger than the window",
    "an answer larger than the connection's window",
    "interim response, trailers and a reset by us",
    "answered twice",
    "too many streams",
    "requests h2 checks further",
    "a request with a body",
    "the same block after the table moved",
    "GOAWAY from us, then requests",
    "settings between header blocks in one read",
    "the same answer again, a tuple, while the table moves",
]


@pytest.mark.parametrize("case", CASES)
def test_exchanges_behave_as_h2s_streams(case: str) -> None:
    steps, limit = _case(case)
    kept = 3 if case.startswith("streams let go") else None
    plain, fast = _server(kept), _server(kept)
    if limit is not None:
        for conn in (plain, fast):
            conn.local_settings.max_concurrent_streams = limit
            conn.local_settings.acknowledge()
    if case.startswith("GOAWAY"):
        for conn in (plain, fast):
            conn.close_connection()
            conn.data_to_send()
    for number, step in enumerate(steps):
        expected = _step(plain, step, fast=False)
        assert _step(fast, step, fast=True) == expected, (number, step[:2])
        assert _state(fast) == _state(plain), (number, step[:2])
        if step[0] == "in" and cast(tuple[object, ...], expected[0])[0] == "error":
            break  # the connection is over: what h2 kept of the read is no one's business


def test_the_common_exchange_makes_no_h2_stream(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An h2c endpoint answering requests whole, bodies and none: the server side makes
    none of h2's streams after the first (the client side, h2's own, makes one each)."""
    made: list[tuple[int, bool]] = []
    init = h2.stream.H2Stream.__init__

    def counting(self: h2.stream.H2Stream, stream_id: int, config: Any, **kw: Any) -> None:
        made.append((stream_id, bool(config.client_side)))
        init(self, stream_id, config, **kw)

    monkeypatch.setattr(h2.stream.H2Stream, "__init__", counting)
    empty = deproxy.add_endpoint(http2="h2c")
    body = deproxy.add_endpoint(http2="h2c", default_handler=Response(200, body=b"hello"))
    for endpoint, expected in ((empty, b""), (body, b"hello")):
        with deproxy.connect(endpoint.url, http2="h2c") as connection:
            for _ in range(3):
                chain = deproxy.make_request(endpoint.url, connection=connection)
                assert chain.received_response is not None, chain.error
                assert chain.received_response.raw_body == expected
    assert [sid for sid, client in made if not client] == [1, 1]  # the first stream of each
    assert [sid for sid, client in made if client] == [1, 3, 5] * 2


def test_exchanges_mixed_with_streams_h2_holds(deproxy: Deproxy) -> None:
    """Concurrent streams on one connection: answered whole, a body larger than the window,
    a handler that waits, a request with a body; each gets its own answer."""
    import httpx

    release = threading.Event()

    def waiting(request: Request) -> Response:
        release.wait(5)
        return Response(200, body=b"waited")

    routes: dict[str | re.Pattern[str], handlers.Handler] = {
        "/big": Response(200, body=b"b" * 200_000),
        "/wait": waiting,
        "/echo": lambda request: Response(200, body=request.body[::-1]),
    }
    endpoint = deproxy.add_endpoint(
        http2="h2c", default_handler=handlers.by_path(routes, Response(200, body=b"small"))
    )
    results: dict[str, bytes] = {}
    with httpx.Client(http1=False, http2=True, base_url=endpoint.url) as client:

        def get(path: str, body: bytes | None = None) -> None:
            if body is None:
                results[path] = client.get(path).content
            else:
                results[path] = client.post(path, content=body).content

        threads = [threading.Thread(target=get, args=("/wait",))]
        threads += [threading.Thread(target=get, args=(f"/{n}",)) for n in range(6)]
        threads += [threading.Thread(target=get, args=("/big",))]
        threads += [threading.Thread(target=get, args=("/echo", b"abc"))]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join(10)
        release.set()
        threads[0].join(10)
    assert results.pop("/big") == b"b" * 200_000
    assert results.pop("/wait") == b"waited"
    assert results.pop("/echo") == b"cba"
    assert results == {f"/{n}": b"small" for n in range(6)}
    assert len(endpoint.connections) == 1
    assert len(endpoint.handlings) == 9
