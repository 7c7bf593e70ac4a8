"""The record is the truth, against real peers: haproxy and nginx between Deproxy's client and
its endpoints. What each proxy did is pinned from the endpoint's record (``handling.raw``, the
headers as received, ``endpoint.connections``), byte for byte where it matters.

Pinned against nginx 1.22.1 and haproxy 2.6.12 (Debian 12); a different version may differ,
and these tests then say exactly how.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Endpoint, HandlerContext, Request, Response, handlers
from pytest_deproxy.process import ServerProcess, free_port

from .conftest import eventually, find_program

EndpointFactory = Callable[..., Endpoint]
Proxy = Callable[[str], str]
TRACKED = b"Deproxy-Request-ID: {request_id}\r\n"
HOLD = 10.0  # the longest a held handler waits for the test to release it

HAPROXY_CONFIG = """
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend front
  bind 127.0.0.1:{port}
  default_backend back
backend back
{backend}
"""

NGINX_CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"""


def _start(started: list[ServerProcess], argv: list[str], port: int, name: str) -> ServerProcess:
    started.append(ServerProcess(argv, port, name=name))
    return started[-1].start()


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Proxy]:
    """Start a real haproxy in the foreground: ``haproxy(backend_lines)`` returns its URL.

    ``backend_lines`` is the inside of ``backend back`` (servers, timeouts, options)."""
    binary = find_program("haproxy", "haproxy")
    started: list[ServerProcess] = []

    def start(backend: str) -> str:
        port = free_port()
        config = tmp_path / f"haproxy-{port}.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=port, backend=backend))
        _start(started, [binary, "-f", str(config), "-db"], port, "haproxy")
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Proxy]:
    """Start a real nginx: ``nginx(server_block)`` returns its URL; ``server_block`` is the
    inside of nginx's ``server {}`` (its ``listen`` is given)."""
    binary = find_program("nginx", "nginx-light")
    started: list[ServerProcess] = []

    def start(server: str) -> str:
        port = free_port()
        config = tmp_path / f"nginx-{port}.conf"
        config.write_text(NGINX_CONFIG.format(dir=tmp_path, port=port, server=server))
        argv = [binary, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log")]
        _start(started, argv, port, "nginx")
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.stop()


def held(
    arrived: threading.Event, release: threading.Event, answer: Response
) -> Callable[..., Response]:
    """A handler that says it has a request, then answers only once the test releases it."""

    def handler(request: Request, context: HandlerContext) -> Response:
        arrived.set()
        release.wait(HOLD)
        return answer

    return handler


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- haproxy --------------------------------------------------------------------------------


def test_haproxy_504_leaves_the_handling_pending_until_the_endpoint_is_done(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy
) -> None:
    arrived, release = threading.Event(), threading.Event()
    slow = endpoint("slow", held(arrived, release, Response(200, body="too late")))
    url = haproxy(f"  timeout server 500ms\n  server s1 127.0.0.1:{slow.port}")

    chain = deproxy.make_request(url)

    assert chain.received_response is not None and chain.received_response.code == "504"
    (handling,) = chain.handlings  # it joined the chain on arrival, before its handler ran
    assert (handling.done, handling.response, handling.responded_at) == (False, None, None)
    assert ".. still being handled" in chain.diagram()
    # haproxy gave up on the connection at its timeout with a reset, noted when it came,
    # while the handler still held the request.
    (record,) = slow.connections
    eventually(lambda: record.closed_at is not None)
    assert record.closed_by == "reset"
    released_at = time.time()
    release.set()
    chain.wait(handlings=1, timeout=5)
    assert record.closed_at is not None and record.closed_at < released_at
    # The late answer had nobody to go to: it was not sent, and the record says why.
    assert handling.done and handling.response is None
    assert handling.action == "the client reset the connection while the handler ran"


@pytest.mark.parametrize(("option", "version"), [("send-proxy", 1), ("send-proxy-v2", 2)])
def test_haproxy_send_proxy_names_the_client_on_the_connection_record(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy, option: str, version: int
) -> None:
    backend = endpoint("backend", proxy_protocol=True)
    url = haproxy(f"  server s1 127.0.0.1:{backend.port} {option}")

    chain = deproxy.make_request(url)  # haproxy writes the header and the request at once
    assert chain.received_response is not None, chain.diagram()
    assert chain.received_response.code == "200"
    (handling,) = chain.handlings
    (record,) = backend.connections
    assert handling.connection == record.id
    header = record.proxy_protocol
    assert header is not None and header.version == version
    assert header.destination == f"127.0.0.1:{port_of(url)}"
    assert header.source is not None and header.source.startswith("127.0.0.1:")
    assert header.source != record.peer  # the client's address, not haproxy's own
    assert record.received.endswith(handling.raw)  # the header first, then the request

    # The source is the client's own socket, as haproxy saw it.
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=5) as client:
        source = f"127.0.0.1:{client.getsockname()[1]}"
        client.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 200 ")
    proxied = backend.connections[-1].proxy_protocol
    assert proxied is not None and proxied.source == source


