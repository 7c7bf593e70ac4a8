"""HTTP/2 through a real nghttpx (nghttp2's reverse proxy): an h2 frontend (TLS, ALPN) to an
HTTP/1.1 endpoint, and an HTTP/1.1 frontend to an h2c endpoint (``;proto=h2``), where the
requests of many clients become streams of one upstream connection.

Pinned against nghttpx 1.52.0 (Debian 12, package ``nghttp2-proxy``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_deproxy import Deproxy, HandlerContext, MessageChain, Request, Response, handlers
from pytest_deproxy.process import ServerProcess, free_port

from .conftest import answered, eventually, find_program

RESET_AFTER = 1.5  # seconds: the proxy has forwarded the request by then, even on a busy machine


@contextmanager
def nghttpx(tmp_path: Path, *lines: str) -> Iterator[int]:
    """Run nghttpx in the foreground, one process and worker, from a config file holding
    ``lines`` (its ``frontend=`` is given: ``lines`` say what follows it); yields its port."""
    binary = find_program("nghttpx", "nghttp2-proxy")
    port = free_port()
    frontend, *rest = lines
    config = tmp_path / f"nghttpx-{port}.conf"
    config.write_text(
        "\n".join(
            [
                f"frontend=127.0.0.1,{port}{frontend}",
                "workers=1",
                "single-process=yes",
                "no-ocsp=yes",
                f"errorlog-file={tmp_path}/nghttpx-{port}.log",
                "accesslog-file=/dev/null",
                *rest,
            ]
        )
        + "\n"
    )
    with ServerProcess([binary, f"--conf={config}"], port, name="nghttpx"):
        yield port


def in_parallel(deproxy: Deproxy, urls: list[str], **options: object) -> list[MessageChain]:
    chains: list[MessageChain] = []
    threads = [
        threading.Thread(target=lambda u=url: chains.append(deproxy.make_request(u, **options)))  # type: ignore[arg-type]
        for url in urls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert [c.error for c in chains] == [None] * len(urls), [c.diagram() for c in chains]
    return chains


def test_h2_client_to_nghttpx_to_h1_endpoint(deproxy: Deproxy, tmp_path: Path) -> None:
    backend = deproxy.add_endpoint(default_handler=handlers.echo)
    cert, key = deproxy.ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    with nghttpx(
        tmp_path,
        "",  # TLS, with h2 offered over ALPN
        f"backend=127.0.0.1,{backend.port}",
        f"private-key-file={key}",
        f"certificate-file={cert}",
    ) as port:
        chain = deproxy.make_request(
            f"https://127.0.0.1:{port}/h2-in?x=1", "POST", request_body="hello", http2=True
        )
    response = answered(chain)
    assert response.http_version == "2" and response.body == "hello"
    [handling] = chain.handlings  # the tracking header crossed the translation
    assert handling.request_id == chain.request_id and chain.orphaned_handlings == []
    assert (handling.stream_id, handling.request.http_version) == (None, "1.1")
    # :method, :path and :authority became the request line and Host; nghttpx writes the
    # lower-case HTTP/2 names in HTTP/1 capitals, and says where the request came from.
    assert handling.raw.startswith(
        f"POST /h2-in?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    )
    names = [name for name, _ in handling.request.headers.items()]
    assert "Deproxy-Request-Id" in names and not any(n.startswith(":") for n in names)
    assert handling.request.headers["X-Forwarded-Proto"] == "https"
    assert handling.request.headers["Via"] == "2 nghttpx"
    assert handling.request.body == "hello"
    [record] = backend.connections
    assert record.tls is None and record.id == handling.connection


def test_h1_clients_to_nghttpx_to_h2c_endpoint_share_one_connection(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    gate = threading.Barrier(4, timeout=10)

    def together(request: Request, context: HandlerContext) -> Response:
        gate.wait()  # all four streams in flight on the upstream connection at once
        return Response(200, body=request.path)

    backend = deproxy.add_endpoint(http2="h2c", default_handler=together)
    with nghttpx(tmp_path, ";no-tls", f"backend=127.0.0.1,{backend.port};;proto=h2") as port:
        chains = in_parallel(deproxy, [f"http://127.0.0.1:{port}/up{n}" for n in range(4)])
    handlings = [h for c in chains for h in c.handlings]
    assert [answered(c).body for c in chains] == [c.sent_request.path for c in chains]
    assert [len(c.handlings) for c in chains] == [1, 1, 1, 1]
    assert {h.request.http_version for h in handlings} == {"2"}
    # Four client connections became four streams of one upstream connection.
    assert len({h.connection for h in handlings}) == 1
    assert sorted(h.stream_id for h in handlings) == [1, 3, 5, 7]  # type: ignore[type-var]
    [record] = backend.connections
    assert record.tls is None and len(record.handlings) == 4
    # nghttpx sends the client's Host as a host field, not as :authority (RFC 9113 §8.3.1).
    for handling in handlings:
        fields = handling.request.headers.items()
        assert [n for n, _ in fields[:3]] == [":method", ":scheme", ":path"]
        assert ("host", f"127.0.0.1:{port}") in fields and ":authority" not in dict(fields)
        assert handling.request.headers["via"] == "1.1 nghttpx"


def test_nghttpx_carries_trailers_between_http1_chunks_and_h2c_frames(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    def answer(request: Request) -> Response:
        return Response(200, body=request.raw_body, trailers=[("X-Served", "yes")])

    backend = deproxy.add_endpoint(http2="h2c", default_handler=answer)
    with nghttpx(tmp_path, ";no-tls", f"backend=127.0.0.1,{backend.port};;proto=h2") as port:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/t", "POST", request_body="hello", trailers={"X-Sent": "yes"}
        )
    # The client's trailer section became an HTTP/2 trailers frame upstream, and back.
    [handling] = chain.handlings
    assert (handling.request.http_version, handling.request.body) == ("2", "hello")
    assert handling.request.trailers.items() == [("x-sent", "yes")]
    response = answered(chain)
    assert response.headers["Transfer-Encoding"] == "chunked" and response.body == "hello"
    assert response.trailers.items() == [("X-Served", "yes")]  # in HTTP/1 capitals again


def test_a_client_reset_through_nghttpx_resets_the_upstream_stream(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def held(request: Request) -> Response:
        arrived.set()
        release.wait(10)  # until the test has seen what nghttpx did upstream
        return Response(200, body="too late")

    backend = deproxy.add_endpoint(http2="h2c", default_handler=held)
    with nghttpx(tmp_path, ";no-tls", f"backend=127.0.0.1,{backend.port};;proto=h2") as port:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/reset-me", http2="h2c", h2_reset_after=RESET_AFTER
        )
        assert "h2_reset_after" in str(chain.error)
        assert arrived.is_set(), "the request had not reached the endpoint before the reset"
        [record] = backend.connections

        def resets() -> list[tuple[int | None, str | None]]:
            return [
                (e.stream_id, e.error)
                for e in record.events
                if e.type == "RST_STREAM" and e.direction == "received"
            ]

        eventually(lambda: resets())
        release.set()
        chain.wait(handlings=1, timeout=10)
        # nghttpx cancelled the upstream stream (with INTERNAL_ERROR, not CANCEL) and kept
        # the connection for other streams; the endpoint sent nothing on the reset stream.
        [handling] = chain.handlings
        assert resets() == [(handling.stream_id, "INTERNAL_ERROR")]
        assert record.closed_at is None
    assert handling.response is None and handling.responded_at is None
    assert handling.action == (
        f"the client reset stream {handling.stream_id} (INTERNAL_ERROR) before the answer was sent"
    )
