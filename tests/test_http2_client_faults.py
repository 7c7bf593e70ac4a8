"""HTTP/2 faults a client sends (rapid reset, CONTINUATION flood, a shut window, bad
pseudo-headers, connection-specific fields), each seen from both sides: what the client got
back, and what reached the endpoint, straight and through haproxy with ``proto h2``.

The haproxy behaviour asserted here is haproxy 2.6.12 (Debian 12's), as observed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_deproxy import (
    Deproxy,
    Endpoint,
    H2StreamError,
    H2StreamTimeout,
    HandlerContext,
    MessageChain,
    Request,
    Response,
)
from pytest_deproxy.connections import ConnectionRecord
from pytest_deproxy.h2wire import PREFACE

from .conftest import answered, deproxy_checking_its_own_errors
from .test_http2_peers import haproxy

DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
BODY = "x" * 1000


def frames(data: bytes) -> list[tuple[int, int, int]]:
    """``(type, flags, stream id)`` of each frame in one direction's bytes."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE) :]
    found, offset = [], 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        sid = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        found.append((data[offset + 3], data[offset + 4], sid))
        offset += 9 + length
    return found


def body(request: Request, context: HandlerContext) -> Response:
    return Response(200, body=BODY)


def connection_of(endpoint: Endpoint, chain: MessageChain) -> ConnectionRecord:
    [handling] = chain.handlings[-1:]
    return next(c for c in endpoint.connections if c.id == handling.connection)


def block(path: str, *rest: tuple[str, str]) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path), *rest]


BAD_PSEUDO = {
    "two :path": block("/two", (":path", "/again")),
    "no :method": [(":scheme", "http"), (":authority", "x"), (":path", "/no-method")],
    "unknown :foo": block("/foo", (":foo", "bar")),
    "uppercase name": block("/upper", ("X-Upper", "1")),
    "pseudo after regular": [
        (":method", "GET"),
        (":scheme", "http"),
        ("x-first", "1"),
        (":authority", "x"),
        (":path", "/after"),
    ],
}
CONNECTION_SPECIFIC = {
    "connection": ("connection", "keep-alive"),
    "keep-alive": ("keep-alive", "timeout=5"),
    "transfer-encoding": ("transfer-encoding", "chunked"),
    "upgrade": ("upgrade", "websocket"),
    "te other than trailers": ("te", "gzip"),
}


# -- misuse ----------------------------------------------------------------------------------


