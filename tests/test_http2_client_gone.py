"""``context.client_gone`` on HTTP/2: a handler running on its stream's own thread sees its
client reset that stream, or close the connection, while it runs; the other streams of the
connection are not gone. Through haproxy this is how a test sees a proxy cancel upstream."""

from __future__ import annotations

import threading
from pathlib import Path

from pytest_deproxy import Deproxy, HandlerContext, Request, Response

from .conftest import answered, eventually
from .test_http2_peers import haproxy
from .test_record_peers import until_client_gone


def test_a_handler_sees_the_client_reset_its_stream(deproxy: Deproxy) -> None:
    seen: list[bool] = []
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=until_client_gone(seen))

    chain = deproxy.make_request(endpoint.url + "/slow", http2="h2c", h2_reset_after=0.3)

    eventually(lambda: seen)
    assert seen == [True]
    (handling,) = chain.handlings
    eventually(lambda: handling.done)
    assert handling.response is None
    assert handling.action == "the client reset stream 1 (CANCEL) before the answer was sent"


def test_the_other_streams_of_the_connection_are_not_gone(deproxy: Deproxy) -> None:
    """One stream is reset while another runs beside it on the same connection: only the
    reset one's handler is told."""
    seen: dict[str, bool] = {}
    both_running = threading.Barrier(2, timeout=10)

    def handler(request: Request, context: HandlerContext) -> Response:
        both_running.wait()
        if request.path == "/reset":
            while not context.client_gone:
                context.sleep(0.01)
        else:
            context.sleep(0.6)  # past the other stream's reset
        seen[request.path] = context.client_gone
        return Response(200)

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handler)
    kept: list[object] = []
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        beside = threading.Thread(
            target=lambda: kept.append(
                deproxy.make_request(endpoint.url + "/kept", connection=connection)
            )
        )
        beside.start()
        reset = deproxy.make_request(
            endpoint.url + "/reset", connection=connection, h2_reset_after=0.2
        )
        beside.join(10)

    assert reset.received_response is None
    (chain,) = kept
    assert answered(chain).code == "200"  # type: ignore[arg-type]
    eventually(lambda: len(seen) == 2)
    assert seen == {"/reset": True, "/kept": False}


def test_a_handler_sees_the_client_close_the_connection(deproxy: Deproxy) -> None:
    seen: list[bool] = []
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=until_client_gone(seen))
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chain = deproxy.make_request(endpoint.url + "/slow", connection=connection, timeout=0.3)
        assert chain.received_response is None  # the client gave up waiting, reset nothing
        assert seen == []  # and the handler still waits
    # Leaving the block closed the connection (GOAWAY, then the socket): that is what the
    # handler is told, with no reset of its stream.
    eventually(lambda: seen)
    assert seen == [True]
    (record,) = endpoint.connections
    assert record.closed_by == "client"
    assert "RST_STREAM" not in {event.type for event in record.events}


def test_haproxy_cancelling_upstream_reaches_the_handler(deproxy: Deproxy, tmp_path: Path) -> None:
    seen: list[bool] = []
    backend = deproxy.add_endpoint(http2="h2c", default_handler=until_client_gone(seen))
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/cancel", http2="h2c", h2_reset_after=0.5
        )
        eventually(lambda: seen)
    # haproxy resets the upstream stream when its client resets its own: the handler is told
    # while it runs, and nothing it returned afterwards went out.
    assert seen == [True]
    (handling,) = chain.handlings
    eventually(lambda: handling.done)
    assert handling.response is None
    assert handling.action is not None and "reset stream" in handling.action
