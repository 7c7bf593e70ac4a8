"""Helpers for the project's own tests."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_deproxy import Deproxy, MessageChain, Response, WebSocketSession
from pytest_deproxy.conformance import proxies
from pytest_deproxy.pollthreads import IDLE_NAME
from pytest_deproxy.process import ServerProcess, free_port


class MemoryStream:
    """Feeds prepared bytes a few at a time, and keeps what is written."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self._data = data
        self._piece = piece
        self.written = b""

    def read(self, max_bytes: int = 65536) -> bytes:
        taken, self._data = self._data[: self._piece], self._data[self._piece :]
        return taken

    def write(self, data: bytes) -> None:
        self.written += data


@dataclass
class RawServer:
    """A one-shot TCP server: reads what a client sends, answers with fixed bytes, records both."""

    reply: bytes
    read_until: Callable[[bytes], bool] = field(default=lambda data: b"\r\n\r\n" in data)
    received: bytes = b""
    port: int = 0
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 5.0) -> bytes:
        assert self._done.wait(timeout), "the raw server saw no complete request"
        return self.received


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Start raw servers: ``raw_server(reply=b"HTTP/1.1 200 OK...", read_until=...)``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(reply: bytes = b"", read_until: Callable[[bytes], bool] | None = None) -> RawServer:
        server = RawServer(reply)
        if read_until is not None:
            server.read_until = read_until
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        server.port = listener.getsockname()[1]
        listeners.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while not server.read_until(data):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                finally:
                    server.received = data
                    server._done.set()
                if server.reply:
                    conn.sendall(server.reply)

        thread = threading.Thread(target=serve, name="raw-server", daemon=True)
        thread.start()
        threads.append(thread)
        return server

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def send_raw(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send bytes to 127.0.0.1:port, half-close, and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def find_program(name: str, package: str) -> str:
    """The path of a program the test drives, or a skip that says how to install it."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install {package})")
    return found


@contextmanager
def packaged_proxy(name: str, origin_port: int, config: str) -> Iterator[proxies.Running]:
    """Start the conformance runner's proxy ``name`` (its program, argv and scratch directory:
    :func:`pytest_deproxy.conformance.proxies.started`) with ``config``, a template with
    ``@PORT@``, ``@ORIGIN_PORT@`` and ``@DIR@``; skip, saying how to install it, when absent."""
    proxy = proxies.PROXIES[name]
    find_program(proxy.program, proxy.package)
    with proxies.started(name, origin_port, config=config) as running:
        yield running


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a real tinyproxy forward proxy: ``tinyproxy(connect_ports=None)`` returns its URL.

    ``connect_ports`` limits the ports CONNECT may reach (tinyproxy's ``ConnectPort``).
    """
    binary = find_program("tinyproxy", "tinyproxy")
    started: list[ServerProcess] = []

    def start(connect_ports: list[int] | None = None) -> str:
        port = free_port()
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 10",
            "MaxClients 64",
            "LogLevel Info",
            "User nobody",
            "Group nogroup",
        ]
        lines += [f"ConnectPort {p}" for p in connect_ports or []]
        config = tmp_path / f"tinyproxy-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        started.append(ServerProcess([binary, "-d", "-c", str(config)], port, name="tinyproxy"))
        started[-1].start()
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.stop()


def write_interaction(
    root: Path,
    scenario: str,
    service: str,
    name: str,
    *,
    method: str = "GET",
    url: str,
    body: str = "",
    extra: str = "",
    request_body: str | None = None,
) -> Path:
    """Write one INSPIRE-MITMProxy interaction file, for tests."""
    path = root / scenario / service / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    request_body_yaml = "null" if request_body is None else repr(request_body)
    path.write_text(
        f"request:\n  method: {method}\n  url: {url}\n  headers: {{}}\n  body: {request_body_yaml}\n"
        f"response:\n  status: {{code: 200, message: OK}}\n"
        f"  headers:\n    Content-Type: [text/plain]\n  body: {body!r}\n" + extra
    )
    return path


def working_threads() -> list[threading.Thread]:
    """Deproxy's threads that are serving something. The session's pool keeps the deproxy
    fixture's poll threads waiting for the next test's endpoints, named ``IDLE_NAME``: they
    serve nothing, and are not counted."""
    return [
        t for t in threading.enumerate() if t.name.startswith("deproxy-") and t.name != IDLE_NAME
    ]


def eventually(predicate: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` is true: for what a server thread records after its client
    has already moved on (a refused handshake, a delayed callback). Fails after ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"still not true after {seconds} s"
        time.sleep(0.01)


@contextmanager
def deproxy_checking_its_own_errors() -> Iterator[Deproxy]:
    """A Deproxy for a test that causes errors in endpoint threads and checks them itself: it
    is shut down without raising them (leaving ``with Deproxy()`` raises them)."""
    deproxy = Deproxy()
    try:
        yield deproxy
    finally:
        deproxy.shutdown()


def answered(chain: MessageChain) -> Response:
    """The chain's received response; fails the test, saying why, when there is none."""
    if chain.received_response is None:
        pytest.fail(f"no response came back: {chain.error}\n{chain.diagram()}")
    return chain.received_response


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def echo_in_many_sessions(
    deproxy: Deproxy, url_of: Callable[[int], str], sessions: int, messages: int, join: float
) -> tuple[list[WebSocketSession], float]:
    """Open ``sessions`` WebSockets at once, each sending ``messages`` and checking each echo;
    the sessions and the seconds it took. A failure in any session fails the test here."""
    failures: list[BaseException] = []
    opened: list[WebSocketSession] = []

    def talk(number: int) -> None:
        try:
            with deproxy.websocket(url_of(number), timeout=30) as session:
                opened.append(session)
                for i in range(messages):
                    session.send(f"{number}:{i}")
                    assert session.receive() == f"{number}:{i}"
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    started = time.perf_counter()
    clients = [
        threading.Thread(target=talk, args=(n,), name=f"client-{n}") for n in range(sessions)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(join)
    assert not failures, failures[:3]
    return opened, time.perf_counter() - started


def bodiless_answers(
    port: int, data: bytes, answers: int, sock: socket.socket | None = None
) -> bytes:
    """Send ``data`` (on ``sock``, or on a new connection closed after) and read until
    ``answers`` bodiless answers came; what came."""
    own = sock is None
    if sock is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data)
        got = b""
        while got.count(b"\r\n\r\n") < answers:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        return got
    finally:
        if own:
            sock.close()


def counting(calls: list[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, appending ``name`` to ``calls`` each time it is called (to patch in)."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return function(*args, **kwargs)

    return counted
