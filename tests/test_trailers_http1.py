"""Trailers on HTTP/1.1, both ways: a chunked body's trailer section is ``request.trailers``
at an endpoint (where HTTP/2 trailers go), a handler's ``Response(trailers=...)`` goes out
chunked with them, ``make_request(trailers=...)`` sends them in the last chunk and reads
``response.trailers``; and through haproxy (2.6.12), which forwards HTTP/1 trailers and
translates them to and from HTTP/2 trailers. nginx (1.22.1) drops them both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Request, Response
from pytest_deproxy.responding import as_sent

from .conftest import answered, packaged_proxy
from .test_http2_nginx import CONFIG as NGINX
from .test_http2_peers import haproxy

SENT = [("X-Checksum", "abc"), ("x-checksum", "dup"), ("X-Other", "o")]


def with_trailers(request: Request) -> Response:
    return Response(200, body=f"got {request.body!s}", trailers=[("X-Served", "yes"), ("X-N", "1")])


def test_trailers_both_ways_on_one_keep_alive_connection(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(default_handler=with_trailers)
    with deproxy.connect(endpoint.url) as connection:
        chain = deproxy.make_request(
            endpoint.url + "/t", "POST", request_body="hello", trailers=SENT, connection=connection
        )
        # The connection is still in step: the trailer sections were read to their end.
        again = deproxy.make_request(endpoint.url + "/again", connection=connection)
    sent = chain.sent_request.headers
    assert sent["Transfer-Encoding"] == "chunked" and "Content-Length" not in sent
    [handling] = chain.handlings
    assert handling.raw.endswith(
        b"\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nx-checksum: dup\r\nX-Other: o\r\n\r\n"
    )
    assert handling.request.trailers.items() == SENT  # names, case, order and duplicates
    assert handling.request.body == "hello"
    response = answered(chain)
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    assert (response.body, response.trailers.items()) == (
        "got hello",
        [("X-Served", "yes"), ("X-N", "1")],
    )
    assert handling.response is not None and handling.response.trailers.items() == [
        ("X-Served", "yes"),
        ("X-N", "1"),
    ]
    [record] = endpoint.connections
    assert b"9\r\ngot hello\r\n0\r\nX-Served: yes\r\nX-N: 1\r\n\r\n" in record.sent
    assert answered(again).trailers.items() == [("X-Served", "yes"), ("X-N", "1")]
    assert again.handlings[0].request.trailers.items() == []  # no body, no trailers


def test_a_trailer_section_is_recorded_as_it_came(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint()
    chain = deproxy.make_raw_request(
        endpoint.url,
        b"POST /raw HTTP/1.1\r\nHost: x\r\nDeproxy-Request-ID: {request_id}\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-A: 1\r\nx-a:2\r\nX-B:  spaced  \r\n\r\n",
    )
    assert answered(chain).code == "200"
    [handling] = chain.handlings
    assert handling.request.trailers.items() == [("X-A", "1"), ("x-a", "2"), ("X-B", "spaced")]
    assert handling.request.trailers.get_all("x-a") == ["1", "2"]
    assert handling.raw.endswith(b"0\r\nX-A: 1\r\nx-a:2\r\nX-B:  spaced  \r\n\r\n")


@pytest.mark.parametrize(
    ("case", "method", "http_version", "headers"),
    [
        ("http/1.0", "GET", "1.0", None),  # no chunked framing in HTTP/1.0
        ("head", "HEAD", "1.1", None),  # no body, so no last chunk
        ("a length", "GET", "1.1", {"Content-Length": "2"}),  # the handler chose a length
    ],
)
def test_trailers_http1_cannot_carry_are_not_on_the_record(
    deproxy: Deproxy,
    case: str,
    method: str,
    http_version: str,
    headers: dict[str, str] | None,
) -> None:
    answer = Response(200, headers=headers, body="ok", trailers={"X-Lost": "yes"})
    endpoint = deproxy.add_endpoint(default_handler=answer)
    chain = deproxy.make_request(endpoint.url, method, http_version=http_version)
    response = answered(chain)
    assert response.trailers.items() == []
    # A HEAD answer has the headers a GET's would (chunked, here), and no body to end.
    assert ("Transfer-Encoding" in response.headers) == (method == "HEAD")
    [handling] = chain.handlings
    assert handling.response is not None and handling.response.trailers.items() == []
    assert b"X-Lost" not in endpoint.connections[0].sent
    assert answer.trailers.items() == [("X-Lost", "yes")]  # the canned response is unchanged


@pytest.mark.parametrize(
    ("version", "framing"),
    [("1.1", ("Transfer-Encoding", "chunked")), ("2", None), ("1.0", ("Content-Length", "2"))],
)
def test_a_response_with_trailers_is_framed_so_that_they_can_follow(
    version: str, framing: tuple[str, str] | None
) -> None:
    sent = as_sent(
        Response(200, body="ok", trailers={"x-t": "1"}), Request("GET", "/", [], None, version)
    )
    framed = [
        (n, v) for n, v in sent.headers.items() if n in ("Content-Length", "Transfer-Encoding")
    ]
    # HTTP/1.1: chunked; HTTP/2: no length, the body ends at END_STREAM (a length misleads
    # nginx's grpc_pass into dropping the trailers); HTTP/1.0: a length, and no trailers.
    assert framed == ([framing] if framing else [])
    assert sent.trailers.items() == ([] if version == "1.0" else [("x-t", "1")])


def test_trailers_cross_haproxy_on_http1_both_ways(deproxy: Deproxy, tmp_path: Path) -> None:
    backend = deproxy.add_endpoint(default_handler=with_trailers)
    process, port = haproxy(tmp_path, "", f"server s1 127.0.0.1:{backend.port}")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/t", "POST", request_body="hello", trailers=SENT
        )
    # haproxy forwards the trailer section as it forwards headers: names lower-cased,
    # duplicates and order kept; both ways.
    [handling] = chain.handlings
    assert handling.raw.endswith(
        b"transfer-encoding: chunked\r\n"
        + f"deproxy-request-id: {chain.request_id}\r\n\r\n".encode()
        + b"5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-checksum: dup\r\nx-other: o\r\n\r\n"
    )
    assert handling.request.trailers.items() == [(n.lower(), v) for n, v in SENT]
    response = answered(chain)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.trailers.items() == [("x-served", "yes"), ("x-n", "1")]


def test_haproxy_turns_h2_trailers_into_a_trailer_section_and_back(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(default_handler=with_trailers)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port}")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/t", "POST", request_body="hello", trailers=SENT, http2="h2c"
        )
    # The client declared no length (a length would make haproxy send one upstream, and
    # drop the trailers): haproxy sent the body chunked, the trailers in its last chunk.
    assert "content-length" not in chain.sent_request.headers
    [handling] = chain.handlings
    assert handling.request.http_version == "1.1" and handling.request.body == "hello"
    assert handling.request.headers["transfer-encoding"] == "chunked"
    assert handling.raw.endswith(
        b"\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-checksum: dup\r\nx-other: o\r\n\r\n"
    )
    # And the endpoint's HTTP/1.1 trailer section came back as HTTP/2 trailers.
    response = answered(chain)
    assert response.http_version == "2"
    assert response.trailers.items() == [("x-served", "yes"), ("x-n", "1")]


@pytest.mark.parametrize("upstream_version", ["1.0", "1.1"])
def test_nginx_drops_trailers_both_ways_and_the_record_shows_where(
    deproxy: Deproxy, upstream_version: str
) -> None:
    backend = deproxy.add_endpoint(default_handler=with_trailers)
    server = (
        "location / { proxy_pass http://127.0.0.1:@ORIGIN_PORT@; "
        f"proxy_http_version {upstream_version}; }}"
    )
    config = NGINX % {"listen": "listen 127.0.0.1:@PORT@;", "server": server}
    with packaged_proxy("nginx", backend.port, config) as nginx:
        chain = deproxy.make_request(nginx.url + "/t", "POST", request_body="hello", trailers=SENT)
    # nginx 1.22 reads the client's chunked body and trailers, and sends on the body alone.
    [handling] = chain.handlings
    assert handling.request.headers["Content-Length"] == "5"
    assert handling.raw.endswith(b"\r\n\r\nhello") and handling.request.trailers.items() == []
    # Upstream, the endpoint sends its trailers where HTTP/1.1 can carry them (chunked), not
    # on an HTTP/1.0 answer: the record says which. nginx passes none on to the client.
    assert handling.response is not None
    sent_trailers = handling.response.trailers.items()
    assert sent_trailers == (
        [] if upstream_version == "1.0" else [("X-Served", "yes"), ("X-N", "1")]
    )
    trailer_section = b"0\r\nX-Served: yes\r\nX-N: 1\r\n\r\n"
    assert (trailer_section in backend.connections[0].sent) == (upstream_version == "1.1")
    response = answered(chain)
    assert response.body == "got hello" and response.trailers.items() == []
