"""HTTP/2 endpoints and client, in process: curl --http2 and httpx as independent clients,
make_request(http2=...) and a multiplexed connection, trailers, gRPC, and HTTP/2 faults."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable

import httpx
import pytest

from pytest_deproxy import (
    Deproxy,
    HandlerContext,
    MessageChain,
    Request,
    Response,
    handlers,
    to_har,
)
from pytest_deproxy.connections import FrameEvent

from .conftest import answered, eventually


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_tls_endpoint_serves_h2_over_alpn_to_curl(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=handlers.echo)
    result = curl("--http2", "--cacert", deproxy.ca.cert_pem_path, endpoint.url + "/a?b=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200")
    [handling] = endpoint.handlings
    assert handling.stream_id == 1
    assert handling.request.http_version == "2"
    assert (handling.request.method, handling.request.path) == ("GET", "/a?b=1")
    names = [name for name, _ in handling.request.headers.items()]
    assert names[:4] == [":method", ":path", ":scheme", ":authority"]  # curl's order, kept
    assert handling.request.headers[":scheme"] == "https"
    assert handling.response is not None and handling.response.http_version == "2"
    [record] = endpoint.connections
    assert record.tls is not None and record.tls.alpn == "h2"
    assert handling.connection == record.id
    kinds = {(event.direction, event.type) for event in record.events}
    assert {("sent", "SETTINGS"), ("received", "SETTINGS")} <= kinds
    settings = next(e for e in record.events if e.direction == "received" and e.type == "SETTINGS")
    assert "INITIAL_WINDOW_SIZE" in settings.values  # curl's, with their values


def test_tls_h2_endpoint_still_serves_http11_to_clients_without_h2(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True)
    result = curl("--http1.1", "--cacert", deproxy.ca.cert_pem_path, endpoint.url + "/one")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200")
    [handling] = endpoint.handlings
    assert handling.stream_id is None and handling.request.http_version == "1.1"
    assert (endpoint.connections[0].tls or pytest.fail("no TLS")).alpn in (None, "http/1.1")
    assert endpoint.connections[0].events == []


def test_h2c_prior_knowledge_and_upgrade_from_curl(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    prior = curl("--http2-prior-knowledge", endpoint.url + "/prior")
    assert prior.returncode == 0, prior.stderr
    assert prior.stdout.startswith("HTTP/2 200")
    upgraded = curl("--http2", "-d", "hello", endpoint.url + "/upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("HTTP/1.1 101 Switching Protocols")
    assert "HTTP/2 200" in upgraded.stdout and upgraded.stdout.endswith("hello")
    first, second = endpoint.handlings
    assert (first.request.path, first.stream_id, first.request.http_version) == ("/prior", 1, "2")
    # The request that asked for the upgrade is stream 1, as it arrived (HTTP/1.1).
    assert (second.request.path, second.stream_id, second.request.body) == ("/upgrade", 1, "hello")
    assert second.request.headers.has_token("Upgrade", "h2c")
    assert second.response is not None and second.response.http_version == "2"


def test_h2c_endpoint_still_serves_plain_http11(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    chain = deproxy.make_request(endpoint.url + "/plain")
    assert chain.received_response is not None and answered(chain).code == "200"
    assert endpoint.handlings[0].stream_id is None


def test_httpx_multiplexes_streams_on_one_connection(deproxy: Deproxy) -> None:
    gate = threading.Barrier(4, timeout=10)

    def together(
        request: Request, context: HandlerContext
    ) -> Response:  # answers only once four streams are in: multiplexed
        gate.wait()
        return Response(200, body=request.path)

    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=together)
    context = ssl.create_default_context(cafile=deproxy.ca.cert_pem_path)

    # httpx's async client, on one event loop: its sync client shares one HTTP/2 connection
    # between threads without locking the h2 state or the TLS object, so under load it sends
    # streams out of order or reads a spurious end of file, whatever the server does.
    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=context, timeout=10) as client:
            return await asyncio.gather(*(client.get(f"{endpoint.url}/s{n}") for n in range(4)))

    results = asyncio.run(fetch_all())
    assert sorted(r.text for r in results) == ["/s0", "/s1", "/s2", "/s3"]
    assert {r.http_version for r in results} == {"HTTP/2"}
    handlings = endpoint.handlings
    assert len({h.connection for h in handlings}) == 1
    assert sorted(h.stream_id or 0 for h in handlings) == [1, 3, 5, 7]


def test_http2_option_is_checked(deproxy: Deproxy) -> None:
    with pytest.raises(ValueError, match="add tls=True"):
        deproxy.add_endpoint(http2=True)
    with pytest.raises(ValueError, match="'h2c'"):
        deproxy.add_endpoint(http2="h3")


# -- the client side -------------------------------------------------------------------------


def test_make_request_over_h2_and_h2c(deproxy: Deproxy) -> None:
    tls = deproxy.add_endpoint(tls=True, http2=True, default_handler=handlers.echo)
    clear = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    chain = deproxy.make_request(tls.url + "/t", method="POST", request_body="ping", http2=True)
    assert chain.error is None
    response = chain.received_response
    assert response is not None and response.http_version == "2" and response.body == "ping"
    assert response.headers[":status"] == "200"
    [handling] = chain.handlings  # the tracking header is an ordinary field: attributed
    assert (handling.stream_id, handling.request.headers[":authority"]) == (1, tls.url[8:])
    assert "host" not in handling.request.headers  # folded into :authority, as RFC 9113 asks
    chain = deproxy.make_request(clear.url + "/c", http2="h2c")
    assert chain.error is None and answered(chain).code == "200"
    assert chain.handlings[0].request.headers[":scheme"] == "http"


def test_h2_request_to_a_server_without_h2_is_a_clear_error(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True)  # no ALPN h2 offered
    chain = deproxy.make_request(endpoint.url, http2=True)
    assert chain.received_response is None
    assert "did not agree to HTTP/2 over ALPN" in str(chain.error)
    with pytest.raises(ValueError, match="https URL"):
        deproxy.make_request("http://127.0.0.1:1/", http2=True)
    with pytest.raises(ValueError, match="HTTP/1 ways of sending"):
        deproxy.make_request(endpoint.url, http2=True, chunked=True)


def test_connect_multiplexes_threads_on_one_connection(deproxy: Deproxy) -> None:
    gate = threading.Barrier(8, timeout=10)

    def together(
        request: Request, context: HandlerContext
    ) -> Response:  # every stream waits for all eight: they overlap
        gate.wait()
        return Response(200, body=request.path)

    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=together)
    chains = []
    with deproxy.connect(endpoint.url, http2=True) as connection:
        threads = [
            threading.Thread(
                target=lambda n=n: chains.append(
                    deproxy.make_request(f"{endpoint.url}/m{n}", connection=connection)
                )
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        events = connection.events
    assert [c.error for c in chains] == [None] * 8
    assert sorted(answered(c).body for c in chains) == [f"/m{n}" for n in range(8)]
    handlings = [h for c in chains for h in c.handlings]
    assert len({h.connection for h in handlings}) == 1
    assert sorted(h.stream_id or 0 for h in handlings) == list(range(1, 17, 2))
    assert {(e.direction, e.type) for e in events} >= {
        ("sent", "SETTINGS"),
        ("received", "SETTINGS"),
    }


def test_h2_through_a_forward_proxy_connect_tunnel(
    deproxy: Deproxy, tinyproxy: Callable[..., str]
) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=handlers.echo)
    proxy = tinyproxy(connect_ports=[endpoint.port])
    chain = deproxy.make_request(endpoint.url + "/via", http2=True, proxy=proxy)
    assert chain.error is None, chain.error
    assert answered(chain).http_version == "2"
    assert chain.handlings[0].stream_id == 1
    assert (endpoint.connections[0].tls or pytest.fail("no TLS")).alpn == "h2"


def test_h2_reset_after_resets_the_stream_and_both_sides_record_it(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c", default_handler=handlers.delay(3, Response(200, body="late"))
    )
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chain = deproxy.make_request(
            endpoint.url + "/slow", connection=connection, h2_reset_after=0.2
        )
        assert chain.received_response is None
        assert "reset (RST_STREAM CANCEL) after 0.2 s" in str(chain.error)
        sent = [e for e in connection.events if e.type == "RST_STREAM"]
        assert [(e.direction, e.stream_id, e.error) for e in sent] == [("sent", 1, "CANCEL")]
        # The connection carries on after one stream was reset.
        assert deproxy.make_request(endpoint.url + "/next", connection=connection).error is None

    def reset_seen() -> bool:
        return any(e.type == "RST_STREAM" for e in endpoint.connections[0].events)

    eventually(reset_seen)
    [event] = [e for e in endpoint.connections[0].events if e.type == "RST_STREAM"]
    assert (event.direction, event.stream_id, event.code) == ("received", 1, 8)


# -- trailers and gRPC -------------------------------------------------------------------------


def test_trailers_both_ways(deproxy: Deproxy) -> None:
    def answer(request: Request) -> Response:
        assert request.trailers["x-checksum"] == "abc"
        return Response(200, body="ok", trailers={"x-served": "yes"})

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=answer)
    chain = deproxy.make_request(
        endpoint.url,
        method="POST",
        request_body="data",
        http2="h2c",
        trailers={"X-Checksum": "abc"},
    )
    assert chain.error is None
    assert answered(chain).trailers.items() == [("x-served", "yes")]
    [handling] = chain.handlings
    assert handling.request.trailers.items() == [("x-checksum", "abc")]
    assert handling.response is not None and handling.response.trailers["x-served"] == "yes"


def test_grpc_unary_call_answered_with_trailers(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        tls=True, http2=True, default_handler=handlers.grpc(b"\x08\x2a", status=0)
    )
    chain = deproxy.make_request(
        endpoint.url + "/pkg.Service/Method",
        method="POST",
        headers={"content-type": "application/grpc", "te": "trailers"},
        request_body=handlers.grpc_frame(b"\x08\x01"),
        http2=True,
    )
    response = chain.received_response
    assert response is not None and response.headers["content-type"] == "application/grpc"
    assert handlers.grpc_messages(response.raw_body) == [b"\x08\x2a"]
    assert response.trailers["grpc-status"] == "0"
    request = chain.handlings[0].request
    assert request.headers["te"] == "trailers"
    assert handlers.grpc_messages(request.raw_body) == [b"\x08\x01"]


def test_grpc_error_status_and_message(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c", default_handler=handlers.grpc(status=5, message="no such thing")
    )
    chain = deproxy.make_request(endpoint.url + "/s/M", method="POST", http2="h2c")
    assert answered(chain).raw_body == b""
    assert answered(chain).trailers.items() == [
        ("grpc-status", "5"),
        ("grpc-message", "no such thing"),
    ]
    with pytest.raises(ValueError, match="0 to 16"):
        handlers.grpc(status=17)


def test_grpc_messages_refuses_a_cut_message() -> None:
    with pytest.raises(ValueError, match="says 5 bytes; 2 came"):
        handlers.grpc_messages(b"\x00\x00\x00\x00\x05ab")


# -- faults, endpoint side -------------------------------------------------------------------


def test_rst_stream_fault_is_recorded_on_both_sides(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c",
        default_handler=handlers.by_path(
            {"/reset": handlers.rst_stream("INTERNAL_ERROR"), "/ok": handlers.simple}
        ),
    )
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chain = deproxy.make_request(endpoint.url + "/reset", connection=connection)
        assert chain.received_response is None
        assert "reset stream 1 (INTERNAL_ERROR)" in str(chain.error)
        assert deproxy.make_request(endpoint.url + "/ok", connection=connection).error is None
        received = [e for e in connection.events if e.type == "RST_STREAM"]
    assert [(e.direction, e.stream_id, e.code) for e in received] == [("received", 1, 2)]
    handling = chain.handlings[0]
    assert handling.action == "reset the stream (RST_STREAM INTERNAL_ERROR)"
    sent = [e for e in endpoint.connections[0].events if e.type == "RST_STREAM"]
    assert [(e.direction, e.error) for e in sent] == [("sent", "INTERNAL_ERROR")]


def test_refuse_stream_and_goaway(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c",
        default_handler=handlers.by_path(
            {"/refuse": handlers.refuse_stream, "/away": handlers.goaway("ENHANCE_YOUR_CALM", 0)}
        ),
    )
    chain = deproxy.make_request(endpoint.url + "/refuse", http2="h2c")
    assert "REFUSED_STREAM" in str(chain.error)
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chain = deproxy.make_request(endpoint.url + "/away", connection=connection)
        assert "GOAWAY ENHANCE_YOUR_CALM, last_stream_id=0" in str(chain.error)
        goaways = [e for e in connection.events if e.type == "GOAWAY"]
    goaway = goaways[0]
    assert (goaway.direction, goaway.code, goaway.last_stream_id) == ("received", 0xB, 0)
    both = [(e.direction, e.error) for e in endpoint.connections[1].events if e.type == "GOAWAY"]
    assert both[0] == ("sent", "ENHANCE_YOUR_CALM")
    assert set(both[1:]) <= {("received", "NO_ERROR")}  # the client's own, as it closed


def test_headers_then_hang_and_trailers_only(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c",
        default_handler=handlers.by_path(
            {
                "/hang": handlers.h2_headers_only(Response(200)),
                "/tonly": handlers.trailers_only(Response(200, trailers={"grpc-status": "14"})),
            }
        ),
    )
    chain = deproxy.make_request(endpoint.url + "/hang", http2="h2c", h2_reset_after=0.3)
    assert "reset (RST_STREAM CANCEL) after 0.3 s" in str(chain.error)
    assert chain.handlings[0].action == "sent the headers, then hung"
    chain = deproxy.make_request(endpoint.url + "/tonly", http2="h2c")
    assert chain.error is None
    response = answered(chain)
    assert response.headers["grpc-status"] == "14" and response.raw_body == b""


def test_stalled_window_and_settings_limits(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(
        http2="h2c",
        default_handler=handlers.by_path(
            {
                "/stall": handlers.stall_window(Response(200, body="s")),
                "/limit": handlers.h2_settings({"MAX_CONCURRENT_STREAMS": 1}, Response(200)),
            }
        ),
    )
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        assert deproxy.make_request(endpoint.url + "/limit", connection=connection).error is None
        stall = deproxy.make_request(endpoint.url + "/stall", connection=connection)
        assert stall.error is None  # answered; from now on the endpoint gives no credit back
        body = b"x" * 100_000  # more than the 65,535-byte window the client is left with
        chain = deproxy.make_request(
            endpoint.url + "/after",
            method="POST",
            request_body=body,
            connection=connection,
            h2_reset_after=1.0,
        )
        events = connection.events
    settings = [e for e in events if e.direction == "received" and e.type == "SETTINGS"]
    assert any(e.values.get("MAX_CONCURRENT_STREAMS") == 1 for e in settings)
    assert "h2_reset_after" in str(chain.error)
    eventually(lambda: chain.handlings and chain.handlings[0].done)
    [after] = chain.handlings
    assert after.response is None  # it never came whole, so no handler ran
    assert 0 < len(after.request.raw_body) <= 65_535  # it stopped at the window
    assert "reset stream 5 (CANCEL) mid-request" in (after.action or "")


def test_raw_frames_fault(deproxy: Deproxy) -> None:
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"rawping!"
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handlers.raw_frames(ping))
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        deproxy.make_request(endpoint.url, connection=connection, h2_reset_after=0.5)
        eventually(lambda: any(e.data == b"rawping!" for e in connection.events))
    assert any(
        e.type == "PING" and e.direction == "sent" and e.data == b"rawping!"
        for e in endpoint.connections[0].events
    )


def test_the_diagram_and_har_name_the_stream(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    chain = deproxy.make_request(endpoint.url + "/lane", http2="h2c")

    [handling] = chain.handlings
    assert f"{handling.connection} s1" in chain.diagram()
    [_, entry] = to_har(chain)["log"]["entries"]
    assert (entry["request"]["httpVersion"], entry["_streamId"]) == ("HTTP/2", 1)


# -- which streams get a thread: stock answers on the connection's thread ---------------------


def _stream_threads_started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the stream threads (``...-conn-N-sM``) started from now on."""
    started: list[str] = []
    start = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        if re.search(r"-conn-\d+-s\d+$", thread.name):
            started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting)
    return started