def test_h2_faults_are_refused_on_http1_and_with_bad_values(deproxy: Deproxy) -> None:
    url = "http://127.0.0.1:9/"
    with pytest.raises(ValueError, match="h2_ faults are HTTP/2's: add http2=True or 'h2c'"):
        deproxy.make_request(url, h2_rapid_reset=3)
    with pytest.raises(ValueError, match="h2_continuation_flood is a count of frames"):
        deproxy.make_request(url, http2="h2c", h2_continuation_flood=-1)
    with pytest.raises(ValueError, match="h2_rapid_reset is a count of frames"):
        deproxy.make_request(url, http2="h2c", h2_rapid_reset=True)
    with pytest.raises(TypeError, match="h2_zero_window is True or False"):
        deproxy.make_request(url, http2="h2c", h2_zero_window=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"h2_fields is a list of \(name, value\) pairs"):
        deproxy.make_request(url, http2="h2c", h2_fields=[":path"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="give at least one field"):
        deproxy.make_request(url, http2="h2c", h2_fields=[])


# -- against our own endpoint ------------------------------------------------------------------


def test_rapid_reset_at_our_endpoint_every_reset_stream_arrives(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=body)
    chain = deproxy.make_request(endpoint.url + "/burst", http2="h2c", h2_rapid_reset=20)
    assert answered(chain).body == BODY
    sent = [e for e in chain.connection_events if e.type == "RST_STREAM"]
    burst = [e.stream_id for e in sent]
    assert burst == list(range(1, 40, 2)) and {e.error for e in sent} == {"CANCEL"}
    # Our endpoint is a recorder: each reset stream arrived (HEADERS came whole, with
    # END_STREAM) and joined the chain; the RST_STREAMs are on its connection's record.
    chain.wait(handlings=21)
    assert sorted(h.stream_id or 0 for h in chain.handlings) == [*burst, 41]
    record = connection_of(endpoint, chain)
    received = [e for e in record.events if e.type == "RST_STREAM" and e.direction == "received"]
    assert [e.stream_id for e in received] == burst


def test_continuation_flood_at_our_endpoint_arrives_as_one_request(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=body)
    chain = deproxy.make_request(
        endpoint.url + "/flood", http2="h2c", headers={"X-Kept": "yes"}, h2_continuation_flood=60
    )
    assert answered(chain).body == BODY
    [handling] = chain.handlings
    assert handling.request.path == "/flood" and handling.request.headers["x-kept"] == "yes"
    on_wire = [f for f in frames(connection_of(endpoint, chain).received) if f[2] == 1]
    assert [kind for kind, _, _ in on_wire] == [HEADERS] + [CONTINUATION] * 60
    assert on_wire[0][1] & 0x4 == 0 and on_wire[-1][1] & 0x4  # END_HEADERS on the last only


def test_continuation_flood_past_64_frames_our_endpoint_goes_away() -> None:
    with deproxy_checking_its_own_errors() as deproxy:
        endpoint = deproxy.add_endpoint(http2="h2c", default_handler=body)
        chain = deproxy.make_request(
            endpoint.url + "/flood", http2="h2c", h2_continuation_flood=1000
        )
        deadline = time.monotonic() + 10
        while not endpoint.errors and time.monotonic() < deadline:
            time.sleep(0.02)
    # The h2 library our endpoint stands on (4.x) keeps at most 64 CONTINUATION frames of
    # one block: past that it is a connection error, before any request arrived.
    error = chain.error
    assert isinstance(error, H2StreamError), chain.diagram()
    assert error.goaway == ("PROTOCOL_ERROR", 0) and error.response is None
    assert chain.handlings == [] and endpoint.handlings == []
    [refusal] = endpoint.errors
    assert "Too many continuation frames" in str(refusal)
    [record] = endpoint.connections
    assert [(e.type, e.error) for e in record.events if e.type == "GOAWAY"] == [
        ("GOAWAY", "PROTOCOL_ERROR")
    ]


def test_zero_window_at_our_endpoint_the_body_never_leaves(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=body)
    chain = deproxy.make_request(
        endpoint.url + "/shut", http2="h2c", h2_zero_window=True, timeout=1
    )
    error = chain.error
    assert isinstance(error, H2StreamTimeout), chain.diagram()
    assert error.response is not None and error.response.code == "200"  # HEADERS: no window
    assert error.response.raw_body == b"" and "the head (200) came, then 0 B" in str(error)
    shut = [e for e in chain.connection_events if e.values.get("INITIAL_WINDOW_SIZE") == 0]
    assert [e.direction for e in shut] == ["sent"]
    assert not [e for e in chain.connection_events if e.type == "WINDOW_UPDATE"]
    record = connection_of(endpoint, chain)
    assert any(
        e.direction == "received" and e.values.get("INITIAL_WINDOW_SIZE") == 0
        for e in record.events
    )
    stream = chain.handlings[0].stream_id
    assert [f for f in frames(record.sent) if f[2] == stream and f[0] == DATA] == []


@pytest.mark.parametrize("name", BAD_PSEUDO)
def test_bad_pseudo_headers_reach_our_endpoint_as_sent(deproxy: Deproxy, name: str) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    fields = BAD_PSEUDO[name]
    chain = deproxy.make_request(endpoint.url, http2="h2c", h2_fields=fields)
    # Our endpoint frames what it can and records it exactly: a recorder, not a judge.
    assert answered(chain).code == "200"
    [handling] = chain.handlings
    tracking = ("deproxy-request-id", chain.request_id)
    assert handling.request.headers.items() == [*fields, tracking]
    assert chain.sent_request.headers.items() == [*fields, tracking]


def test_connection_specific_fields_reach_our_endpoint_as_sent(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    fields = block("/hop", *CONNECTION_SPECIFIC.values())
    chain = deproxy.make_request(endpoint.url, http2="h2c", h2_fields=fields)
    assert answered(chain).code == "200"
    assert chain.handlings[0].request.headers.items()[:-1] == fields


# -- through haproxy 2.6.12, proto h2 on both sides ---------------------------------------------


def test_rapid_reset_through_haproxy_no_reset_stream_goes_upstream(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=body)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(f"http://127.0.0.1:{port}/b", http2="h2c", h2_rapid_reset=50)
    # haproxy 2.6.12 drops each stream reset in the same read as its HEADERS before it
    # picks a server: of 51 streams, only the last (the request itself) went upstream, and
    # the upstream connection saw no RST_STREAM at all; the client was answered.
    assert answered(chain).body == BODY
    [handling] = chain.handlings
    assert handling.request.path == "/b"
    assert not [e for e in connection_of(backend, chain).events if e.type == "RST_STREAM"]
    assert not [e for e in chain.connection_events if e.type == "GOAWAY"]


def test_a_larger_rapid_reset_breaks_haproxy_upstream_connections(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=body)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    url = f"http://127.0.0.1:{port}"
    with process:
        chain = deproxy.make_request(url + "/b", http2="h2c", h2_rapid_reset=500, timeout=3)
        later = deproxy.make_request(url + "/later", http2="h2c", timeout=2)
    # haproxy 2.6.12 with 500 streams reset at once (fine with 50 to 200, broken from about
    # 300 on a fresh process): it opens upstream connections (two dozen) and writes most of
    # them a stray 13-byte frame where the HTTP/2 preface belongs, so the endpoint never sees
    # HTTP/2 on them; the client's connection is closed (or left unanswered) with no GOAWAY,
    # and a later request through the same haproxy gets no answer either. Nothing reached
    # the upstream as a request.
    error = chain.error
    assert isinstance(error, (H2StreamError, H2StreamTimeout)), chain.diagram()
    assert error.goaway is None and error.response is None
    assert chain.handlings == [] and later.handlings == []
    assert later.received_response is None and isinstance(later.error, H2StreamTimeout)
    opened = backend.connections
    assert len(opened) > 1
    assert any(not c.received.startswith(PREFACE) for c in opened)
    assert not any(h.stream_id is not None for h in backend.handlings)


def test_continuation_flood_through_haproxy_goes_upstream_as_one_headers(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=body)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/flood", http2="h2c", h2_continuation_flood=5000
        )
    # haproxy 2.6.12 puts a header block back together however many CONTINUATION frames it
    # came in (its limit is the block's size, not the frames' count) and sends it upstream
    # re-encoded, in one HEADERS frame.
    assert answered(chain).body == BODY
    [handling] = chain.handlings
    on_wire = frames(connection_of(backend, chain).received)
    kinds = [kind for kind, _, sid in on_wire if sid == handling.stream_id]
    assert kinds[0] == HEADERS and CONTINUATION not in kinds


def test_zero_window_through_haproxy_the_proxy_takes_the_body(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=body)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/shut", http2="h2c", h2_zero_window=True, timeout=1.5
        )
    # haproxy 2.6.12 passes the head on, and reads the whole body from upstream into its
    # buffer while its client gives it no window: the upstream stream ends normally.
    error = chain.error
    assert isinstance(error, H2StreamTimeout), chain.diagram()
    assert error.response is not None and error.response.code == "200"
    assert error.response.raw_body == b""
    [handling] = chain.handlings
    record = connection_of(backend, chain)
    data = [f for f in frames(record.sent) if f[0] == DATA and f[2] == handling.stream_id]
    assert data and data[-1][1] & 0x1  # END_STREAM: the upstream sent it all


