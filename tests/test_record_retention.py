"""How much of the record is kept: the latest 10,000 chains, handlings and connection records
by default, what a test holds stays whole when the caps drop it, ``None`` keeps everything,
and what is dropped is freed at once (no reference cycle left for the garbage collector).
All counts, no timings."""

from __future__ import annotations

import gc
import http.client
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_deproxy import Deproxy, Request, Response

DEFAULT = 10_000


@contextmanager
def collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_the_defaults_keep_the_latest_10_000() -> None:
    assert inspect.signature(Deproxy).parameters["keep_chains"].default == DEFAULT
    assert inspect.signature(Deproxy.add_endpoint).parameters["keep_handlings"].default == DEFAULT


def test_by_default_a_long_run_keeps_only_the_latest_records() -> None:
    extra = 25
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        connection = deproxy.connect(endpoint.url)
        first = deproxy.make_request(endpoint.url, connection=connection)
        for _ in range(DEFAULT + extra - 1):
            deproxy.make_request(endpoint.url, connection=connection)
        chains = deproxy.chains
        assert len(chains) == DEFAULT
        assert first not in chains
        handlings = endpoint.handlings
        assert len(handlings) == DEFAULT
        assert handlings[0].request_id == chains[0].request_id
        [record] = endpoint.connections
        assert len(record.handlings) == DEFAULT
        assert record.handlings[-1] is handlings[-1]
        # What the caps dropped is still whole for the test that held it.
        assert first.received_response is not None
        assert first.received_response.code == "200"
        [handling] = first.handlings
        assert handling.response is not None and handling.done
        connection.close()


def test_a_held_chain_stays_whole_after_the_caps_drop_its_records() -> None:
    with Deproxy(keep_chains=2) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=3)
        held = deproxy.make_request(endpoint.url + "/first", request_body="kept")
        for number in range(10):
            deproxy.make_request(f"{endpoint.url}/{number}")
        assert [chain.sent_request.path for chain in deproxy.chains] == ["/8", "/9"]
        assert [h.request.path for h in endpoint.handlings] == ["/7", "/8", "/9"]
        assert [c.handlings[0].request.path for c in endpoint.connections] == ["/7", "/8", "/9"]
        [handling] = held.handlings
        assert handling.request.path == "/first"
        assert handling.request.body == "kept"
        assert handling.raw.endswith(b"\r\n\r\nkept")
        assert handling.response is not None and handling.response.code == "200"
        diagram = held.diagram()
        assert "--> GET /first" in diagram
        assert "from 127.0.0.1:" in diagram  # its connection's facts, though the record is gone


def test_a_late_request_for_a_forgotten_chain_is_filed_nowhere() -> None:
    with Deproxy(keep_chains=1) as deproxy:
        endpoint = deproxy.add_endpoint()
        forgotten = deproxy.make_request(endpoint.url)
        remembered = deproxy.make_request(endpoint.url)
        late = deproxy.make_request(
            endpoint.url, headers={"Deproxy-Request-ID": forgotten.request_id}
        )
        assert late.error is None
        assert len(forgotten.handlings) == 1  # not grown by the request reusing its id
        assert len(remembered.handlings) == 1
        assert deproxy.chains == [late]


def test_none_keeps_every_chain_handling_and_connection() -> None:
    count = 40
    with Deproxy(keep_chains=None) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=None)
        chains = [deproxy.make_request(endpoint.url) for _ in range(count)]
        assert deproxy.chains == chains
        assert len(endpoint.handlings) == count
        assert len(endpoint.connections) == count


def test_keeping_nothing_still_answers_and_fills_the_chain() -> None:
    with Deproxy(keep_chains=0) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=0)
        chain = deproxy.make_request(endpoint.url)
        assert chain.received_response is not None
        assert chain.received_response.code == "200"
        assert len(chain.handlings) == 1
        assert deproxy.chains == [] and endpoint.handlings == [] and endpoint.connections == []


@pytest.mark.parametrize("bad", [-1, "10", 2.5, True])
def test_a_cap_that_is_not_a_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="keep_chains is how many to keep"):
        Deproxy(keep_chains=bad)  # type: ignore[arg-type]
    with Deproxy() as deproxy, pytest.raises(ValueError, match="keep_handlings is how many"):
        deproxy.add_endpoint(keep_handlings=bad)  # type: ignore[arg-type]


def test_a_dropped_record_is_freed_at_once_not_left_to_the_collector() -> None:
    # Fresh connections: each drops a connection record and its handling from the caps. Were
    # they in a reference cycle (handling -> record -> handling), each would wait for the
    # cyclic garbage collector; freed by reference counting, none does.
    count = 30
    with Deproxy(keep_chains=2) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=2)
        for _ in range(5):
            deproxy.make_request(endpoint.url)
        with collector_paused():
            for _ in range(count):
                deproxy.make_request(endpoint.url)
            unreachable = gc.collect()
    assert unreachable < count, f"{unreachable} objects in cycles after {count} requests"


def test_a_kept_request_costs_the_collector_few_objects() -> None:
    # The record of a request: its chain, its handling, two requests and two responses with
    # their headers, and the chain's list of handlings. No empty lists or trailers besides.
    count = 200
    with Deproxy(keep_chains=None) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=None)
        connection = deproxy.connect(endpoint.url)
        for _ in range(20):
            deproxy.make_request(endpoint.url, connection=connection)
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(count):
            deproxy.make_request(endpoint.url, connection=connection)
        gc.collect()
        per_request = (len(gc.get_objects()) - before) / count
        connection.close()
    assert per_request <= 12, f"{per_request:.1f} GC-tracked objects kept per request"


def test_an_orphan_dropped_by_its_endpoint_stays_in_the_chain_that_saw_it() -> None:
    with Deproxy(keep_chains=2) as deproxy:
        backend = deproxy.add_endpoint(name="backend", keep_handlings=1)

        def ask_backend(request: Request) -> Response:
            # Without a tracking id: an orphan of the chain in flight.
            asking = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
            try:
                asking.request("GET", request.path)
                return Response(asking.getresponse().status)
            finally:
                asking.close()

        front = deproxy.add_endpoint(name="front", default_handler=ask_backend)
        chain = deproxy.make_request(front.url + "/via")
        for _ in range(3):
            deproxy.make_request(backend.url)
        assert [h.request.path for h in backend.handlings] == ["/"]
        [orphan] = chain.orphaned_handlings
        assert orphan.endpoint is backend and orphan.request.path == "/via"
        assert isinstance(orphan.response, Response) and orphan.response.code == "200"


def test_many_connections_hold_no_more_handlings_than_the_endpoint_keeps() -> None:
    # Each persistent connection's record keeps only what the endpoint still keeps, so a load
    # spread over many keep-alive connections costs no more than the endpoint's cap.
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=6)
        connections = [deproxy.connect(endpoint.url) for _ in range(3)]
        for _ in range(5):
            for connection in connections:
                deproxy.make_request(endpoint.url, connection=connection)
        kept = endpoint.handlings
        assert len(kept) == 6
        held = [h for record in endpoint.connections for h in record.handlings]
        assert len(held) == len(kept)
        assert {id(h) for h in held} == {id(h) for h in kept}
        for record in endpoint.connections:
            assert [h.connection for h in record.handlings] == [record.id] * 2
        for connection in connections:
            connection.close()
