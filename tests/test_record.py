"""The record on its own: chains, handlings and the registry that ties them, with no socket."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_deproxy import TRACKING_HEADER, Handling, MessageChain, Request, Response
from pytest_deproxy.registry import ChainRegistry


@dataclass(frozen=True)
class Place:
    name: str = "backend"
    url: str = "http://127.0.0.1:1"


def handling(request_id: str | None = None, path: str = "/") -> Handling:
    headers = {} if request_id is None else {TRACKING_HEADER: request_id}
    return Handling(
        Place(), Request("GET", path, headers), "conn-1", response=Response(200), done=True
    )


def chain(request_id: str) -> MessageChain:
    return MessageChain(request_id, Request("GET", "/", {TRACKING_HEADER: request_id}))


def test_a_tracked_handling_joins_its_own_chain_only() -> None:
    registry: ChainRegistry[str] = ChainRegistry()
    first, second = chain("a"), chain("b")
    with registry.in_flight(first, "routing a"), registry.in_flight(second, "routing b"):
        registry.record(handling("b"))
        assert registry.routing_for("a") == "routing a"

    assert (len(first.handlings), len(second.handlings)) == (0, 1)
    assert first.orphaned_handlings == second.orphaned_handlings == []


def test_an_untracked_handling_is_an_orphan_of_every_chain_in_flight() -> None:
    registry: ChainRegistry[None] = ChainRegistry()
    first, second, later = chain("a"), chain("b"), chain("c")
    with registry.in_flight(first, None), registry.in_flight(second, None):
        registry.record(handling(None, "/health"))
    with registry.in_flight(later, None):
        pass

    assert [h.request.path for h in first.orphaned_handlings] == ["/health"]
    assert [h.request.path for h in second.orphaned_handlings] == ["/health"]
    assert later.orphaned_handlings == []


def test_two_calls_in_flight_with_one_id_are_refused() -> None:
    registry: ChainRegistry[None] = ChainRegistry()
    with (
        registry.in_flight(chain("same"), None),
        pytest.raises(ValueError, match="already in flight"),
        registry.in_flight(chain("same"), None),
    ):
        pass


def test_returned_chains_are_kept_in_order_up_to_the_cap() -> None:
    registry: ChainRegistry[None] = ChainRegistry(keep_chains=2)
    for request_id in "abc":
        with registry.in_flight(chain(request_id), None):
            pass

    kept = registry.chains
    assert [c.request_id for c in kept] == ["b", "c"]
    kept.clear()  # a snapshot: the registry's own list is untouched
    assert len(registry.chains) == 2
    assert registry.routing_for("c") is None


def test_the_diagram_shows_client_endpoint_and_orphans() -> None:
    traced = chain("a")
    traced.handlings.append(handling("a", "/things"))
    traced.orphaned_handlings.append(handling(None, "/auth"))
    traced.received_response = Response(200)

    text = str(traced)
    assert "GET /things" in text and "backend" in text
    assert "orphans" in text and "GET /auth" in text
    assert "client          <-- 200 OK" in text