def _refused_then_served(
    deproxy: Deproxy, tmp_path: Path, fields: list[tuple[str, str]]
) -> tuple[MessageChain, MessageChain, Endpoint]:
    backend = deproxy.add_endpoint(http2="h2c")
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    url = f"http://127.0.0.1:{port}"
    with process, deproxy.connect(url, http2="h2c") as connection:
        bad = deproxy.make_request(url, connection=connection, h2_fields=fields)
        good = deproxy.make_request(url + "/good", connection=connection)
    return bad, good, backend


@pytest.mark.parametrize("name", BAD_PSEUDO)
def test_haproxy_refuses_bad_pseudo_headers_with_a_stream_error(
    deproxy: Deproxy, tmp_path: Path, name: str
) -> None:
    bad, good, backend = _refused_then_served(deproxy, tmp_path, BAD_PSEUDO[name])
    # haproxy 2.6.12 answers each malformed header block with RST_STREAM PROTOCOL_ERROR, a
    # stream error (no GOAWAY): the same connection then serves the next request, and only
    # that one reached the upstream.
    error = bad.error
    assert isinstance(error, H2StreamError), bad.diagram()
    assert (error.reset, error.goaway, error.response) == ("PROTOCOL_ERROR", None, None)
    assert answered(good).code == "200"
    assert bad.handlings == []
    assert [h.request.path for h in backend.handlings] == ["/good"]


