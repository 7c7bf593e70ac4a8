"""A received request whose body has not been read yet: what a handler that may refuse the
body a client only announced (``Expect: 100-continue``, ``context.send_continue``) is given.

Rule kept here: the head is there at once; the body, its raw bytes and the trailers are read
(by the function given, once, after ``100 Continue`` unless the handler refused it) when the
handler first asks for them, and cannot be changed. HTTP/1.1 (:mod:`~pytest_deproxy.expecting`)
and HTTP/2 (:mod:`~pytest_deproxy.h2serve`) give the same request.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import Headers, Request


class RequestAwaitingBody(Request):
    """A request whose head has arrived and whose body is read when first asked for."""

    def __init__(self, head: Request, read: Callable[[], Request]) -> None:
        self.method, self.path, self.http_version = head.method, head.path, head.http_version
        self.headers = head.headers
        self._read = read

    @property
    def body(self) -> str | bytes:
        return self._read().body

    @body.setter
    def body(self, value: str | bytes) -> None:
        raise AttributeError("a received request's body cannot be changed")

    @property
    def raw_body(self) -> bytes:
        return self._read().raw_body

    @raw_body.setter
    def raw_body(self, value: bytes) -> None:
        raise AttributeError("a received request's body cannot be changed")

    @property
    def trailers(self) -> Headers:
        return self._read().trailers

    @trailers.setter
    def trailers(self, trailers: Headers) -> None:
        raise AttributeError("a received request's trailers cannot be changed")

    @property
    def has_trailers(self) -> bool:
        return self._read().has_trailers
