"""The sequence diagram and the HAR export show an HTTP/2 chain's connection frames
(SETTINGS, RST_STREAM, GOAWAY, PING...) where they happened, on the lanes of the client and
of the endpoints whose connections the chain used, and nowhere else."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pytest_deproxy import Deproxy, Endpoint, HandlerContext, Request, Response, handlers, to_har

from .conftest import answered, eventually
from .test_http2_peers import haproxy


def normalised(diagram: str) -> list[str]:
    """The diagram without its SETTINGS lines (both sides send theirs at once: their order
    is a race), ports, connection numbers and timings made stable."""
    lines = [line for line in diagram.splitlines()[1:] if "SETTINGS" not in line]
    text = "\n".join(lines)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"conn-\d+", "conn-N", text)
    return text.splitlines()


def answer_after_the_client_left(request: Request, context: HandlerContext) -> Response:
    """Answer only once the client's RST_STREAM and GOAWAY are on this connection's record,
    so the diagram's order does not depend on timing."""
    endpoint = context.endpoint
    assert isinstance(endpoint, Endpoint)
    [record] = [c for c in endpoint.connections if c.id == context.connection]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        types = {e.type for e in record.events if e.direction == "received"}
        if {"RST_STREAM", "GOAWAY"} <= types:
            break
        time.sleep(0.02)
    return Response(200)


def client_left(endpoint: Endpoint) -> bool:
    """The client's RST_STREAM and GOAWAY are both on the endpoint's record (the handling may
    be finished at the reset, before the GOAWAY that follows it arrives)."""
    received = {e.type for c in endpoint.connections for e in c.events if e.direction == "received"}
    return {"RST_STREAM", "GOAWAY"} <= received


def test_the_diagram_of_a_reset_stream_shows_the_frames_in_time(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=answer_after_the_client_left)
    chain = deproxy.make_request(endpoint.url + "/reset-me", http2="h2c", h2_reset_after=1.0)
    chain.wait(handlings=1, timeout=15)
    eventually(lambda: client_left(endpoint))
    diagram = chain.diagram()
    # The client's GOAWAY follows its reset as it closes the connection, at the chain's end:
    # inside the chain's time or just after it, as the threads fall; it is left out here.
    assert [line for line in normalised(diagram) if "GOAWAY" not in line] == [
        "client          --> GET /reset-me   Host: 127.0.0.1:PORT | no body",
        "  Endpoint-1    --> GET /reset-me   conn-N s1 | from 127.0.0.1:PORT | no body",
        "client          ==> RST_STREAM s1 CANCEL",
        "  Endpoint-1    ==> RST_STREAM s1 CANCEL   conn-N",
        # The handler's answer came after the reset: nothing was sent, and the record says so.
        "  Endpoint-1     xx the client reset stream 1 (CANCEL) before the answer was sent"
        "   conn-N s1",
        "client           xx StreamGone: stream 1 reset (RST_STREAM CANCEL) after 1.0 s, "
        "as h2_reset_after asked",
    ], diagram
    # SETTINGS are shown by what they change from RFC 9113's initial values, one a line,
    # and their acks are left out.
    settings = [line for line in diagram.splitlines() if "SETTINGS" in line]
    assert (
        "client          ==> SETTINGS MAX_CONCURRENT_STREAMS=100, MAX_HEADER_LIST_SIZE=65536"
        in (settings)
    )
    assert len(settings) == 4 and not any("ACK" in line for line in settings)


def test_a_rapid_reset_burst_is_one_line_per_side(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    chain = deproxy.make_request(endpoint.url + "/b", http2="h2c", h2_rapid_reset=10)
    answered(chain)
    chain.wait(handlings=11)
    lines = normalised(chain.diagram())
    assert "client          ==> RST_STREAM on s1..s19 CANCEL (10 frames)" in lines
    assert "  Endpoint-1    ==> RST_STREAM on s1..s19 CANCEL (10 frames)   conn-N" in lines
    assert sum("RST_STREAM" in line for line in lines) == 2


def slow(request: Request, context: HandlerContext) -> Response:
    context.sleep(3)
    return Response(200)


def test_only_the_chains_own_streams_and_time_are_shown(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=slow)
    quick = {endpoint: handlers.simple}
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        # The SETTINGS both ways are read before this answer: none is left for later chains.
        answered(deproxy.make_request(endpoint.url, connection=connection, handlers=quick))
        reset = deproxy.make_request(
            endpoint.url + "/slow", connection=connection, h2_reset_after=0.3
        )
        later = deproxy.make_request(endpoint.url + "/fast", connection=connection, handlers=quick)
    answered(later)
    shown = f"{reset.diagram()}\n{later.diagram()}"
    assert "RST_STREAM s3" in reset.diagram(), shown
    # One connection, both chains: the later chain shows its own stream (s5) and no frame
    # of the earlier one, nor the SETTINGS exchanged before it started.
    assert [h.connection for h in later.handlings] == [h.connection for h in reset.handlings], shown
    assert "RST_STREAM" not in later.diagram() and "SETTINGS" not in later.diagram(), shown
    assert "conn-" in later.diagram() and " s5 " in later.diagram(), shown


def test_through_haproxy_each_side_shows_its_own_connection(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=slow)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/via", http2="h2c", h2_reset_after=0.5
        )
        chain.wait(handlings=1, timeout=10)
    lines = normalised(chain.diagram())
    # The client's RST_STREAM on its stream to haproxy, then haproxy 2.6.12's own
    # RST_STREAM CANCEL on the upstream stream, on the endpoint's lane.
    client_reset = lines.index("client          ==> RST_STREAM s1 CANCEL")
    upstream_reset = lines.index(
        f"  Endpoint-1    ==> RST_STREAM s{chain.handlings[0].stream_id} CANCEL   conn-N"
    )
    arrived = next(i for i, line in enumerate(lines) if line.startswith("  Endpoint-1    -->"))
    assert arrived < client_reset < upstream_reset, "\n".join(lines)


def test_har_entries_carry_the_http2_events(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=answer_after_the_client_left)
    chain = deproxy.make_request(endpoint.url + "/har", http2="h2c", h2_reset_after=0.3)
    chain.wait(handlings=1, timeout=15)
    eventually(lambda: client_left(endpoint))
    client, handled = to_har(chain)["log"]["entries"]
    sent = [e for e in client["_http2Events"] if e["type"] == "RST_STREAM"]
    assert [(e["direction"], e["streamId"], e["text"]) for e in sent] == [
        ("sent", 1, "RST_STREAM s1 CANCEL")
    ]
    # The connection's own frames (stream 0) while the chain ran, and the stream's. Not the
    # client's GOAWAY: it follows the reset that ended the chain, and comes inside the
    # chain's window or after it as the two threads are scheduled.
    received = [(e["direction"], e["text"]) for e in handled["_http2Events"]]
    settings = ("received", "SETTINGS MAX_CONCURRENT_STREAMS=100, MAX_HEADER_LIST_SIZE=65536")
    reset = ("received", "RST_STREAM s1 CANCEL")
    assert settings in received and reset in received
    assert received.index(settings) < received.index(reset)
    assert handled["request"]["httpVersion"] == "HTTP/2"
    assert handled["response"]["status"] == 0  # the reset came first: no answer was sent


def test_an_http1_chain_has_no_frame_lines(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint()
    chain = deproxy.make_request(endpoint.url + "/h1")
    assert chain.connection_events == ()
    assert not any("==>" in line or "<==" in line for line in chain.diagram().splitlines())
