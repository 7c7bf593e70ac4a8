from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .example_proxy import ExampleProxy


@pytest.fixture
def example_proxy() -> Iterator[Callable[..., ExampleProxy]]:
    """Start the example reverse proxy in front of an upstream (and optionally an auth service)."""
    started: list[ExampleProxy] = []

    def start(upstream: str, *, auth: str | None = None) -> ExampleProxy:
        proxy = ExampleProxy(upstream, auth=auth).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.shutdown()


NGINX_HTTP_PREAMBLE = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a real nginx: ``nginx(http_block)`` returns the port it listens on.

    ``http_block`` is the inside of nginx's ``http {}``, with ``{port}`` where nginx listens.
    Skipped when nginx is not installed.
    """
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(http_block: str) -> int:
        port = free_port()
        config = tmp_path / "nginx.conf"
        config.write_text(
            NGINX_HTTP_PREAMBLE.format(dir=tmp_path, http=http_block.replace("{port}", str(port)))
        )
        process = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                errors = (process.stderr.read() if process.stderr else b"").decode()
                pytest.fail(f"nginx exited with {process.returncode}: {errors}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.02)
        pytest.fail(f"nginx did not listen on port {port} within 10 s")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()
