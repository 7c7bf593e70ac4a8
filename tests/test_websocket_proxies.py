"""WebSocket through real proxies: nginx, haproxy and Apache (mod_proxy_wstunnel), with the
client (deproxy.websocket) on one side and an endpoint (handlers.websocket) on the other, so
each test sees both: what the client sent, what the endpoint received after the proxy, and back.

"apache" is Apache as its documentation configures WebSocket (``ProxyPass / ws://...`` with
mod_proxy_wstunnel loaded, which since 2.4.47 hands the tunnel to mod_proxy_http);
"apache-wstunnel" turns that hand-over off (``ProxyWebsocketFallbackToProxyHttp Off``), so
mod_proxy_wstunnel tunnels itself. What each test pins about each proxy is in its asserts;
how each ends an idle tunnel is ``IDLE_CLOSE``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, DeproxyTimeout, Endpoint, handlers
from pytest_deproxy.process import ServerProcess, free_port
from pytest_deproxy.websocket import WebSocketSession

from .conftest import echo_in_many_sessions, eventually, find_program, open_fds

EndpointFactory = Callable[..., Endpoint]
IDLE = 1  # seconds: each proxy's idle timeout for a tunnel, in the timeout tests
PROXIES = ["nginx", "haproxy", "apache", "apache-wstunnel"]
# How the endpoint's side of a tunnel ends when the proxy's idle timeout fires: nginx and
# Apache close it (FIN), haproxy resets it (RST); the client's side gets a FIN from all
# three, and no close frame. Apache's own wstunnel applies no idle timeout at all (2.4.71:
# not Timeout, ProxyTimeout nor the worker's timeout=).
IDLE_CLOSE = {"nginx": "client", "haproxy": "reset", "apache": "client"}

NGINX_CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx-{port}.pid;
error_log {dir}/nginx-{port}.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port}{ssl};
{tls}
        location / {{
            proxy_pass http://127.0.0.1:{origin};
            proxy_read_timeout {idle}s;
{upgrade}
        }}
    }}
}}
"""
NGINX_UPGRADE = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
"""

HAPROXY_CONFIG = """
global
  maxconn 1024
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout tunnel {idle}s
frontend front
  bind 127.0.0.1:{port}
  default_backend back
backend back
{upgrade}
  server origin 127.0.0.1:{origin}
"""
HAPROXY_NO_UPGRADE = "  http-request del-header Upgrade\n  http-request del-header Connection\n"

APACHE_MODULES = ["mpm_event", "authz_core", "proxy", "proxy_http", "proxy_wstunnel"]
APACHE_CONFIG = """
ServerRoot {dir}
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {dir}/apache-{port}.pid
DefaultRuntimeDir {dir}
ErrorLog {dir}/apache-{port}.log
LogLevel warn
User nobody
Group nogroup
{modules}
Timeout {idle}
ProxyTimeout {idle}
ProxyWebsocketFallbackToProxyHttp {fallback}
{upgrade}
"""
APACHE_UPGRADE = (
    "ProxyPass / ws://127.0.0.1:{origin}/ timeout={idle}\n"  # mod_proxy_wstunnel itself
)
APACHE_NO_UPGRADE = "ProxyPass / http://127.0.0.1:{origin}/\n"  # mod_proxy_http, no upgrade=

Proxy = Callable[..., str]


class Proxies:
    """Starts real proxies in front of an origin port; stops every one at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ServerProcess] = []

    def start(
        self,
        kind: str,
        origin: int,
        *,
        upgrade: bool = True,
        idle: int = 30,
        tls: tuple[str, str] | None = None,
    ) -> str:
        """The URL of a ``kind`` proxy to 127.0.0.1:``origin``; ``upgrade=False`` leaves out
        what forwards an upgrade; ``idle`` is its idle timeout for a tunnel, in seconds."""
        port = free_port()
        if kind == "nginx":
            binary = find_program("nginx", "nginx-light")
            config = NGINX_CONFIG.format(
                dir=self.directory,
                port=port,
                origin=origin,
                idle=idle,
                ssl=" ssl" if tls else "",
                tls=f"ssl_certificate {tls[0]};\nssl_certificate_key {tls[1]};" if tls else "",
                upgrade=NGINX_UPGRADE if upgrade else "",
            )
            path = self.directory / f"nginx-{port}.conf"
            argv = [binary, "-p", str(self.directory), "-c", str(path), "-e", "stderr"]
        elif kind == "haproxy":
            binary = find_program("haproxy", "haproxy")
            config = HAPROXY_CONFIG.format(
                port=port,
                origin=origin,
                idle=idle,
                upgrade="" if upgrade else HAPROXY_NO_UPGRADE,
            )
            path = self.directory / f"haproxy-{port}.cfg"
            argv = [binary, "-f", str(path), "-db"]
        elif kind.startswith("apache"):
            binary = find_program("apache2", "apache2")
            modules = "\n".join(
                f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so"
                for name in APACHE_MODULES
            )
            config = APACHE_CONFIG.format(
                dir=self.directory,
                port=port,
                idle=idle,
                modules=modules,
                fallback="Off" if kind == "apache-wstunnel" else "On",
                upgrade=(APACHE_UPGRADE if upgrade else APACHE_NO_UPGRADE).format(
                    origin=origin, idle=idle
                ),
            )
            path = self.directory / f"apache-{port}.conf"
            argv = [binary, "-f", str(path), "-DFOREGROUND"]
        else:
            raise ValueError(kind)
        path.write_text(config)
        self.started.append(ServerProcess(argv, port, name=kind.split("-")[0]).start())
        return f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Proxies]:
    started = Proxies(tmp_path)
    yield started
    started.stop()