def test_stock_answers_take_no_thread_per_stream(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    started = _stream_threads_started(monkeypatch)
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chains = [
            deproxy.make_request(f"{endpoint.url}/{n}", connection=connection, **stock)
            for n in range(20)
            for stock in (
                {},
                {"default_handler": handlers.echo},
                {"default_handler": Response(204)},
            )
        ]
    assert [answered(c).code for c in chains] == ["200", "200", "204"] * 20
    assert started == []
    handlings = endpoint.handlings
    assert [h.stream_id for h in handlings] == list(range(1, 120, 2))
    assert all(h.done and h.response is not None for h in handlings)


def test_a_blocking_handler_does_not_hold_up_a_stock_answer_on_its_connection(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()
    order: list[str] = []

    def waits(request: Request, context: HandlerContext) -> Response:
        order.append("slow handler waits")
        order.append("slow released" if released.wait(20) else "slow timed out")
        return Response(200, body="slow")

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=waits)
    started = _stream_threads_started(monkeypatch)
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        slow: list[MessageChain] = []
        thread = threading.Thread(
            target=lambda: slow.append(
                deproxy.make_request(endpoint.url + "/slow", connection=connection)
            )
        )
        thread.start()
        eventually(lambda: order == ["slow handler waits"])
        fast = deproxy.make_request(
            endpoint.url + "/fast", connection=connection, default_handler=handlers.simple
        )
        order.append("fast answered" if fast.received_response is not None else "fast failed")
        # The record, as the fast answer came: both arrived, in order; only the fast one done.
        slow_handling, fast_handling = endpoint.handlings
        assert (slow_handling.request.path, slow_handling.stream_id) == ("/slow", 1)
        assert (fast_handling.request.path, fast_handling.stream_id) == ("/fast", 3)
        assert (slow_handling.done, fast_handling.done) == (False, True)
        released.set()
        thread.join(20)
    assert order == ["slow handler waits", "fast answered", "slow released"]
    assert answered(slow[0]).body == "slow"
    assert started == ["deproxy-Endpoint-1-conn-1-s1"]  # only the handler that may wait


def test_a_stock_answer_larger_than_the_window_is_sent_whole(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    body = bytes(range(256)) * 1200  # 300 KiB: more than the 64 KiB a stream starts with
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chains = [
            deproxy.make_request(endpoint.url, "POST", request_body=body, connection=connection)
            for _ in range(3)
        ]
    assert [answered(c).raw_body == body for c in chains] == [True] * 3
    assert [h.response.raw_body == body for h in endpoint.handlings if h.response] == [True] * 3


def test_shutdown_joins_a_stream_still_waiting_for_the_window() -> None:
    """A client that never gives flow-control credit back: the rest of a stock answer waits
    on a thread of its stream's own, and leaving ``with Deproxy()`` joins it."""
    import h2.config
    import h2.connection

    big = Response(200, body=b"x" * 200_000)  # a canned Response never blocks: answered inline
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(http2="h2c", default_handler=big)
        sock = socket.create_connection(endpoint.address, timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        fields = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")]
        conn.send_headers(1, fields, end_stream=True)
        sock.sendall(conn.data_to_send())

        def waiting() -> list[threading.Thread]:
            return [t for t in threading.enumerate() if t.name.endswith("-conn-1-s1")]

        eventually(waiting)
        [handling] = endpoint.handlings
        assert handling.done and handling.response is not None  # recorded before it was sent
        assert len(handling.response.raw_body) == 200_000
        stream_threads = waiting()
    sock.close()
    assert [t.is_alive() for t in stream_threads] == [False] * len(stream_threads)
    assert endpoint.connections[0].closed_by == "shutdown"


# -- the client: who reads the connection ------------------------------------------------------


def test_a_request_on_an_h2c_connection_reads_its_own_answer(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request after another: each answer is read by the thread that waits for it, not
    handed over from the connection's reader thread."""
    from pytest_deproxy import h2client

    readers: list[str] = []
    dispatch = h2client.H2ClientConnection._dispatch

    def noting(self: h2client.H2ClientConnection, event: object) -> None:
        if type(event).__name__ == "Ended":
            readers.append(threading.current_thread().name)
        dispatch(self, event)

    monkeypatch.setattr(h2client.H2ClientConnection, "_dispatch", noting)
    endpoint = deproxy.add_endpoint(http2="h2c")
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chains = [deproxy.make_request(endpoint.url, connection=connection) for _ in range(20)]
    assert [answered(c).code for c in chains] == ["200"] * 20
    # The first answer may come while the reader thread still reads (just connected).
    assert readers[1:] == [threading.current_thread().name] * 19


def test_what_the_server_sends_while_no_request_waits_is_read(deproxy: Deproxy) -> None:
    """A PING the server sends after its answer, with no request waiting: the connection's
    reader thread reads it (and h2 answers it) without another request."""
    import h2.config
    import h2.connection
    import h2.events

    listener = socket.create_server(("127.0.0.1", 0))
    pinged = threading.Event()

    def serve() -> None:
        sock, _ = listener.accept()
        with sock:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            while data := sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        conn.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
                        sock.sendall(conn.data_to_send())
                        pinged.wait(10)  # the client has its answer: then, a PING
                        conn.ping(b"unasked!")
                    elif isinstance(event, h2.events.PingAckReceived):
                        conn.close_connection()
                sock.sendall(conn.data_to_send())

    server = threading.Thread(target=serve)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with deproxy.connect(url, http2="h2c") as connection:
            assert answered(deproxy.make_request(url, connection=connection)).code == "200"
            pinged.set()
            eventually(lambda: ("sent", "PING", ("ACK",)) in _pings(connection.events))
            assert ("received", "PING", ()) in _pings(connection.events)
            eventually(lambda: connection.closed)  # the GOAWAY that followed, read too
    finally:
        pinged.set()
        server.join(10)
        listener.close()


def _pings(events: list[FrameEvent]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(e.direction, e.type, e.flags) for e in events if e.type == "PING"]