def test_haproxy_health_probes_are_orphans_of_a_chain_in_flight(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy
) -> None:
    probed = threading.Event()

    def probe(request: Request) -> Response:
        probed.set()
        return Response(200)

    def hold_until_probed(request: Request) -> Response:
        probed.clear()  # a probe that came before this request does not count
        probed.wait(HOLD)
        return Response(200, body="after a probe")

    backend = endpoint("backend", probe)  # untracked requests (the probes) get this
    url = haproxy(
        f"  option httpchk GET /health\n  server s1 127.0.0.1:{backend.port} check inter 100ms"
    )

    chain = deproxy.make_request(url, handlers={backend: hold_until_probed})
    chain.wait(handlings=1, orphaned_handlings=1)

    assert chain.received_response is not None and chain.received_response.body == "after a probe"
    assert [h.request.path for h in chain.handlings] == ["/"]
    probes = chain.orphaned_handlings
    assert probes and all(h.endpoint is backend for h in probes)
    # haproxy 2.6's `option httpchk GET /health`: HTTP/1.0, no Host, nothing else.
    assert {h.raw for h in probes} == {b"GET /health HTTP/1.0\r\n\r\n"}
    assert all(h.request_id is None and h.done for h in probes)
    assert not {h.connection for h in probes} & {h.connection for h in chain.handlings}


@pytest.mark.parametrize(
    ("options", "status", "attempts"),
    [
        ("  retries 3", "502", 1),  # retry-on defaults to conn-failure: a reset is no retry
        ("  retries 3\n  option redispatch", "502", 1),
        ("  retries 3\n  retry-on all-retryable-errors", "200", 2),
        ("  retries 3\n  retry-on empty-response\n  option redispatch", "200", 2),
    ],
    ids=["retries", "redispatch", "retry-on-all", "retry-on-empty-redispatch"],
)
def test_haproxy_retries_after_a_reset_are_handlings_on_new_connections(
    deproxy: Deproxy,
    endpoint: EndpointFactory,
    haproxy: Proxy,
    options: str,
    status: str,
    attempts: int,
) -> None:
    answers = iter([handlers.reset])

    def reset_first(request: Request) -> Response | handlers.Fault:
        return next(answers, Response(200, body="second try"))

    backend = endpoint("backend", reset_first)
    url = haproxy(f"{options}\n  server s1 127.0.0.1:{backend.port}")

    chain = deproxy.make_request(url, "GET")

    assert chain.received_response is not None and chain.received_response.code == status
    chain.wait(handlings=attempts)
    assert len(chain.handlings) == attempts
    first = chain.handlings[0]
    assert first.response is None and first.action is not None and "RST" in first.action
    if attempts == 2:
        second = chain.handlings[1]
        assert second.response is not None and second.response.body == "second try"
        assert first.connection != second.connection
        assert second.raw == first.raw  # the same request, sent again as it was
    records = {record.id: record for record in backend.connections}
    assert records[first.connection].closed_by == "endpoint"  # the endpoint reset it