@pytest.mark.parametrize("name", CONNECTION_SPECIFIC)
def test_haproxy_refuses_connection_specific_fields_with_a_stream_error(
    deproxy: Deproxy, tmp_path: Path, name: str
) -> None:
    bad, good, backend = _refused_then_served(
        deproxy, tmp_path, block("/hop", CONNECTION_SPECIFIC[name])
    )
    # haproxy 2.6.12 holds to RFC 9113 8.2.2: RST_STREAM PROTOCOL_ERROR, nothing upstream.
    error = bad.error
    assert isinstance(error, H2StreamError), bad.diagram()
    assert (error.reset, error.goaway) == ("PROTOCOL_ERROR", None)
    assert answered(good).code == "200"
    assert [h.request.path for h in backend.handlings] == ["/good"]


def test_haproxy_passes_te_trailers(deproxy: Deproxy, tmp_path: Path) -> None:
    bad, good, backend = _refused_then_served(deproxy, tmp_path, block("/te", ("te", "trailers")))
    # The one value of TE that HTTP/2 allows goes through (haproxy 2.6.12).
    assert answered(bad).code == "200" and answered(good).code == "200"
    assert [h.request.path for h in backend.handlings] == ["/te", "/good"]
    assert backend.handlings[0].request.headers["te"] == "trailers"


def test_reset_after_through_haproxy_cancels_the_upstream_stream(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    def slow(request: Request, context: HandlerContext) -> Response:
        context.sleep(3)
        return Response(200)

    backend = deproxy.add_endpoint(http2="h2c", default_handler=slow)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/cancel", http2="h2c", h2_reset_after=0.5
        )
        chain.wait(handlings=1, timeout=10)
        deadline = time.monotonic() + 10
        record = connection_of(backend, chain)
        while time.monotonic() < deadline and not [
            e for e in record.events if e.type == "RST_STREAM"
        ]:
            time.sleep(0.05)
    # When the client resets its stream, haproxy 2.6.12 cancels the upstream one
    # (RST_STREAM CANCEL on the same stream id).
    sent = [e for e in chain.connection_events if e.type == "RST_STREAM"]
    assert [(e.direction, e.error) for e in sent] == [("sent", "CANCEL")]
    cancelled = [e for e in record.events if e.type == "RST_STREAM"]
    assert [(e.direction, e.stream_id, e.error) for e in cancelled] == [
        ("received", chain.handlings[0].stream_id, "CANCEL")
    ]


def test_an_idle_h2c_connection_outlives_its_timeout(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    with deproxy.connect(endpoint.url, http2="h2c", timeout=0.3) as connection:
        time.sleep(0.8)  # silence longer than the timeout: the connection is still open
        chain = deproxy.make_request(endpoint.url + "/later", connection=connection)
    assert answered(chain).code == "200"


def test_the_faults_go_over_tls_h2_too(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=body)
    url = endpoint.url.replace("127.0.0.1", "localhost")
    with deproxy.connect(url, http2=True) as connection:
        burst = deproxy.make_request(url + "/rr", connection=connection, h2_rapid_reset=5)
        flood = deproxy.make_request(url + "/cf", connection=connection, h2_continuation_flood=30)
        fields = [(":method", "GET"), (":scheme", "https"), (":path", "/x"), (":path", "/y")]
        odd = deproxy.make_request(url, connection=connection, h2_fields=fields)
    assert [answered(c).body for c in (burst, flood, odd)] == [BODY] * 3
    assert burst.wait(handlings=6) and len(burst.handlings) == 6
    assert odd.handlings[0].request.headers.get_all(":path") == ["/x", "/y"]
    assert {h.connection for c in (burst, flood, odd) for h in c.handlings} == {
        burst.handlings[0].connection
    }
