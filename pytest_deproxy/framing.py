"""Reading a request as an endpoint that records must: every message that can be framed is
taken as it came, and only one that cannot be framed unambiguously is refused.

Rules kept here: pure, no socket. Field names, their case, order and duplicates are kept as
received (values lose only the optional whitespace around them, and an obsolete line fold
becomes one space, as RFC 9112 §5.2 lets a recipient do). A request is refused, with the
status to answer and a reason a person can act on, only where RFC 9112 says a server MUST
refuse or cannot know where the message ends: conflicting or invalid ``Content-Length``, a
``Transfer-Encoding`` whose last coding is not ``chunked`` (or chunked twice, or in HTTP/1.0),
whitespace before a colon, CR or NUL inside a field, an invalid chunk, a head over the limit,
a version other than HTTP/1.x. ``Content-Length`` beside ``Transfer-Encoding: chunked`` is
framed as chunked, and the connection must close after the answer (RFC 9112 §6.3).
The same field reader gives the client a response's fields as received (:func:`head_fields`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ProtocolError

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_WHITESPACE = b" \t"
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
MAX_CHUNK_SIZE_DIGITS = 16  # 16 hex digits already mean exabytes: more is an overflow attack


class Unframeable(ProtocolError):
    """A message that cannot be read unambiguously: ``status`` is the answer to send."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    """A request head as received: ``size`` counts its bytes (leading empty lines included),
    ``fields`` are ``(name, value)`` in wire order."""

    method: str
    target: str
    version: str
    fields: list[tuple[str, str]]
    size: int


@dataclass(frozen=True)
class Framing:
    """Where a request's body ends: ``content_length`` bytes, or chunked; and whether the
    connection must close after the answer because the framing was dubious."""

    content_length: int = 0
    chunked: bool = False
    must_close: bool = False


def _lines(head: bytes) -> list[bytes]:
    # RFC 9112 §2.2: a recipient may take a lone LF as a line end (and drop a CR before it).
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


def head_end(data: bytes, start: int = 0) -> int | None:
    """Where the head that begins at ``start`` ends (just past its empty line), if it has."""
    position = start
    while True:
        newline = data.find(b"\n", position)
        if newline < 0:
            return None
        line = data[position:newline]
        if line in (b"", b"\r") and position > start:
            return newline + 1
        position = newline + 1


def head_fields(head: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """The start line and the fields of ``head`` (a whole head, its empty line included), as
    received: names as spelled, order and duplicates kept, values without the whitespace
    around them. Raises :class:`Unframeable` where a field cannot be read at all."""
    lines = _lines(head)[:-2]  # the empty line, and what follows its LF
    return lines[0], _fields(lines[1:])


def _line_end(data: bytes | bytearray, position: int = 0) -> int:
    """The size of the line end (CRLF, or a lone LF) at ``position``; 0 if there is none."""
    if data.startswith(b"\r\n", position):
        return 2
    return 1 if data.startswith(b"\n", position) else 0


def skip_empty_lines(data: bytes) -> int:
    """How many bytes of empty lines precede a request line (RFC 9112 §2.2 asks servers to
    ignore at least one)."""
    position = 0
    while ending := _line_end(data, position):
        position += ending
    return position


def read_request_head(data: bytes, max_size: int) -> RequestHead | None:
    """The request head at the start of ``data``; ``None`` while it is incomplete.

    Raises :class:`Unframeable` when the head cannot be read (431 when over ``max_size``).
    """
    start = skip_empty_lines(data)
    end = head_end(data, start)
    if end is None:
        if len(data) - start > max_size:
            raise Unframeable(f"the request head is over the limit of {max_size} bytes", 431)
        return None
    if end - start > max_size:
        raise Unframeable(f"the request head of {end - start} bytes is over {max_size}", 431)
    lines = _lines(data[start:end])[:-2]  # the empty line, and what follows its LF
    method, target, version = _request_line(lines[0])
    return RequestHead(method, target, version, _fields(lines[1:]), end)


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split()  # RFC 9112 §3: whitespace-delimited words are allowed
    if len(parts) != 3:
        raise Unframeable(f"the request line must be 'METHOD target HTTP/1.1', got {line[:100]!r}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise Unframeable(f"the method {method[:40]!r} is not a token")
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise Unframeable(f"{version[:20]!r} is not an HTTP version like HTTP/1.1")
    if matched.group(1) != b"1":
        raise Unframeable(f"{version.decode()} is not served here (only HTTP/1.0 and 1.1)", 505)
    return method.decode(), target.decode("iso-8859-1"), version[5:].decode()


def _fields(lines: list[bytes]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise Unframeable("whitespace before the first header field (RFC 9112 §2.2)")
            previous_name, previous_value = fields[-1]
            folded = line.strip(_WHITESPACE).decode("iso-8859-1")
            joined = f"{previous_value} {folded}" if previous_value else folded
            fields[-1] = (previous_name, joined)
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise Unframeable(f"a header line without a colon: {line[:100]!r}")
        if not _TOKEN.fullmatch(name):
            trimmed = name.rstrip(_WHITESPACE)
            if trimmed != name and _TOKEN.fullmatch(trimmed):
                raise Unframeable(
                    f"whitespace between the field name {trimmed.decode()!r} and its colon "
                    "(RFC 9112 §5.1)"
                )
            raise Unframeable(f"the field name {name[:60]!r} is not a token")
        if b"\r" in value or b"\x00" in value:
            raise Unframeable(f"a CR or NUL inside the {name.decode()} field (RFC 9110 §5.5)")
        fields.append((name.decode("ascii"), value.strip(_WHITESPACE).decode("iso-8859-1")))
    return fields


def _values(fields: list[tuple[str, str]], name: str) -> list[str] | None:
    """Every comma-separated member of every ``name`` field; ``None`` when there is none."""
    lowered = name.lower()
    found = [value for key, value in fields if key.lower() == lowered]
    if not found:
        return None
    return [member.strip(" \t") for value in found for member in value.split(",")]


def request_framing(head: RequestHead) -> Framing:
    """How the body of the request ``head`` is framed (RFC 9112 §6.3); raises
    :class:`Unframeable` where that cannot be known."""
    codings = _values(head.fields, "Transfer-Encoding")
    lengths = _values(head.fields, "Content-Length")
    if codings is not None:
        if head.version == "1.0":
            raise Unframeable("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
        named = [coding.lower() for coding in codings if coding]
        if not named or named[-1] != "chunked":
            raise Unframeable(
                f"Transfer-Encoding {', '.join(codings)!r} does not end in chunked, so the "
                "body's end cannot be known (RFC 9112 §6.3)"
            )
        if named.count("chunked") > 1:
            raise Unframeable("chunked is applied more than once (RFC 9112 §7)")
        return Framing(chunked=True, must_close=lengths is not None)
    if lengths is None:
        return Framing()
    if not all(_DIGITS.fullmatch(length.encode()) for length in lengths):
        raise Unframeable(f"Content-Length {', '.join(lengths)!r} is not a number")
    if len({int(length) for length in lengths}) > 1:
        raise Unframeable(f"conflicting Content-Length values: {', '.join(lengths)}")
    return Framing(content_length=int(lengths[0]))


class ChunkedBody:
    """Reads a chunked body from bytes given as they arrive.

    :meth:`feed` takes what has arrived; once the last chunk and the trailer section are in,
    ``done`` is true and ``feed`` returns the bytes that followed the body (the next
    message's). ``data`` is the payload, ``trailers`` the trailer fields, ``size`` the body's
    bytes as framed on the wire.
    """

    def __init__(self, max_trailer_size: int = 64 * 1024) -> None:
        self.max_trailer_size = max_trailer_size
        self.data = bytearray()
        self.trailers: list[tuple[str, str]] = []
        self.done = False
        self.size = 0
        self._buffer = bytearray()
        self._remaining: int | None = None  # data left in this chunk; None: at a size line
        self._data_ended = False  # the chunk's data is in; its CRLF is next
        self._in_trailers = False

    def feed(self, incoming: bytes) -> bytes:
        """Take ``incoming``; the bytes after the body once it is complete, else ``b""``."""
        self._buffer += incoming
        while not self.done:
            taken = self._step()
            if taken == 0:
                return b""
            self.size += taken
            del self._buffer[:taken]
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def _step(self) -> int:
        """Read one part (a size line, data, the CRLF after data, the trailers) if it is all
        here; how many bytes it took (0: wait for more)."""
        buffer = self._buffer
        if self._in_trailers:
            return self._trailers_step()
        if self._data_ended:
            ending = _line_end(buffer)
            if ending:
                self._data_ended = False
                return ending
            if bytes(buffer) in (b"", b"\r"):
                return 0
            raise Unframeable(f"chunk data is followed by {bytes(buffer[:10])!r}, not CRLF")
        if self._remaining is not None:
            taken = min(self._remaining, len(buffer))
            self.data += buffer[:taken]
            self._remaining -= taken
            if self._remaining == 0:
                self._remaining, self._data_ended = None, True
            return taken
        newline = buffer.find(b"\n")
        if newline < 0:
            if len(buffer) > 1024:
                raise Unframeable("a chunk-size line of over 1 KiB")
            return 0
        size = self._chunk_size(bytes(buffer[:newline]))
        if size == 0:
            self._in_trailers = True
        else:
            self._remaining = size
        return newline + 1

    def _trailers_step(self) -> int:
        buffer = self._buffer
        ending = _line_end(buffer)
        if ending:
            self.done = True
            return ending
        end = head_end(b"\n" + bytes(buffer))  # a trailer section is a head with no start line
        if end is None:
            if len(buffer) > self.max_trailer_size:
                raise Unframeable("a trailer section over the limit", 431)
            return 0
        self.trailers = _fields(_lines(bytes(buffer[: end - 1]))[:-2])
        self.done = True
        return end - 1

    @staticmethod
    def _chunk_size(line: bytes) -> int:
        line = line[:-1] if line.endswith(b"\r") else line
        size, _, extensions = line.partition(b";")
        size = size.rstrip(_WHITESPACE)  # BWS before a chunk extension
        if not _HEX.fullmatch(size) or len(size) > MAX_CHUNK_SIZE_DIGITS:
            raise Unframeable(f"{line[:40]!r} is not a chunk size (hexadecimal digits)")
        if b"\r" in extensions or b"\x00" in extensions:
            raise Unframeable("a CR or NUL inside a chunk extension")
        return int(size, 16)