@pytest.mark.parametrize("how", ["rst", "fin"])
@pytest.mark.parametrize("abortonclose", [False, True])
def test_haproxy_resets_the_server_side_when_the_client_aborts_mid_body(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy, how: str, abortonclose: bool
) -> None:
    backend = endpoint("backend")
    option = "  option abortonclose\n" if abortonclose else ""
    url = haproxy(f"{option}  server s1 127.0.0.1:{backend.port}")
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=5) as client:
        client.sendall(head + b"a" * 50)
        eventually(lambda: backend.connections and len(backend.connections[0].received) >= 50)
        if how == "rst":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            client.shutdown(socket.SHUT_WR)  # a half-close: haproxy treats it as an abort too

    (record,) = backend.connections
    eventually(lambda: record.closed_at is not None)
    (handling,) = backend.handlings
    assert handling.done and handling.response is None
    assert handling.action == "the client reset the connection after 50 body bytes"
    assert record.closed_by == "reset"
    assert handling.request.method == "POST" and handling.request.body == "a" * 50
    assert handling.raw == record.received  # haproxy's version of the head, and 50 bytes
    assert handling.raw.startswith(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n")


def test_haproxy_client_certificate_is_on_the_connection_record(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy, tmp_path: Path
) -> None:
    backend = endpoint("backend", tls=True, client_certs="required")
    cert, key = deproxy.ca.issue_client_cert("haproxy-under-test")
    bundle = tmp_path / "haproxy-client.pem"  # haproxy wants the certificate and key in one file
    bundle.write_bytes(Path(cert).read_bytes() + Path(key).read_bytes())
    url = haproxy(
        f"  server s1 127.0.0.1:{backend.port} ssl verify required "
        f"ca-file {deproxy.ca.cert_pem_path} crt {bundle} sni str(localhost)"
    )

    chain = deproxy.make_request(url)

    assert chain.received_response is not None and chain.received_response.code == "200"
    (handling,) = chain.handlings
    (record,) = backend.connections
    assert handling.connection == record.id
    assert record.tls is not None
    assert record.tls.sni == "localhost"
    assert record.tls.client_certificate is not None
    subject = dict(rdn[0] for rdn in record.tls.client_certificate["subject"])
    assert subject == {"organizationName": "pytest-deproxy", "commonName": "haproxy-under-test"}
    assert "client cert haproxy-under-test" in chain.diagram()


def test_haproxy_without_a_client_certificate_is_refused_at_the_handshake(
    deproxy: Deproxy, endpoint: EndpointFactory, haproxy: Proxy
) -> None:
    backend = endpoint("backend", tls=True, client_certs="required")
    url = haproxy(
        f"  server s1 127.0.0.1:{backend.port} ssl verify required "
        f"ca-file {deproxy.ca.cert_pem_path}"
    )

    chain = deproxy.make_request(url)

    # With TLS 1.3 haproxy's handshake is over before the endpoint checks for a certificate:
    # its alert comes as the request is sent (502) or as the handshake ends (503, "no server
    # available", after retrying): either, from one run to the next.
    assert chain.received_response is not None
    assert chain.received_response.code in ("502", "503")
    assert chain.handlings == [] and backend.handlings == []
    # The endpoint's TLS library sent its alert before the endpoint could note the failure.
    eventually(lambda: len(backend.errors) == len(backend.connections))
    assert backend.connections and all(r.tls is None for r in backend.connections)
    assert all(r.closed_by == "endpoint" for r in backend.connections)
    assert all("PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(e) for e in backend.errors)


# -- nginx ----------------------------------------------------------------------------------


def test_nginx_mirror_to_a_slow_shadow_joins_the_chain_after_the_answer(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Proxy
) -> None:
    arrived, release = threading.Event(), threading.Event()
    main = endpoint("main", Response(200, body="main"))
    shadow = endpoint("shadow", held(arrived, release, Response(200, body="shadow")))
    url = nginx(
        f"location / {{ mirror /_mirror; proxy_pass http://127.0.0.1:{main.port}; }}\n"
        f"location = /_mirror {{ internal; proxy_pass http://127.0.0.1:{shadow.port}"
        "$request_uri; }"
    )

    chain = deproxy.make_request(url + "/page", "POST", request_body="payload")

    # nginx answered while the shadow still held its copy of the request
    assert chain.received_response is not None and chain.received_response.body == "main"
    assert arrived.wait(HOLD)
    mirrored = [h for h in chain.handlings if h.endpoint is shadow]
    assert len(mirrored) == 1 and not mirrored[0].done  # in its own chain, not an orphan
    release.set()
    chain.wait(handlings=2)
    assert chain.orphaned_handlings == []
    by_endpoint = {h.endpoint.name: h for h in chain.handlings}
    assert by_endpoint["shadow"].response is not None
    assert by_endpoint["shadow"].response.body == "shadow"
    for handling in chain.handlings:
        assert (handling.request.method, handling.request.path) == ("POST", "/page")
        assert handling.request.body == "payload"
        assert handling.request_id == chain.request_id


def test_nginx_auth_request_to_a_slow_auth_service_is_in_the_chain_first(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Proxy
) -> None:
    main = endpoint("main", Response(200, body="main"))
    auth = endpoint("auth", handlers.delay(0.3, Response(204)))
    url = nginx(
        f"location / {{ auth_request /_auth; proxy_pass http://127.0.0.1:{main.port}; }}\n"
        f"location = /_auth {{ internal; proxy_pass http://127.0.0.1:{auth.port}/check;\n"
        '  proxy_pass_request_body off; proxy_set_header Content-Length ""; }'
    )

    chain = deproxy.make_request(url + "/page", "POST", request_body="payload").wait(handlings=2)

    assert chain.received_response is not None and chain.received_response.body == "main"
    assert [h.endpoint.name for h in chain.handlings] == ["auth", "main"]
    check, forwarded = chain.handlings
    # the subrequest carries the client's headers, the tracking id among them: not an orphan
    assert chain.orphaned_handlings == []
    assert (check.request.method, check.request.path, check.request.body) == ("GET", "/check", "")
    assert check.request_id == chain.request_id
    assert check.responded_at is not None and check.responded_at <= forwarded.received_at
    assert forwarded.request.body == "payload"


DUPLICATES = [("X-Dup", "1"), ("x-dup", "2"), ("X-DUP", "3")]


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        ("nginx", DUPLICATES),  # names, case and order kept
        ("haproxy", [("x-dup", "1"), ("x-dup", "2"), ("x-dup", "3")]),  # names lowercased
    ],
)
def test_duplicate_headers_forwarded_stay_in_the_record(
    deproxy: Deproxy,
    endpoint: EndpointFactory,
    request: pytest.FixtureRequest,
    proxy: str,
    expected: list[tuple[str, str]],
) -> None:
    backend = endpoint("backend")
    start: Proxy = request.getfixturevalue(proxy)
    if proxy == "nginx":
        url = start(f"location / {{ proxy_pass http://127.0.0.1:{backend.port}; }}")
    else:
        url = start(f"  server s1 127.0.0.1:{backend.port}")

    chain = deproxy.make_request(url, headers=[*DUPLICATES, ("X-Other", "o")])

    (handling,) = chain.handlings
    received = handling.request.headers
    dup_fields = [(n, v) for n, v in received.items() if n.lower() == "x-dup"]
    assert dup_fields == expected
    assert received.get_all("x-dup") == ["1", "2", "3"]
    names = [n.lower() for n, _ in received.items()]
    assert names.index("x-dup") < names.index("x-other")  # the order around them kept too
    assert b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in expected) in handling.raw