def through(
    proxies: Proxies, endpoint: EndpointFactory, kind: str, handler: object, **options: object
) -> tuple[str, Endpoint]:
    server = endpoint(kind + "-origin", handler)
    return proxies.start(kind, server.port, **options), server  # type: ignore[arg-type]


def both_sides(session: WebSocketSession, server: Endpoint) -> list[tuple[str, bytes]]:
    """The frames the client saw and those the endpoint saw, as (opcode, payload) each, once
    the endpoint has logged as many as the client."""
    handling = server.handlings[-1]
    eventually(lambda: len(handling.frames) >= len(session.frames))
    client = [(f.opcode, f.payload) for f in session.frames]
    assert [(f.opcode, f.payload) for f in handling.frames] == client, session.chain.diagram()
    return client


# -- through each proxy ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROXIES)
def test_echo_of_text_and_binary(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    url, server = through(proxies, endpoint, kind, handlers.websocket())
    with deproxy.websocket(url + "/echo", subprotocols=["chat"]) as session:
        assert session.open, f"{session.error}\n{session.chain.diagram()}"
        session.send("hello through " + kind)
        assert session.receive() == "hello through " + kind
        session.send(b"\x00\x01\xfe\xff")
        assert session.receive() == b"\x00\x01\xfe\xff"
    [handling] = session.chain.handlings
    request = handling.request
    assert request.headers.has_token("Upgrade", "websocket")
    assert request.headers.has_token("Connection", "upgrade")
    assert request.http_version == "1.1"
    assert request.headers["Sec-WebSocket-Protocol"] == "chat"
    assert (
        request.headers["Sec-WebSocket-Key"]
        == session.chain.sent_request.headers["Sec-WebSocket-Key"]
    )
    assert both_sides(session, server) == [
        ("text", b"hello through " + kind.encode()),
        ("text", b"hello through " + kind.encode()),
        ("binary", b"\x00\x01\xfe\xff"),
        ("binary", b"\x00\x01\xfe\xff"),
        ("close", b"\x03\xe8"),
        ("close", b"\x03\xe8"),
    ]


@pytest.mark.parametrize("kind", PROXIES)
def test_a_one_megabyte_message(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    url, server = through(proxies, endpoint, kind, handlers.websocket())
    payload = os.urandom(1024 * 1024)
    with deproxy.websocket(url) as session:
        assert session.open, session.error
        session.send(payload)
        assert session.receive(timeout=20) == payload
    assert server.handlings[0].frames[0].payload == payload


@pytest.mark.parametrize("kind", PROXIES)
def test_ping_and_pong_cross_the_proxy(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    pings: list[bytes] = []

    def on_open(session: handlers.ServerSession) -> None:
        session.ping(b"from the endpoint")
        pings.append(b"sent")

    url, server = through(proxies, endpoint, kind, handlers.websocket(on_open=on_open))
    with deproxy.websocket(url) as session:
        assert session.ping(b"from the client") >= 0
        eventually(
            lambda: (
                ("pong", b"from the endpoint")
                in [(f.opcode, f.payload) for f in server.handlings[0].frames]
            )
        )
    frames = [(f.direction, f.opcode, f.payload) for f in server.handlings[0].frames]
    assert ("received", "ping", b"from the client") in frames
    assert ("sent", "pong", b"from the client") in frames
    client = [(f.direction, f.opcode, f.payload) for f in session.frames]
    assert ("received", "ping", b"from the endpoint") in client  # the client answered it


@pytest.mark.parametrize("kind", PROXIES)
def test_close_codes_pass_through_both_ways(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    url, server = through(proxies, endpoint, kind, handlers.websocket_close(4002, "bye"))
    session = deproxy.websocket(url)
    assert session.wait_closed(timeout=10)
    session.close()
    assert (session.closed_by, session.close_code, session.close_reason) == ("server", 4002, "bye")
    url, server = through(proxies, endpoint, kind, handlers.websocket())
    with deproxy.websocket(url) as session:
        session.close(4003, "client leaving")
    frames = server.handlings[0].frames
    eventually(lambda: len(frames) == 2)
    assert (frames[0].direction, frames[0].payload) == ("received", b"\x0f\xa3client leaving")


@pytest.mark.parametrize("kind", list(IDLE_CLOSE))
def test_the_proxy_idle_timeout_closes_the_tunnel(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    url, server = through(proxies, endpoint, kind, handlers.websocket(), idle=IDLE)
    session = deproxy.websocket(url)
    session.send("then silence")
    assert session.receive() == "then silence"
    # The proxy's idle timer starts no sooner than the endpoint sent its echo: timed from
    # there, a client scheduled late under load does not make the proxy look early.
    echoes = [f.at for f in server.handlings[0].frames if f.direction == "sent"]
    last = max(echoes)
    assert session.wait_closed(timeout=IDLE + 20), session.chain.diagram()
    session.close()
    # The proxy closed both sides without a close frame, no sooner than its timeout.
    assert (session.closed_by, session.close_code) == ("server", 1006)
    assert session.close_reason == "closed without a close frame"  # a FIN, not a reset
    assert session.closed_at is not None and session.closed_at - last >= IDLE * 0.9
    eventually(lambda: server.connections[0].closed_by is not None)
    assert server.connections[0].closed_by == IDLE_CLOSE[kind]
    closed_at = server.connections[0].closed_at
    assert closed_at is not None and closed_at - last >= IDLE * 0.9
    print(
        f"\n{kind} idle timeout {IDLE} s: client side closed after "
        f"{session.closed_at - last:.2f} s, endpoint side after {closed_at - last:.2f} s"
    )


def test_apache_wstunnel_applies_no_idle_timeout(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies
) -> None:
    url, server = through(proxies, endpoint, "apache-wstunnel", handlers.websocket(), idle=IDLE)
    with deproxy.websocket(url) as session:
        assert not session.wait_closed(timeout=IDLE * 3)
        session.send("still open")
        assert session.receive() == "still open"
    assert server.connections[0].closed_by == "client"  # our close, relayed


@pytest.mark.parametrize("kind", ["nginx", "haproxy", "apache"])
def test_a_proxy_that_does_not_forward_the_upgrade_fails_the_handshake_visibly(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, kind: str
) -> None:
    url, _ = through(proxies, endpoint, kind, handlers.websocket(), upgrade=False)
    session = deproxy.websocket(url + "/chat")
    assert not session.open
    assert session.error == "the upgrade was refused: 400 Bad Request", session.chain.diagram()
    [handling] = session.chain.handlings
    assert "Upgrade" not in handling.request.headers  # dropped by the proxy
    assert handling.action is not None
    assert handling.action.startswith(
        "refused the upgrade: not a WebSocket upgrade: Upgrade is None"
    )
    diagram = session.chain.diagram()
    assert "(refused the upgrade: not a WebSocket upgrade" in diagram
    assert "Upgrade: websocket" in diagram.splitlines()[1]  # what the client sent had it


# -- TLS, forward proxies, h2c ----------------------------------------------------------------


def test_wss_through_nginx_terminating_tls(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, tmp_path: Path
) -> None:
    server = endpoint("origin", handlers.websocket())
    files = deproxy.ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    url = proxies.start("nginx", server.port, tls=files)
    with deproxy.websocket(url + "/secure") as session:
        assert session.open, session.error
        session.send("over tls to nginx, plain to the endpoint")
        assert session.receive() == "over tls to nginx, plain to the endpoint"
        session.send(os.urandom(256 * 1024))
        assert len(session.receive()) == 256 * 1024
    assert server.connections[0].tls is None
    assert both_sides(session, server)[0] == ("text", b"over tls to nginx, plain to the endpoint")


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_through_a_forward_proxy_with_connect(
    deproxy: Deproxy, endpoint: EndpointFactory, tinyproxy: Callable[..., str], tls: bool
) -> None:
    server = endpoint("origin", handlers.websocket(), tls=tls)
    url = server.url.replace("http", "ws", 1)
    with deproxy.websocket(url + "/tunnelled", proxy=tinyproxy()) as session:
        assert session.open, session.error
        session.send("through CONNECT")
        assert session.receive() == "through CONNECT"
    [handling] = session.chain.handlings
    assert "Via" not in handling.request.headers  # a tunnel: tinyproxy saw only bytes
    assert (server.connections[0].tls is not None) == tls
    assert both_sides(session, server)[:2] == [("text", b"through CONNECT")] * 2


@pytest.mark.parametrize("upgrade", [False, True], ids=["plain-config", "upgrade-config"])
def test_an_h2c_upgrade_request_is_recorded_as_the_proxy_forwarded_it(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies, upgrade: bool
) -> None:
    server = endpoint("origin")
    url = proxies.start("nginx", server.port, upgrade=upgrade).replace("ws", "http", 1)
    fields = {
        "Connection": "Upgrade, HTTP2-Settings",
        "Upgrade": "h2c",
        "HTTP2-Settings": "AAMAAABk",
    }
    chain = deproxy.make_request(url + "/h2c", headers=fields)
    assert chain.received_response is not None and chain.received_response.code == "200"
    request = chain.handlings[0].request
    assert "HTTP2-Settings" in request.headers  # an end-to-end field to nginx: passed on
    # nginx drops the hop-by-hop Upgrade, unless told to set it from the client's.
    assert request.headers.get("Upgrade") == ("h2c" if upgrade else None)
    assert request.headers.get("Connection") == ("upgrade" if upgrade else "close")


# -- many at once -----------------------------------------------------------------------------


def test_a_hundred_sessions_through_nginx_a_hundred_messages_each(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies
) -> None:
    url, server = through(proxies, endpoint, "nginx", handlers.websocket())
    threads_before, fds_before = threading.active_count(), open_fds()
    sessions, elapsed = echo_in_many_sessions(
        deproxy, lambda number: url + f"/{number}", sessions=100, messages=100, join=120
    )
    assert len(sessions) == 100 and all(len(s.frames) == 202 for s in sessions)
    eventually(lambda: sum(1 for c in server.connections if c.closed_by) == 100, seconds=30)
    for handling in server.handlings:
        number = handling.request.path.strip("/")
        received = [
            f.payload for f in handling.frames if f.opcode == "text" and f.direction == "received"
        ]
        assert received == [f"{number}:{i}".encode() for i in range(100)]
    eventually(lambda: threading.active_count() <= threads_before)
    eventually(lambda: open_fds() <= fds_before)
    print(f"\n100 sessions x 100 round trips through nginx: {10000 / elapsed:.0f} messages/s")


def test_an_idle_session_without_a_proxy_timeout_stays_open(
    deproxy: Deproxy, endpoint: EndpointFactory, proxies: Proxies
) -> None:
    """The counterpart of the idle-timeout tests: with a long timeout, the same silence
    closes nothing (so the closes above are the proxies' doing)."""
    url, _ = through(proxies, endpoint, "haproxy", handlers.websocket(), idle=30)
    with deproxy.websocket(url) as session:
        with pytest.raises(DeproxyTimeout):
            session.receive(timeout=IDLE * 2)
        assert session.open
        session.send("still here")
        assert session.receive() == "still here"
