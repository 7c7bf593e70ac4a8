"""The limit for a Python endpoint on this machine: a bare selector loop on one thread that
reads request heads with the project's own head reader (:mod:`pytest_deproxy.heads`) and
answers each with a canned reply. No recording, no routing, no handler, no defaults.

    from floor_selector import start
    floor = start()            # port 0: a free port; floor.port is the one taken
    ...                        # load http://127.0.0.1:{floor.port}/
    floor.stop()

Run as a script, it serves on ``--port`` until interrupted (``--core`` pins it to a CPU).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import threading

from pytest_deproxy import heads

REPLY = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Length: 0\r\n\r\n"
MAX_HEAD = 64 * 1024


class SelectorFloor:
    """One thread, one selector: accept until none wait, read, answer every whole request."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, port), backlog=4096)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._waker_read, self._waker_write = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="floor-selector", daemon=True)

    def start(self) -> SelectorFloor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._waker_write.send(b"x")
        self._thread.join(5)
        self._listener.close()
        self._waker_read.close()
        self._waker_write.close()

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._waker_read, selectors.EVENT_READ, False)
        pending: dict[socket.socket, bytes] = {}
        try:
            while not self._stopping:
                for key, _ in selector.select():
                    if key.data is None:
                        self._accept(selector, pending)
                    elif key.data is not False:
                        self._serve(selector, pending, key.fileobj)  # type: ignore[arg-type]
        finally:
            for sock in pending:
                sock.close()
            selector.close()

    def _accept(
        self, selector: selectors.BaseSelector, pending: dict[socket.socket, bytes]
    ) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending[sock] = b""
            selector.register(sock, selectors.EVENT_READ, True)

    @staticmethod
    def _serve(
        selector: selectors.BaseSelector, pending: dict[socket.socket, bytes], sock: socket.socket
    ) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(sock)
            del pending[sock]
            sock.close()
            return
        buffer = pending[sock] + data
        replies = []
        while True:
            head = heads.read_request_head(buffer, MAX_HEAD)
            if head is None:
                break
            end = head.size + head.content_length
            if len(buffer) < end:
                break
            buffer = buffer[end:]
            replies.append(REPLY)
        pending[sock] = buffer
        if replies:
            try:
                sock.send(b"".join(replies))
            except OSError:
                selector.unregister(sock)
                del pending[sock]
                sock.close()


def start(port: int = 0, host: str = "127.0.0.1") -> SelectorFloor:
    """Start the floor server on ``host:port`` (0: a free port) in a thread; ``.stop()`` ends it."""
    return SelectorFloor(port, host).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--core", type=int, default=None, help="pin to this CPU")
    options = parser.parse_args()
    if options.core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {options.core})
    floor = start(options.port)
    print(f"floor selector loop on 127.0.0.1:{floor.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        floor.stop()


if __name__ == "__main__":
    main()
