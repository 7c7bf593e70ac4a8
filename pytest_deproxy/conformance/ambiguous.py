"""One ambiguous request, and the few helpers every family builds its requests with.

Rules kept here: pure, no socket, no thread. A request is data: an id, a family, one
sentence on what is odd, the RFC section, its bytes with ``{host}`` and ``{request_id}``
placeholders, and the function that rebuilds those bytes for real values so that every
``Content-Length`` and chunk size counts the bytes actually sent. Every request built here
has the tracking line ``Deproxy-Request-ID: {request_id}``; the smuggled request hidden in
bodies is ``GET /smuggled-{request_id}`` with its own ``Host`` and tracking lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SIZE = 16 * 1024
"""No request in the corpus is larger, placeholders filled in with values of 100 bytes."""

Build = Callable[[bytes, bytes], bytes]
"""``build(host, request_id)``: a request's bytes, its lengths counted over those values."""

_ID = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_REFERENCE = re.compile(r"RFC 911[02] §[0-9]+(?:\.[0-9]+)*")
_PLACEHOLDER_SAFE = re.compile(r"[!-~]+")  # a host or id goes into a head: visible ASCII only


@dataclass(frozen=True)
class AmbiguousRequest:
    """One ambiguous request of the corpus.

    ``data`` holds the placeholders ``{host}`` and ``{request_id}``; send
    :meth:`render`'s bytes, which fill them in and count every ``Content-Length`` and chunk
    size over the filled-in values. ``odd`` is a regular expression (bytes) that finds the
    odd element when it is valid syntax a strict reader cannot object to (``CHUNKED``, a
    conflicting host): if it matches what reached the backend, the ambiguity was forwarded.
    ``valid`` is true for requests that are valid HTTP/1.1 and only stress readers (a head
    near common size limits, a GET with a body): forwarding those unchanged is fine.
    """

    id: str
    family: str
    description: str
    reference: str
    data: bytes
    odd: bytes = b""
    valid: bool = False
    build: Build | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise ValueError(f"the id {self.id!r} must be lower-case words joined by . or -")
        if not _REFERENCE.fullmatch(self.reference):
            raise ValueError(f"the reference {self.reference!r} must be like 'RFC 9112 §6.3'")
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")
        try:
            re.compile(self.odd)
        except (re.error, TypeError) as exc:
            raise ValueError(f"odd must be a regular expression in bytes: {exc}") from exc

    def render(self, host: str, request_id: str) -> bytes:
        """The bytes to send: ``{host}`` and ``{request_id}`` filled in, lengths recounted.

        ``make_raw_request`` replaces its placeholder with an id of the same length as
        :func:`pytest_deproxy.client.new_request_id`'s, so rendering with such an id and
        passing it as the placeholder keeps every length right.
        """
        for what, value in (("host", host), ("request_id", request_id)):
            if not isinstance(value, str) or not _PLACEHOLDER_SAFE.fullmatch(value):
                raise ValueError(f"{what} must be visible ASCII with no spaces, got {value!r}")
        if self.build is None:
            return self.data.replace(b"{host}", host.encode()).replace(
                b"{request_id}", request_id.encode()
            )
        return self.build(host.encode(), request_id.encode())


def request_bytes(
    host: bytes,
    rid: bytes,
    fields: list[bytes],
    body: bytes = b"",
    *,
    line: bytes = b"",
    with_host: bool = True,
) -> bytes:
    """A request with CRLF line ends: ``line`` (POST or GET by body), Host, the tracking id,
    ``Accept`` (so a folded line has a field to join), then ``fields``."""
    line = line or (b"POST / HTTP/1.1" if body else b"GET / HTTP/1.1")
    lines = [line, *([b"Host: " + host] if with_host else [])]
    lines += [b"Deproxy-Request-ID: " + rid, b"Accept: */*", *fields]
    return b"".join(each + b"\r\n" for each in lines) + b"\r\n" + body


def smuggled(host: bytes, rid: bytes) -> bytes:
    """The request hidden in bodies: the backend receiving it is proof of a desync."""
    head = b"GET /smuggled-%s HTTP/1.1\r\nHost: %s\r\n" % (rid, host)
    return head + b"Deproxy-Request-ID: " + rid + b"\r\n\r\n"


def chunked_smuggle(host: bytes, rid: bytes) -> bytes:
    """A chunked body that ends at once, the smuggled request after it (for the CL.TE form)."""
    return b"0\r\n\r\n" + smuggled(host, rid)


def entry(
    id: str,
    family: str,
    description: str,
    reference: str,
    build: Build,
    odd: bytes = b"",
    valid: bool = False,
) -> AmbiguousRequest:
    """A request of the corpus, its ``data`` built with the placeholders themselves."""
    data = build(b"{host}", b"{request_id}")
    return AmbiguousRequest(id, family, description, reference, data, odd, valid, build)