# -- raw requests through each proxy: what reached the endpoint, byte for byte ------------

NO_HOST = b"GET /nohost HTTP/1.0\r\n" + TRACKED + b"\r\n"
TWO_LENGTHS = (
    b"POST /two HTTP/1.1\r\nHost: x\r\n" + TRACKED + b"Content-Length: 5\r\nContent-Length: 5\r\n"
    b"\r\nhello"
)
CONFLICTING = (
    b"POST /two HTTP/1.1\r\nHost: x\r\n" + TRACKED + b"Content-Length: 5\r\nContent-Length: 6\r\n"
    b"\r\nhello!"
)
CHUNKED = (
    b"POST /te HTTP/1.1\r\nHost: x\r\n" + TRACKED + b"Transfer-Encoding: Chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n"
)
OBS_FOLD = b"GET /fold HTTP/1.1\r\nHost: x\r\n" + TRACKED + b"X-Fold: a\r\n b\r\n\r\n"
CL_TE = (
    b"POST /clte HTTP/1.1\r\nHost: x\r\n" + TRACKED + b"Content-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
)
# What each proxy forwarded ({id}: the tracking id, {upstream}: the endpoint's host:port),
# or the status it answered itself without forwarding anything.
PINNED: dict[tuple[str, str], bytes | str] = {
    ("nginx", "no-host"): b"GET /nohost HTTP/1.0\r\nHost: {upstream}\r\nConnection: close\r\n"
    b"Deproxy-Request-ID: {id}\r\n\r\n",
    ("haproxy", "no-host"): b"GET /nohost HTTP/1.0\r\ndeproxy-request-id: {id}\r\n"
    b"connection: keep-alive\r\n\r\n",
    ("nginx", "two-lengths"): "400",
    ("haproxy", "two-lengths"): b"POST /two HTTP/1.1\r\nhost: x\r\ndeproxy-request-id: {id}\r\n"
    b"content-length: 5\r\n\r\nhello",
    ("nginx", "conflicting-lengths"): "400",
    ("haproxy", "conflicting-lengths"): "400",
    ("nginx", "Chunked"): b"POST /te HTTP/1.0\r\nHost: {upstream}\r\nConnection: close\r\n"
    b"Content-Length: 5\r\nDeproxy-Request-ID: {id}\r\n\r\nhello",
    ("haproxy", "Chunked"): b"POST /te HTTP/1.1\r\nhost: x\r\ndeproxy-request-id: {id}\r\n"
    b"transfer-encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ("nginx", "obs-fold"): "400",
    ("haproxy", "obs-fold"): b"GET /fold HTTP/1.1\r\nhost: x\r\ndeproxy-request-id: {id}\r\n"
    b"x-fold: a   b\r\n\r\n",
    ("nginx", "CL+TE"): "400",
    ("haproxy", "CL+TE"): b"POST /clte HTTP/1.1\r\nhost: x\r\ndeproxy-request-id: {id}\r\n"
    b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}
