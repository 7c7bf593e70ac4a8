"""Bad input at the endpoint: it answers 4xx or closes, records what it saw, keeps serving,
and no thread dies silently."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_deproxy import Deproxy, DeproxyTimeout, Endpoint
from pytest_deproxy.request_reader import CutShort, RequestReader, RequestRefused

from .conftest import eventually, send_raw

EndpointFactory = Callable[..., Endpoint]


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def still_serves(deproxy: Deproxy, server: Endpoint) -> bool:
    response = deproxy.make_request(server.url).received_response
    return response is not None and response.code == "200"


class TestSlowloris:
    def test_a_stalled_request_head_gets_408_and_is_closed(self, deproxy: Deproxy) -> None:
        server = deproxy.add_endpoint(request_timeout=0.3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert status_of(answer) == 408
        eventually(lambda: server.errors)
        assert isinstance(server.errors[0], DeproxyTimeout)
        assert still_serves(deproxy, server)

    def test_an_idle_keep_alive_connection_is_left_alone(self, deproxy: Deproxy) -> None:
        server = deproxy.add_endpoint(request_timeout=0.2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            time.sleep(0.5)  # longer than request_timeout, but no request has begun
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


class TestLyingRequests:
    def test_a_content_length_larger_than_the_body(
        self, deproxy: Deproxy, endpoint: EndpointFactory
    ) -> None:
        server = endpoint()
        answer = send_raw(
            server.port, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\nonly this"
        )
        assert answer == b""  # it never got a whole request, so it answered nothing
        eventually(lambda: [h for h in server.handlings if h.done])
        assert server.handlings[0].action == "the client closed the connection after 9 body bytes"
        assert still_serves(deproxy, server)

    def test_a_content_length_smaller_than_the_body(
        self, deproxy: Deproxy, endpoint: EndpointFactory
    ) -> None:
        server = endpoint()
        answer = send_raw(
            server.port,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokAND MORE\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"HTTP/1.1 400" in answer  # the rest was read as a (malformed) next request
        assert server.handlings[0].request.body == "ok"

    @pytest.mark.parametrize(
        "header",
        [b"Bad Name: x", b"X-Ctl: a\x00b", b": no name", b"X-Colon-Less"],
        ids=repr,
    )
    def test_invalid_header_names_and_values(
        self, deproxy: Deproxy, endpoint: EndpointFactory, header: bytes
    ) -> None:
        server = endpoint()
        answer = send_raw(server.port, b"GET / HTTP/1.1\r\nHost: h\r\n" + header + b"\r\n\r\n")
        assert status_of(answer) == 400
        assert still_serves(deproxy, server)

    def test_an_obsolete_folded_header_is_unfolded(self, endpoint: EndpointFactory) -> None:
        server = endpoint()  # RFC 9112 5.2 lets a server replace the fold with a space
        send_raw(server.port, b"GET / HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n folded\r\n\r\n")
        assert server.handlings[0].request.headers["X-Fold"] == "a folded"


# -- properties ----------------------------------------------------------------------------

METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"G\x00T", b"", b"get", b"CONNECT", b"X" * 300])
TARGETS = st.sampled_from([b"/", b"*", b"http://h/x", b"/a b", b"", b"/%zz", b"/\xff"])
VERSIONS = st.sampled_from(
    [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b"HTTP/9.9", b"", b"FTP/1.1"]
)
HEADER_NAMES = st.sampled_from(
    [b"Host", b"Content-Length", b"Transfer-Encoding", b"X", b"Bad Name", b""]
)
HEADER_VALUES = st.one_of(
    st.sampled_from([b"h", b"5", b"-1", b"chunked", b"chunked, gzip", b"99999999999", b"\x00"]),
    st.binary(max_size=20),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6)
BODIES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"3\r\nab", b"0\r\n\r\n"]),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    headers = b"".join(name + b": " + value + b"\r\n" for name, value in draw(HEADERS))
    return line + b"\r\n" + headers + b"\r\n" + draw(BODIES)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(requests(), st.binary(max_size=200)))
def test_the_parser_only_ever_says_malformed_or_closed(data: bytes) -> None:
    class Bytes:
        timeout = None

        def __init__(self) -> None:
            self.left = data

        def read(self, max_bytes: int = 65536) -> bytes:
            taken, self.left = self.left[:5], self.left[5:]
            return taken

        def write(self, data: bytes) -> None:
            pass

    reader = RequestReader(Bytes())
    status_hint = None
    try:
        while (arrival := reader.read_head()) is not None:
            reader.read_body(arrival)
    except RequestRefused as error:
        status_hint = error.status_hint
    except CutShort:
        pass  # also a fine answer to a request cut short
    assert status_hint is None or 400 <= status_hint < 600


@pytest.fixture(scope="module")
def shared_endpoint() -> Iterator[tuple[Deproxy, Endpoint]]:
    with Deproxy() as deproxy:
        yield deproxy, deproxy.add_endpoint(request_timeout=2)
        assert deproxy.errors == []  # nothing blew up inside a thread


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=requests())
def test_the_endpoint_answers_4xx_or_closes_and_keeps_serving(
    shared_endpoint: tuple[Deproxy, Endpoint], data: bytes
) -> None:
    deproxy, server = shared_endpoint
    answer = send_raw(server.port, data)
    status = status_of(answer)
    assert answer == b"" or status is not None, answer[:80]
    if status is not None and status >= 400:
        assert status in (400, 408, 413, 431, 501, 505)  # 501: an unknown Transfer-Encoding
    assert still_serves(deproxy, server)
