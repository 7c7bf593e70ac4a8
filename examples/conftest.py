from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_deproxy.process import ServerProcess, free_port

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


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a real nginx: ``nginx(http_block)`` returns the port it listens on.

    ``http_block`` is the inside of nginx's ``http {}``, with ``{port}`` where nginx listens.
    Skipped when nginx is not installed.
    """
    binary = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    started: list[ServerProcess] = []

    def start(http_block: str) -> int:
        port = free_port()
        config = tmp_path / "nginx.conf"
        config.write_text(
            NGINX_HTTP_PREAMBLE.format(dir=tmp_path, http=http_block.replace("{port}", str(port)))
        )
        argv = [binary, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log")]
        started.append(ServerProcess(argv, port, name="nginx"))
        return started[-1].start().port

    yield start
    for process in started:
        process.stop()
