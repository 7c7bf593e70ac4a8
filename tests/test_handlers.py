"""The stock handlers."""

from __future__ import annotations

import gc
import re
import time
import weakref
from collections.abc import Callable

from pytest_deproxy import TRACKING_HEADER, Deproxy, Endpoint, Request, Response, handlers

EndpointFactory = Callable[..., Endpoint]


def test_simple_is_an_empty_200(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    response = deproxy.make_request(endpoint(handler=handlers.simple).url).received_response
    assert response is not None
    assert (response.code, response.message, response.body) == ("200", "OK", "")


def test_echo_keeps_binary_bytes_and_duplicates(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    chain = deproxy.make_request(
        endpoint(handler=handlers.echo).url,
        "PUT",
        [("Content-Type", "application/octet-stream"), ("X-D", "1"), ("X-D", "2")],
        b"\x00\xff",
    )
    response = chain.received_response
    assert response is not None
    assert response.body == b"\x00\xff"
    assert response.headers.get_all("X-D") == ["1", "2"]


def test_delay_waits_then_answers_with_the_next_handler(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=handlers.delay(0.3, Response(418)))
    started = time.monotonic()
    chain = deproxy.make_request(server.url)
    assert time.monotonic() - started >= 0.3  # a lower bound: holds however busy the machine is
    assert chain.received_response is not None and chain.received_response.code == "418"


def test_route_rewrites_host_and_keeps_the_chain(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    upstream = endpoint("upstream", handlers.echo)
    front = endpoint("front", handlers.route(upstream.url + "/base"))
    chain = deproxy.make_request(front.url + "/x?y=1", "POST", {"X-Keep": "me"}, "payload")
    assert [h.endpoint.name for h in chain.handlings] == ["front", "upstream"]  # as they arrived
    forwarded = chain.handlings[1].request
    assert forwarded.headers["Host"] == f"127.0.0.1:{upstream.port}"
    assert forwarded.path == "/base/x?y=1"
    assert forwarded.headers[TRACKING_HEADER] == chain.request_id
    assert forwarded.headers["X-Keep"] == "me"
    assert chain.received_response is not None and chain.received_response.body == "payload"


def test_route_forwards_a_chunked_post_with_framing_the_upstream_can_read(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    upstream = endpoint("upstream", handlers.echo)
    front = endpoint("front", handlers.route(upstream.url))

    chain = deproxy.make_request(
        front.url, "POST", request_body="in chunks", chunked=True, timeout=5
    )

    [forwarded] = [h.request for h in chain.handlings if h.endpoint is upstream]
    assert forwarded.body == "in chunks"
    assert "Transfer-Encoding" not in forwarded.headers  # the body is framed anew, by length
    assert forwarded.headers["Content-Length"] == "9"
    assert chain.received_response is not None and chain.received_response.body == "in chunks"


def test_route_drops_hop_by_hop_fields_and_those_connection_nominates(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    upstream = endpoint("upstream", handlers.echo)
    front = endpoint("front", handlers.route(upstream.url))

    chain = deproxy.make_request(
        front.url,
        headers=[
            ("Connection", "X-Private"),
            ("X-Private", "1"),
            ("Keep-Alive", "300"),
            ("TE", "trailers"),
            ("X-End", "2"),
        ],
    )

    [forwarded] = [h.request for h in chain.handlings if h.endpoint is upstream]
    assert [
        n for n in ("Connection", "X-Private", "Keep-Alive", "TE") if n in forwarded.headers
    ] == []
    assert forwarded.headers["X-End"] == "2"


def test_route_to_a_dead_server_answers_502(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    dead = endpoint()
    dead_url = dead.url
    dead.shutdown()
    chain = deproxy.make_request(endpoint(handler=handlers.route(dead_url)).url)
    response = chain.received_response
    assert response is not None
    assert response.code == "502"
    assert "refused" in str(response.body)


def test_by_path_exact_regex_and_default(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(
        handler=handlers.by_path(
            {"/exact": Response(201), re.compile(r"/items/\d+"): Response(202)},
            default=Response(203),
        )
    )

    def code(path: str) -> str:
        response = deproxy.make_request(server.url + path).received_response
        assert response is not None
        return response.code

    assert code("/exact?query=ignored") == "201"
    assert code("/items/42") == "202"
    assert code("/items/42/more") == "203"
    assert code("/other") == "203"
    plain = endpoint(handler=handlers.by_path({"/": Response(200)}))
    response = deproxy.make_request(plain.url + "/missing").received_response
    assert response is not None and response.code == "404"


def test_by_method_answers_405_with_allow(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.by_method({"GET": Response(200), "post": Response(201)}))
    assert deproxy.make_request(server.url, "POST").received_response.code == "201"  # type: ignore[union-attr]
    refused = deproxy.make_request(server.url, "DELETE").received_response
    assert refused is not None
    assert refused.code == "405"
    assert refused.headers["Allow"] == "GET, POST"


def test_handlers_compose(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    def shout(request: Request) -> Response:
        return Response(200, body=str(request.body).upper())

    server = endpoint(
        handler=handlers.by_method({"POST": handlers.delay(0, handlers.by_path({"/s": shout}))})
    )
    response = deproxy.make_request(
        server.url + "/s", "POST", request_body="quiet"
    ).received_response
    assert response is not None and response.body == "QUIET"


def test_a_handler_is_not_kept_alive_once_its_test_lets_go_of_it() -> None:
    class Held:  # stands for what a test's closure holds: a big fixture, a socket...
        pass

    def handler_holding(thing: Held) -> Callable[[Request], Response]:
        return lambda request: Response(200, body=str(id(thing)))

    held = Held()
    gone = weakref.ref(held)
    with Deproxy() as deproxy:
        server = deproxy.add_endpoint(default_handler=handler_holding(held))
        deproxy.make_request(server.url)
        server.default_handler = None
    del held
    gc.collect()

    assert gone() is None
