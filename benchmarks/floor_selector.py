"""The limit for a Python endpoint on this machine: one selector loop, the project's own head
reader (``pytest_deproxy.heads``) and a canned reply, nothing else.

    start_floor_selector(port=0) -> ((host, port), stop)   # serves on a thread until stop()
    python benchmarks/floor_selector.py [--port N]         # serves until Ctrl-C

Rule kept here: it does the least an HTTP/1.1 endpoint must and nothing more - it accepts
every waiting connection on each wake-up (listen queue 4,096), reads each request head with
``heads.glance_request_head`` (as the endpoint's poll thread does: the grammar checked whole,
the fields left unsplit when only ``Host`` matters), skips a ``Content-Length`` body, and answers each request with
the same bytes the endpoint's stock handler sends (status line, ``Server``, ``Date``,
``Content-Length: 0``), pipelined requests included. No recording, no handler, no thread per
connection. A request the head reader declines closes the connection: this is a baseline for
ordinary traffic, not a server. ``benchmarks/run.py`` measures the endpoint against it.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading
from collections.abc import Callable
from email.utils import formatdate

from pytest_deproxy import __version__
from pytest_deproxy.heads import Head, glance_request_head

MAX_HEAD = 64 * 1024
REPLY = (
    "HTTP/1.1 200 OK\r\n"
    f"Server: pytest-deproxy/{__version__}\r\n"
    f"Date: {formatdate(usegmt=True)}\r\n"
    "Content-Length: 0\r\n\r\n"
).encode("ascii")


def _answer(buffer: bytearray) -> bytes | None:
    """The replies to every complete request at the start of ``buffer`` (removed from it);
    ``None`` when a request is one the head reader declines."""
    replies = b""
    while buffer:
        head = glance_request_head(bytes(buffer), MAX_HEAD)
        if head is None:
            if b"\r\n\r\n" in buffer or len(buffer) > MAX_HEAD:
                return None  # a complete head it declines: not ordinary traffic
            break  # the rest of the head is still to come
        # A glance (a plain tuple ending with the head's size) is a head with no body.
        end = head.size + head.content_length if isinstance(head, Head) else head[-1]
        if len(buffer) < end:
            break  # the body is still to come
        del buffer[:end]
        replies += REPLY
    return replies


def serve(listener: socket.socket, stopping: threading.Event) -> None:
    """Answer on ``listener`` until ``stopping`` is set (checked every 0.1 s)."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    buffers: dict[socket.socket, bytearray] = {}

    def close(sock: socket.socket) -> None:
        selector.unregister(sock)
        del buffers[sock]
        sock.close()

    try:
        while not stopping.is_set():
            for key, _ in selector.select(0.1):
                if key.data is None:  # the listener: accept every connection that waits
                    while True:
                        try:
                            sock, _ = listener.accept()
                        except BlockingIOError:
                            break
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        buffers[sock] = bytearray()
                        selector.register(sock, selectors.EVENT_READ, True)
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(sock)
                    continue
                buffer = buffers[sock]
                buffer += data
                replies = _answer(buffer)
                if replies is None:
                    close(sock)
                elif replies:
                    try:
                        sock.sendall(replies)  # small replies: the kernel takes them whole
                    except OSError:
                        close(sock)
    finally:
        for sock in list(buffers):
            close(sock)
        selector.close()
        listener.close()


def start_floor_selector(
    port: int = 0, host: str = "127.0.0.1"
) -> tuple[tuple[str, int], Callable[[], None]]:
    """Serve on a thread; return the address and a function that stops it (and joins)."""
    listener = socket.create_server((host, port), backlog=4096)
    listener.setblocking(False)
    address = listener.getsockname()[:2]
    stopping = threading.Event()
    thread = threading.Thread(
        target=serve, args=(listener, stopping), name="floor-selector", daemon=True
    )
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(5)

    return (address[0], address[1]), stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    (host, port), stop = start_floor_selector(options.port)
    print(f"floor selector on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
