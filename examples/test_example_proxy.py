"""Testing a reverse proxy from both sides: the example proxy between Deproxy and its endpoints.

Each test sends a request on the left with ``deproxy.make_request`` and looks at the whole
``MessageChain``: what was sent, what each endpoint received and answered, what came back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pytest_deproxy import Deproxy, Endpoint, MessageChain, Request, Response, handlers

from .example_proxy import ExampleProxy

Proxy = Callable[..., ExampleProxy]
EndpointFactory = Callable[..., Endpoint]


def test_the_request_is_forwarded_and_the_answer_comes_back(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    server = endpoint("server", Response(201, "Made", {"X-From": "server"}, "made it"))
    proxy = example_proxy(server.url)

    chain = deproxy.make_request(proxy.url + "/things?colour=red", "POST", request_body="a thing")

    assert len(chain.handlings) == 1
    received = chain.handlings[0].request
    assert (received.method, received.path, received.body) == (
        "POST",
        "/things?colour=red",
        "a thing",
    )
    response = chain.received_response
    assert response is not None
    assert (response.code, response.message, response.body) == ("201", "Made", "made it")
    assert response.headers["X-From"] == "server"


def test_the_proxy_adds_forwarding_headers_and_drops_hop_by_hop_ones(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    server = endpoint()
    proxy = example_proxy(server.url)

    chain = deproxy.make_request(
        proxy.url, headers={"Keep-Alive": "timeout=5", "X-Forwarded-For": "10.1.1.1"}
    )

    sent = chain.sent_request.headers
    received = chain.handlings[0].request.headers
    assert received["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1"
    assert received["Via"] == "1.1 example-proxy"
    assert received["Host"] == f"127.0.0.1:{server.port}"  # rewritten from the proxy's address
    assert "Keep-Alive" in sent
    assert "Keep-Alive" not in received
    assert chain.received_response is not None
    assert chain.received_response.headers["Via"] == "1.1 example-proxy"


def test_the_proxy_reuses_its_connection_to_the_upstream(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    server = endpoint()
    proxy = example_proxy(server.url)

    first = deproxy.make_request(proxy.url + "/one")
    second = deproxy.make_request(proxy.url + "/two")

    # Two client connections on the left, one upstream connection on the right.
    assert first.handlings[0].connection == second.handlings[0].connection


def test_the_proxy_answers_502_when_the_upstream_is_gone(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    server = endpoint()
    proxy = example_proxy(server.url)
    server.shutdown()

    chain = deproxy.make_request(proxy.url)

    assert chain.handlings == []
    assert chain.received_response is not None
    assert chain.received_response.code == "502"


def test_auth_calls_are_orphans_of_every_chain_in_flight(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    """The picture in the README: two clients at once, a proxy that consults an auth service.

    The auth calls carry no tracking header: each is filed, as it arrives, as an orphan of
    every chain in flight at that moment; the forwarded requests carry it and land in their
    own chain. Alice's auth call is held until Bob's has arrived, and Bob starts only once
    Alice's has arrived, so the order is fixed: Alice's call finds Alice's chain alone in
    flight, Bob's finds both.
    """
    alice_checked, bob_checked = threading.Event(), threading.Event()

    def auth_handler(request: Request) -> Response:
        if request.headers["Authorization"] == "Bearer alice":
            alice_checked.set()
            bob_checked.wait(10)  # Alice's chain stays in flight until Bob's call arrived
        else:
            bob_checked.set()
        return Response(204)

    auth = endpoint("auth", auth_handler)
    server = endpoint("server")
    proxy = example_proxy(server.url, auth=auth.url)
    chains: dict[str, MessageChain] = {}

    def client(name: str) -> None:
        chains[name] = deproxy.make_request(proxy.url, headers={"Authorization": f"Bearer {name}"})

    alice = threading.Thread(target=client, args=("alice",))
    alice.start()
    assert alice_checked.wait(10)
    client("bob")
    alice.join(20)

    orphans = {}
    for name, chain in chains.items():
        chain.wait(handlings=1)  # every handling done: nothing is still being recorded
        assert [h.endpoint.name for h in chain.handlings] == ["server"]
        assert chain.handlings[0].request.headers["Authorization"] == f"Bearer {name}"
        assert {h.endpoint.name for h in chain.orphaned_handlings} == {"auth"}
        orphans[name] = [h.request.headers["Authorization"] for h in chain.orphaned_handlings]
    assert orphans == {"alice": ["Bearer alice", "Bearer bob"], "bob": ["Bearer bob"]}
    # Bob's auth call is one handling, filed in both chains.
    assert chains["alice"].orphaned_handlings[1] is chains["bob"].orphaned_handlings[0]


def test_a_refusing_auth_service_stops_the_request_at_the_proxy(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Proxy
) -> None:
    auth = endpoint("auth", handlers.by_method({"POST": Response(204)}))  # GET gets 405
    server = endpoint("server")
    proxy = example_proxy(server.url, auth=auth.url)

    chain = deproxy.make_request(proxy.url)

    assert chain.handlings == []
    assert [h.response.code for h in chain.orphaned_handlings if h.response] == ["405"]
    assert chain.received_response is not None
    assert chain.received_response.code == "403"
