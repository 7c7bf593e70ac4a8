"""A request the poll thread answers keeps its headers unread until someone reads them: the
glance at its head accepts and declines what the whole reading does, the headers read later
are the ones that arrived, byte for byte, from any thread, once; and the record keeps a few
objects for such a request instead of a couple of dozen. Through sockets where it can."""

from __future__ import annotations

import gc
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_deproxy import Deproxy, handlers
from pytest_deproxy.heads import GLANCE_LACKS, Head, glance_request_head, read_request_head
from pytest_deproxy.models import UNREAD_LACKS, Headers, Request
from pytest_deproxy.record import Handling

from .conftest import bodiless_answers
from .test_heads import heads, request_lines

LIMIT = 64 * 1024


# -- the glance reads what the whole reading reads -------------------------------------------


def test_the_names_a_glance_refuses_are_those_an_unread_request_is_known_to_lack() -> None:
    assert set(GLANCE_LACKS) == UNREAD_LACKS


NAMES = st.sampled_from(
    ["Host", "HOST", "hOsT", "X-A", "Connection", "CONNECTION", "Deproxy-Request-ID",
     "deproxy-request-id", "Expect", "Content-Length", "Transfer-Encoding", "Hostx", "X-Host"]
)  # fmt: skip


@st.composite
def notable_heads(draw: st.DrawFn) -> bytes:
    """Heads that name the notable headers in any case, any number of times."""
    fields = draw(
        st.lists(
            st.tuples(
                NAMES,
                st.sampled_from(
                    ["h", " 0 ", "\tclose", "", "keep-alive", " Keep-Alive\t", "keep-alive, x"]
                ),
            ),
            max_size=4,
        )
    )
    lines = [draw(st.sampled_from(["GET / HTTP/1.1", "PUT /x HTTP/1.0", "DELETE * HTTP/1.1"]))]
    lines += [f"{name}:{value}" for name, value in fields]
    lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(["Host: h", "host:h"])))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + draw(st.binary(max_size=4))


def _same_reading(data: bytes) -> None:
    whole = read_request_head(data, LIMIT)
    glanced = glance_request_head(data, LIMIT)
    if whole is None or glanced is None:
        assert glanced is None and whole is None, (glanced, whole)
        return
    if not isinstance(glanced, Head):  # the fields unread: read later, they are the same
        method, target, version, size = glanced
        assert (whole.start, whole.size, whole.content_length) == (
            (method, target, version),
            size,
            0,
        )
        assert not set(whole.keys) & UNREAD_LACKS and whole.keys.count("host") == 1
        # and a Connection, if any, one whose whole value is keep-alive: it asks no close
        options = [value for (_, value), key in zip(whole.items, whole.keys, strict=True)
                   if key == "connection"]  # fmt: skip
        assert len(options) <= 1 and all(value.lower() == "keep-alive" for value in options)
        headers = Headers.from_head(data[:size])
        assert (headers.items(), list(headers._keys)) == (whole.items, whole.keys)
    else:
        assert glanced == whole


@settings(max_examples=400, deadline=None)
@given(data=heads(request_lines()))
def test_a_glance_takes_and_reads_what_the_head_reader_does(data: bytes) -> None:
    _same_reading(data)


@settings(max_examples=400, deadline=None)
@given(data=notable_heads())
def test_a_glance_reads_whole_every_head_naming_what_an_endpoint_acts_on(data: bytes) -> None:
    _same_reading(data)


def test_a_head_of_several_hosts_or_none_is_declined_like_the_head_reader_does() -> None:
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"):
        assert glance_request_head(data, LIMIT) is None and read_request_head(data, LIMIT) is None


# -- through an endpoint ---------------------------------------------------------------------


def test_headers_read_from_the_record_are_the_ones_that_arrived_in_order_as_spelled() -> None:
    head = (
        b"GET /x?y HTTP/1.1\r\nhOsT:  h:1 \t\r\nX-Odd: \xe9\x01 v\r\nx-odd:\r\nAccept:*/*\r\n\r\n"
    )
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        bodiless_answers(endpoint.port, head * 3, 3)
        handlings = endpoint.handlings
    assert len(handlings) == 3
    for handling in handlings:
        request = handling.request
        assert (request.method, request.path, request.http_version) == ("GET", "/x?y", "1.1")
        assert request.headers.items() == [
            ("hOsT", "h:1"),
            ("X-Odd", "\xe9\x01 v"),
            ("x-odd", ""),
            ("Accept", "*/*"),
        ]
        assert request.headers.get_all("X-ODD") == ["\xe9\x01 v", ""]
        assert (request.body, request.raw_body, handling.raw) == ("", b"", head)
        assert request.headers is request.headers  # made once, then kept


def test_unread_headers_read_by_many_threads_at_once_are_made_once() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
    for _ in range(50):
        request = Request.unread("GET", "/", raw, "1.1")
        seen: list[Headers] = []
        start = threading.Barrier(4)

        def read(request: Request, start: threading.Barrier, seen: list[Headers]) -> None:
            start.wait()
            seen.append(request.headers)

        threads = [threading.Thread(target=read, args=(request, start, seen)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert len(seen) == 4 and all(headers is seen[0] for headers in seen)
        assert seen[0].items() == [("Host", "h"), ("X-A", "1")]


def test_an_unread_request_changed_by_a_handler_keeps_the_change() -> None:
    request = Request.unread("GET", "/", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "1.1")
    request.headers.add("X-Added", "1")
    assert request.headers.items() == [("Host", "h"), ("X-Added", "1")]
    request.headers = Headers([("Host", "other")])
    assert request.headers.items() == [("Host", "other")]
    assert not hasattr(request, "no_such_attribute")


def _owned_objects(handlings: list[Handling]) -> list[int]:
    """For each handling, how many objects only it reaches (what dropping it frees)."""
    reach: list[set[int]] = []
    for handling in handlings:
        seen: set[int] = set()
        stack: list[object] = [handling]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, type) or obj is handling.endpoint:
                continue
            seen.add(id(obj))
            stack.extend(gc.get_referents(obj))
        reach.append(seen)
    counts = []
    for index, seen in enumerate(reach):
        others = set().union(*(other for j, other in enumerate(reach) if j != index))
        counts.append(len(seen - others))
    return counts


def test_a_request_answered_on_the_poll_thread_costs_the_record_a_few_objects() -> None:
    # Before its headers were left unread: 23 objects each (a Headers, its tuples, every name
    # and value); now the handling, the request, its head's bytes, its target and two times.
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        head = b"GET /%d HTTP/1.1\r\nHost: h\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
        bodiless_answers(endpoint.port, b"".join(head % n for n in range(20)), 20)
        handlings = endpoint.handlings
    owned = _owned_objects(handlings[2:-2])  # (not the first answer of a second: it may differ)
    assert max(owned) <= 8, owned
    assert handlings[5].request.headers.items() == [
        ("Host", "h"),
        ("User-Agent", "wrk"),
        ("Accept", "*/*"),
    ]
