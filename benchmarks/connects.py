"""A burst of simultaneous connections: how long until every one is accepted and answered.

    python benchmarks/connects.py [--connections 1000] [--kind endpoint]

The client (in a process of its own, on wrk's core: benchmarks/load.py) starts ``connections``
non-blocking connects at once, sends one GET on each as soon as it is connected, and stops the
clock when the last answer's head has arrived. A connection refused, reset or unanswered
within ``--timeout`` seconds counts as not accepted. A listen queue that overflows shows as
whole seconds here: Linux retries a dropped SYN after one second.
"""

from __future__ import annotations

import argparse
import errno
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from load import WRK_PREFIX, Server  # noqa: E402


def burst(port: int, connections: int, timeout: float) -> tuple[float, int]:
    """(seconds until the last answer, connections answered)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < connections + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 64), hard))
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    answered = 0
    started = time.perf_counter()
    last = started
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            continue
        selector.register(sock, selectors.EVENT_WRITE, b"")
    deadline = started + timeout
    while selector.get_map() and time.perf_counter() < deadline:
        for key, events in selector.select(max(0.0, deadline - time.perf_counter())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    selector.unregister(sock)
                    sock.close()
                    continue
                sock.send(request)
                selector.modify(sock, selectors.EVENT_READ, b"")
                continue
            try:
                data = key.data + sock.recv(4096)
            except OSError:
                data = b""
                selector.unregister(sock)
                sock.close()
                continue
            if b"\r\n\r\n" in data:
                answered += data.startswith(b"HTTP/1.1 200")
                last = time.perf_counter()
                selector.unregister(sock)
                sock.close()
            elif not data:
                selector.unregister(sock)
                sock.close()
            else:
                selector.modify(sock, selectors.EVENT_READ, data)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return last - started, answered


def measure(
    kind: str, connections: int, timeout: float = 10.0, tree: Path | None = None
) -> tuple[float, int]:
    """Start a ``kind`` server (servers.py), burst it from a client process, stop it."""
    with Server(kind, tree=tree) as server:
        client = [sys.executable, __file__, "--client", str(server.port)]
        client += ["--connections", str(connections), "--timeout", str(timeout)]
        done = subprocess.run(
            [*WRK_PREFIX, *client],
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            check=True,
        )
    seconds, answered = done.stdout.split()
    return float(seconds), int(answered)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--kind", default="endpoint", help="a server kind of servers.py")
    options = parser.parse_args()
    if options.client is not None:
        print(*burst(options.client, options.connections, options.timeout))
        return 0
    seconds, answered = measure(options.kind, options.connections, options.timeout)
    print(
        f"{options.kind}: {answered}/{options.connections} answered, the last after {seconds:.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
