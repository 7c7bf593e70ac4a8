"""MessageChains, handler resolution and orphans: Deproxy's own acceptance cases."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pytest_deproxy import (
    TRACKING_HEADER,
    Deproxy,
    Endpoint,
    HandlerContext,
    MessageChain,
    Request,
    Response,
    handlers,
)

EndpointFactory = Callable[..., Endpoint]


def test_a_bare_endpoint_answers_200(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(endpoint().url)
    assert chain.received_response is not None and chain.received_response.code == "200"
    assert chain.error is None
    assert len(chain.handlings) == 1
    assert chain.orphaned_handlings == []


def test_echo_returns_the_header_and_body(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(
        endpoint(handler=handlers.echo).url, "POST", {"x-header": "12345"}, "this is the body"
    )
    response = chain.received_response
    assert response is not None
    assert response.headers["x-header"] == "12345"
    assert response.body == "this is the body"


class TestHandlerResolution:
    """A front endpoint routes to a back endpoint; ``handlers`` changes either or both."""

    @pytest.fixture
    def pair(self, endpoint: EndpointFactory) -> tuple[Endpoint, Endpoint]:
        back = endpoint("back")
        front = endpoint("front", handlers.route(back.url))
        return front, back

    @staticmethod
    def tagging(back: Endpoint) -> Callable[[Request, HandlerContext], Response]:
        forward = handlers.route(back.url)

        def tag(request: Request, context: HandlerContext) -> Response:
            forwarded = forward(request, context)
            return Response(601, "Front", body=f"back said {forwarded.code}")

        return tag

    def codes(self, chain: MessageChain) -> dict[str, str]:
        return {h.endpoint.name: h.response.code for h in chain.handlings if h.response}

    def test_no_handlers(self, deproxy: Deproxy, pair: tuple[Endpoint, Endpoint]) -> None:
        front, _ = pair
        given: dict[str, Response] | None
        for given in (None, {}):
            chain = deproxy.make_request(front.url, handlers=given)
            assert self.codes(chain) == {"front": "200", "back": "200"}

    def test_both_by_object(self, deproxy: Deproxy, pair: tuple[Endpoint, Endpoint]) -> None:
        front, back = pair
        chain = deproxy.make_request(
            front.url, handlers={front: self.tagging(back), back: Response(602)}
        )
        assert self.codes(chain) == {"front": "601", "back": "602"}
        assert chain.received_response is not None
        assert chain.received_response.body == "back said 602"

    def test_only_the_first(self, deproxy: Deproxy, pair: tuple[Endpoint, Endpoint]) -> None:
        front, back = pair
        chain = deproxy.make_request(front.url, handlers={front: self.tagging(back)})
        assert self.codes(chain) == {"front": "601", "back": "200"}

    def test_both_by_name(self, deproxy: Deproxy, pair: tuple[Endpoint, Endpoint]) -> None:
        front, back = pair
        chain = deproxy.make_request(
            front.url, handlers={"front": self.tagging(back), "back": Response(602)}
        )
        assert self.codes(chain) == {"front": "601", "back": "602"}

    def test_object_wins_over_name_and_name_over_call_default(
        self, deproxy: Deproxy, pair: tuple[Endpoint, Endpoint]
    ) -> None:
        _, back = pair
        chain = deproxy.make_request(
            back.url,
            handlers={back: Response(603), "back": Response(604)},
            default_handler=Response(605),
        )
        assert self.codes(chain) == {"back": "603"}
        chain = deproxy.make_request(
            back.url, handlers={"back": Response(604)}, default_handler=Response(605)
        )
        assert self.codes(chain) == {"back": "604"}


def test_resolution_falls_back_call_then_endpoint_then_deproxy_then_simple() -> None:
    with Deproxy(default_handler=Response(403)) as deproxy:
        plain = deproxy.add_endpoint()
        with_default = deproxy.add_endpoint(default_handler=Response(402))

        def code(url: str, handler: Response | None = None) -> str | None:
            response = deproxy.make_request(url, default_handler=handler).handlings[0].response
            return None if response is None else response.code

        assert code(with_default.url, Response(401)) == "401"
        assert code(with_default.url) == "402"
        assert code(plain.url) == "403"
        with_default.default_handler = None
        deproxy.default_handler = None
        assert code(with_default.url) == "200"


def holding_handler() -> tuple[Callable[[Request], Response], threading.Event, threading.Event]:
    """A handler that signals ``arrived`` and answers only once ``release`` is set."""
    arrived, release = threading.Event(), threading.Event()

    def hold(request: Request) -> Response:
        arrived.set()
        release.wait(5)
        return Response(200)

    return hold, arrived, release


def run_in_thread(function: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    return thread, result


def test_a_second_clients_request_is_an_orphan_of_the_pending_one(deproxy: Deproxy) -> None:
    """Client A is held at the endpoint while client B (another Deproxy) calls the same endpoint."""
    hold, arrived, release = holding_handler()

    server = deproxy.add_endpoint()
    thread, result = run_in_thread(lambda: deproxy.make_request(server.url, default_handler=hold))
    assert arrived.wait(5)
    with Deproxy() as client_b:
        chain_b = client_b.make_request(server.url)
    release.set()
    thread.join(10)
    chain_a: MessageChain = result[0]
    assert len(chain_a.handlings) == 1
    assert [h.request_id for h in chain_a.orphaned_handlings] == [chain_b.request_id]
    assert chain_b.handlings == []
    assert chain_b.orphaned_handlings == []


def test_an_untracked_chunked_request_is_an_orphan_with_its_body_dechunked(
    deproxy: Deproxy,
) -> None:
    hold, arrived, release = holding_handler()

    server = deproxy.add_endpoint()
    thread, result = run_in_thread(lambda: deproxy.make_request(server.url, default_handler=hold))
    assert arrived.wait(5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /untracked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n4\r\nthis\r\n3\r\n is\r\n0\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    release.set()
    thread.join(10)
    chain: MessageChain = result[0]
    assert len(chain.orphaned_handlings) == 1
    orphan = chain.orphaned_handlings[0]
    assert (orphan.request.path, orphan.request.body, orphan.request_id) == (
        "/untracked",
        "this is",
        None,
    )
    assert TRACKING_HEADER not in orphan.request.headers


def test_an_unknown_tracking_id_is_an_orphan_and_nothing_is_recorded_when_idle(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    with Deproxy() as other:
        other.make_request(
            server.url
        )  # no chain of `deproxy` is active: recorded on the endpoint only
    assert len(server.handlings) == 1
    assert deproxy.chains == []


def test_a_chain_leaves_the_registry_when_make_request_fails(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    slow = endpoint(handler=handlers.delay(3))
    failed = deproxy.make_request(slow.url, timeout=0.2)
    assert failed.error is not None
    later = deproxy.make_request(endpoint().url)
    assert later.error is None
    assert failed.orphaned_handlings == []
    assert deproxy.chains == [failed, later]


def test_reusing_an_in_flight_tracking_id_is_refused(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    hold, arrived, release = holding_handler()

    server = endpoint(handler=hold)
    ids = {TRACKING_HEADER: "same-id"}
    thread, _ = run_in_thread(lambda: deproxy.make_request(server.url, headers=ids))
    assert arrived.wait(5)
    try:
        with pytest.raises(ValueError, match="already in flight"):
            deproxy.make_request(server.url, headers=ids)
    finally:
        release.set()
        thread.join(10)
