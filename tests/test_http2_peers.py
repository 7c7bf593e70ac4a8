"""HTTP/2 through real proxies: haproxy with ``proto h2`` on both sides."""

from __future__ import annotations

import threading
from pathlib import Path

from pytest_deproxy import Deproxy, HandlerContext, Request, Response, handlers
from pytest_deproxy.process import ServerProcess, free_port

from .conftest import answered, find_program

DEFAULTS = "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n"


def haproxy(tmp_path: Path, frontend_bind: str, server_line: str) -> tuple[ServerProcess, int]:
    binary = find_program("haproxy", "haproxy")
    port = free_port()
    config = tmp_path / f"haproxy-{port}.cfg"
    config.write_text(
        DEFAULTS
        + f"frontend front\n  bind 127.0.0.1:{port} {frontend_bind}\n  default_backend back\n"
        + f"backend back\n  {server_line}\n"
    )
    return ServerProcess([binary, "-f", str(config), "-db"], port, name="haproxy"), port


def test_h2_client_to_haproxy_to_h1_endpoint(deproxy: Deproxy, tmp_path: Path) -> None:
    backend = deproxy.add_endpoint(default_handler=handlers.echo)
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port}")
    with process:
        chain = deproxy.make_request(f"http://127.0.0.1:{port}/h2-in", http2="h2c")
    assert chain.error is None, chain.diagram()
    assert answered(chain).http_version == "2"
    [handling] = chain.handlings  # the tracking header crossed the translation
    assert handling.stream_id is None and handling.request.http_version == "1.1"
    assert handling.request.path == "/h2-in"
    assert not any(name.startswith(":") for name, _ in handling.request.headers.items())


def test_h1_client_to_haproxy_to_h2c_endpoint_multiplexed(deproxy: Deproxy, tmp_path: Path) -> None:
    gate = threading.Barrier(4, timeout=10)

    def together(
        request: Request, context: HandlerContext
    ) -> Response:  # all four streams in flight at once upstream
        if request.path != "/warm-up":
            gate.wait()
        return Response(200, body=request.path)

    backend = deproxy.add_endpoint(http2="h2c", default_handler=together)
    process, port = haproxy(  # reuse always: haproxy may share one h2 upstream connection
        tmp_path, "", f"http-reuse always\n  server s1 127.0.0.1:{backend.port} proto h2"
    )
    chains = []
    with process:
        # One upstream h2 connection first, which haproxy then shares.
        assert deproxy.make_request(f"http://127.0.0.1:{port}/warm-up").error is None
        threads = [
            threading.Thread(
                target=lambda n=n: chains.append(
                    deproxy.make_request(f"http://127.0.0.1:{port}/up{n}")
                )
            )
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert [c.error for c in chains] == [None] * 4, [c.diagram() for c in chains]
    handlings = [h for c in chains for h in c.handlings]
    assert {h.request.http_version for h in handlings} == {"2"}
    # Many streams landed on one upstream connection: one connection id, four stream ids.
    assert len({h.connection for h in handlings}) == 1
    assert len({h.stream_id for h in handlings}) == 4


def test_h2_end_to_end_through_haproxy_and_a_client_reset(deproxy: Deproxy, tmp_path: Path) -> None:
    backend = deproxy.add_endpoint(
        http2="h2c", default_handler=handlers.delay(3, Response(200, body="late"))
    )
    process, port = haproxy(tmp_path, "proto h2", f"server s1 127.0.0.1:{backend.port} proto h2")
    with process:
        chain = deproxy.make_request(
            f"http://127.0.0.1:{port}/reset-me", http2="h2c", h2_reset_after=0.5
        )
        assert "h2_reset_after" in str(chain.error)
        # The record shows what reached the upstream: the request, and haproxy's reset.
        chain.wait(handlings=1, timeout=10)
    [handling] = chain.handlings
    assert handling.request.path == "/reset-me" and handling.stream_id is not None
    upstream = next(c for c in backend.connections if c.id == handling.connection)
    resets = [e for e in upstream.events if e.type == "RST_STREAM" and e.direction == "received"]
    assert [e.stream_id for e in resets] == [handling.stream_id]
