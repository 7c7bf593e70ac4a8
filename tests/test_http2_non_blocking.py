"""A handler marked ``handlers.non_blocking`` answers HTTP/2 streams as it answers HTTP/1.1
requests: it may take a context, and return a fault (carried out, as any handler's) or
nonsense (reported, as any handler's, in its own name)."""

from __future__ import annotations

import pytest

from pytest_deproxy import Deproxy, HandlerContext, Request, Response, handlers
from pytest_deproxy.errors import HandlerError
from pytest_deproxy.h2faults import rst_stream

from .conftest import deproxy_checking_its_own_errors


@handlers.non_blocking
def with_context(request: Request, context: HandlerContext) -> Response:
    return Response(201, body=f"on {context.connection}")


@handlers.non_blocking
def resets(request: Request) -> object:
    return rst_stream("REFUSED_STREAM")


@handlers.non_blocking
def nonsense(request: Request) -> object:
    return "not a response"


@pytest.mark.parametrize("http2", ["h2c", False])
def test_a_non_blocking_handler_takes_its_context(deproxy: Deproxy, http2: str | bool) -> None:
    endpoint = deproxy.add_endpoint(http2=http2, default_handler=with_context)
    chain = deproxy.make_request(endpoint.url, http2=http2)
    (handling,) = chain.handlings
    assert chain.received_response is not None
    assert chain.received_response.code == "201"
    assert chain.received_response.body == f"on {handling.connection}"


def test_a_non_blocking_handler_returns_an_http2_fault(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=resets)
    chain = deproxy.make_request(endpoint.url, http2="h2c")
    assert chain.received_response is None
    assert "the server reset stream 1 (REFUSED_STREAM)" in str(chain.error)
    (handling,) = endpoint.handlings
    assert handling.response is None and handling.done
    (record,) = endpoint.connections
    sent = [(e.type, e.stream_id, e.error) for e in record.events if e.direction == "sent"]
    assert ("RST_STREAM", 1, "REFUSED_STREAM") in sent


def test_a_non_blocking_handler_that_returns_nonsense_is_reported_by_name() -> None:
    with deproxy_checking_its_own_errors() as deproxy:
        endpoint = deproxy.add_endpoint(http2="h2c", default_handler=nonsense)
        chain = deproxy.make_request(endpoint.url, http2="h2c")
        assert chain.received_response is not None
        assert chain.received_response.code == "500"
        (error,) = deproxy.errors
        assert isinstance(error, HandlerError)
        assert "handler 'nonsense' returned str" in str(error)
