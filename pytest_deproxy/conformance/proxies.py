"""The packaged proxies ``deproxy conformance --proxy NAME`` can start, each from a minimal
configuration shipped in ``configs/``: the proxy's own defaults, plus the least it takes to
run unprivileged in a scratch directory and forward to ``127.0.0.1:ORIGIN_PORT``.

Rules kept here: a config is a template with ``@PORT@`` (where the proxy listens),
``@ORIGIN_PORT@`` (the runner's endpoint) and ``@DIR@`` (the scratch directory), filled in and
written there; the text written is the configuration every verdict states. A proxy that is not
installed is :class:`NotInstalled`, saying which Debian package brings it. A started proxy is
always stopped (``ServerProcess``), its scratch directory removed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

from ..process import ServerProcess, free_port


class NotInstalled(Exception):
    """The proxy's program is not on this machine; the message says how to install it."""


@dataclass(frozen=True)
class PackagedProxy:
    """``argv`` and ``version_argv`` hold ``@PROGRAM@``, ``@CONFIG@``, ``@DIR@``, ``@PORT@``."""

    name: str
    program: str
    package: str
    config: str
    argv: tuple[str, ...]
    version_argv: tuple[str, ...]
    version_pattern: str


PROXIES = {
    proxy.name: proxy
    for proxy in (
        PackagedProxy(
            "nginx",
            "nginx",
            "nginx-light",
            "nginx.conf",
            ("@PROGRAM@", "-p", "@DIR@", "-c", "@CONFIG@", "-e", "@DIR@/error.log"),
            ("@PROGRAM@", "-v"),
            r"nginx/(\S+)",
        ),
        PackagedProxy(
            "haproxy",
            "haproxy",
            "haproxy",
            "haproxy.cfg",
            ("@PROGRAM@", "-f", "@CONFIG@", "-db"),
            ("@PROGRAM@", "-v"),
            r"version (\S+)",
        ),
        PackagedProxy(
            "tinyproxy",
            "tinyproxy",
            "tinyproxy",
            "tinyproxy.conf",
            ("@PROGRAM@", "-d", "-c", "@CONFIG@"),
            ("@PROGRAM@", "-v"),
            r"tinyproxy (\S+)",
        ),
        PackagedProxy(
            "squid",
            "squid",
            "squid",
            "squid.conf",
            ("@PROGRAM@", "-N", "-f", "@CONFIG@"),
            ("@PROGRAM@", "-v"),
            r"Version (\S+)",
        ),
        PackagedProxy(
            "varnish",
            "varnishd",
            "varnish",
            "varnish.vcl",
            (
                "@PROGRAM@",
                "-F",
                "-f",
                "@CONFIG@",
                "-a",
                "127.0.0.1:@PORT@",
                "-n",
                "@DIR@/varnish",
                "-s",
                "malloc,32m",
            ),
            ("@PROGRAM@", "-V"),
            r"varnish-(\S+)",
        ),
        PackagedProxy(
            "apache",
            "apache2",
            "apache2",
            "apache.conf",
            ("@PROGRAM@", "-f", "@CONFIG@", "-DFOREGROUND"),
            ("@PROGRAM@", "-v"),
            r"Apache/(\S+)",
        ),
        PackagedProxy(
            "caddy",
            "caddy",
            "caddy (in Debian 13 and later)",
            "Caddyfile",
            ("@PROGRAM@", "run", "--config", "@CONFIG@", "--adapter", "caddyfile"),
            ("@PROGRAM@", "version"),
            r"v(\S+)",
        ),
        PackagedProxy(
            "trafficserver",
            "traffic_server",
            "trafficserver",
            "",
            (),
            ("@PROGRAM@", "-V"),
            r"Version: (\S+)",
        ),
    )
}


def program(proxy: PackagedProxy) -> str:
    """The proxy's program, or :class:`NotInstalled`."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    found = shutil.which(proxy.program, path=path)
    if found is None:
        raise NotInstalled(
            f"{proxy.name} is not installed ({proxy.program} is not on PATH nor in /usr/sbin); "
            f"on Debian: apt-get install {proxy.package}"
        )
    if not proxy.config:
        raise NotInstalled(
            f"{proxy.name} is installed but no configuration ships for it yet: run it "
            "yourself and use --url URL --origin-port PORT"
        )
    return found


def template(proxy: PackagedProxy) -> str:
    """The shipped configuration, placeholders and all."""
    return (resources.files(__package__) / "configs" / proxy.config).read_text("utf-8")


def version(proxy: PackagedProxy, binary: str) -> str:
    """``"nginx 1.22.1"``: the proxy's name and the version its program reports."""
    argv = [binary if part == "@PROGRAM@" else part for part in proxy.version_argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{proxy.name} (version unknown: {exc})"
    found = re.search(proxy.version_pattern, done.stdout + done.stderr)
    return f"{proxy.name} {found.group(1) if found else '(version unknown)'}"


@dataclass(frozen=True)
class Running:
    """A started proxy: its ``url``, ``version``, the ``config`` text it runs with, and the
    shipped file's name ``config_name``."""

    url: str
    version: str
    config: str
    config_name: str
    process: ServerProcess


@contextmanager
def started(
    name: str, origin_port: int, *, startup_timeout: float = 20.0, config: str | None = None
) -> Iterator[Running]:
    """Start the packaged proxy ``name`` in front of ``127.0.0.1:origin_port``; stop it after.

    ``config`` is a template (same placeholders) to run instead of the shipped one."""
    if name not in PROXIES:
        raise ValueError(f"unknown proxy {name!r}: choose one of {', '.join(PROXIES)}")
    proxy = PROXIES[name]
    binary = program(proxy)
    with tempfile.TemporaryDirectory(prefix=f"deproxy-{name}-") as directory:
        os.chmod(directory, 0o755)  # proxies that drop privileges still read their config
        port = free_port()
        values = {"@DIR@": directory, "@PORT@": str(port), "@ORIGIN_PORT@": str(origin_port)}
        text = template(proxy) if config is None else config
        for key, value in values.items():
            text = text.replace(key, value)
        path = os.path.join(directory, proxy.config)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        values |= {"@PROGRAM@": binary, "@CONFIG@": path}
        argv = [_fill(part, values) for part in proxy.argv]
        process = ServerProcess(argv, port, name=name, startup_timeout=startup_timeout)
        with process:
            yield Running(
                f"http://127.0.0.1:{port}", version(proxy, binary), text, proxy.config, process
            )


def _fill(part: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        part = part.replace(key, value)
    return part