RAW_CASES = {
    "no-host": NO_HOST,
    "two-lengths": TWO_LENGTHS,
    "conflicting-lengths": CONFLICTING,
    "Chunked": CHUNKED,
    "obs-fold": OBS_FOLD,
    "CL+TE": CL_TE,
}


@pytest.mark.parametrize("case", list(RAW_CASES))
@pytest.mark.parametrize("proxy", ["nginx", "haproxy"])
def test_raw_requests_through_a_proxy_are_recorded_as_they_arrived(
    deproxy: Deproxy,
    endpoint: EndpointFactory,
    request: pytest.FixtureRequest,
    proxy: str,
    case: str,
) -> None:
    backend = endpoint("backend", Response(200, body="reached"))
    start: Proxy = request.getfixturevalue(proxy)
    if proxy == "nginx":
        url = start(f"location / {{ proxy_pass http://127.0.0.1:{backend.port}; }}")
    else:
        url = start(f"  server s1 127.0.0.1:{backend.port}")

    chain = deproxy.make_raw_request(url, RAW_CASES[case])

    response = chain.received_response
    assert response is not None, chain.diagram()
    pinned = PINNED[(proxy, case)]
    if isinstance(pinned, str):  # refused by the proxy: nothing reached the endpoint
        assert response.code == pinned
        assert chain.handlings == [] and backend.handlings == [] and backend.connections == []
        return
    assert (response.code, response.body) == ("200", "reached")
    (handling,) = chain.handlings
    (record,) = backend.connections
    expected = pinned.replace(b"{id}", chain.request_id.encode())
    expected = expected.replace(b"{upstream}", f"127.0.0.1:{backend.port}".encode())
    assert handling.raw == expected
    assert record.received == handling.raw  # the record is what crossed the wire
    assert handling.action is None


# -- a client that leaves while the handler runs: does the proxy cancel upstream? -----------


def until_client_gone(seen: list[bool]) -> Callable[..., Response]:
    """A slow handler that waits (at most HOLD s) for its client to leave, and says if it did."""

    def handler(request: Request, context: HandlerContext) -> Response:
        waited = 0.0
        while not context.client_gone and waited < HOLD:
            context.sleep(0.01)
            waited += 0.01
        seen.append(context.client_gone)
        return Response(200, body="too late")

    return handler


def test_a_client_closing_mid_handler_is_on_the_record_when_it_closed(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    seen: list[bool] = []
    slow = endpoint("slow", until_client_gone(seen))
    with socket.create_connection(("127.0.0.1", slow.port), timeout=5) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        eventually(lambda: slow.handlings)
    eventually(lambda: seen)
    assert seen == [True]  # the handler saw it, while it ran
    (record,) = slow.connections
    (handling,) = slow.handlings
    assert record.closed_by == "client"
    assert record.closed_at is not None and handling.responded_at is not None
    assert record.closed_at <= handling.responded_at  # noted when it happened, not after


def test_a_client_resetting_mid_handler_gets_no_answer_on_the_record(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    seen: list[bool] = []
    slow = endpoint("slow", until_client_gone(seen))
    sock = socket.create_connection(("127.0.0.1", slow.port), timeout=5)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    eventually(lambda: slow.handlings)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a RST
    eventually(lambda: slow.handlings[0].done)
    assert seen == [True]
    (record,) = slow.connections
    (handling,) = slow.handlings
    assert record.closed_by == "reset"
    assert handling.response is None
    assert handling.action == "the client reset the connection while the handler ran"
    assert slow.errors == []


def test_nginx_cancels_the_upstream_request_when_its_client_gives_up(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Proxy
) -> None:
    """nginx (proxy_ignore_client_abort off, its default) closes the upstream connection
    as soon as its client closes: the endpoint's record shows it, while the handler runs."""
    seen: list[bool] = []
    slow = endpoint("slow", until_client_gone(seen))
    url = nginx(f"location / {{ proxy_pass http://127.0.0.1:{slow.port}; }}")

    chain = deproxy.make_request(url + "/slow", timeout=0.5)

    assert chain.received_response is None and chain.error is not None  # the client gave up
    eventually(lambda: seen)
    assert seen == [True]
    (handling,) = chain.handlings
    record = next(r for r in slow.connections if r.id == handling.connection)
    assert record.closed_by == "client"
    assert record.closed_at is not None and handling.responded_at is not None
    assert record.closed_at <= handling.responded_at
