"""The corpus of ambiguous HTTP/1.1 requests: bytes that two readers may frame, route or
split differently, generated from the RFC 9110 / RFC 9112 grammar.

Rules kept here: pure, no socket, no thread. Each family is a few small generators over the
grammar, never a copy of another project's corpus: here the products (whitespace and control
bytes at each position of each field and of the request line; odd line endings at each
line); in ``forms`` the framing fields, in ``chunks`` chunked bodies, in ``heads`` request
lines, Host and head sizes.
Every request has a stable, unique, readable ``id``, one sentence saying what is odd and why
it matters, the RFC section it strays from, and stays under 16 KiB once rendered. Every
request carries a ``Deproxy-Request-ID: {request_id}`` line and, unless it is about ``Host``
itself, a ``Host: {host}`` line. Where the oddity decides where a body ends, the body holds
a second request, ``GET /smuggled-{request_id}``, that a backend receives as a request of its
own only when a reader on the way framed the message differently from the one it was
written for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from . import chunks, forms, heads
from .ambiguous import (
    MAX_SIZE,
    AmbiguousRequest,
    Build,
    chunked_smuggle,
    entry,
    request_bytes,
    smuggled,
)

__all__ = ["MAX_SIZE", "AmbiguousRequest", "corpus", "generate", "smuggled"]


# ---------------------------------------------------------------- whitespace and control bytes

BYTES = (
    ("sp", b" ", "A space"),
    ("htab", b"\t", "A tab"),
    ("vt", b"\x0b", "A vertical tab (0x0B)"),
    ("ff", b"\x0c", "A form feed (0x0C)"),
    ("cr", b"\r", "A bare CR"),
    ("lf", b"\n", "A bare LF"),
    ("nul", b"\x00", "A NUL byte"),
    ("us", b"\x1f", "A unit separator (0x1F, whitespace to Python's str.split)"),
    ("del", b"\x7f", "A DEL byte (0x7F)"),
    ("x80", b"\x80", "The byte 0x80"),
    ("nel", b"\x85", "The byte 0x85 (NEL, whitespace to Unicode-aware readers)"),
    ("nbsp", b"\xa0", "The byte 0xA0 (a no-break space in Latin-1)"),
    ("xff", b"\xff", "The byte 0xFF"),
)
_OWS = {"sp", "htab"}
_OBS_TEXT = {"x80", "nel", "nbsp", "xff"}

# field slug: (name, reference for its value, why a discrepancy matters)
_FIELDS = {
    "content-length": (
        b"Content-Length",
        "RFC 9110 §8.6",
        "a reader that drops or misreads the field sees no body and takes the smuggled "
        "request in it for a second request",
    ),
    "transfer-encoding": (
        b"Transfer-Encoding",
        "RFC 9112 §6.1",
        "a reader that still sees chunked ends the body at the last chunk and reads the "
        "smuggled request after it, while one that ignores the field trusts Content-Length",
    ),
    "host": (
        b"Host",
        "RFC 9112 §3.2",
        "readers that disagree on the field route or cache the request under different "
        "hosts, or under none",
    ),
    "x-odd": (
        b"X-Odd",
        "RFC 9110 §5.5",
        "readers that disagree on where the field's name or value ends see different fields",
    ),
}
_POSITIONS = {
    "before-name": ("at the start of the {name} line", "RFC 9112 §5"),
    "before-colon": ("between the field name {name} and its colon", "RFC 9112 §5.1"),
    "after-colon": ("between the colon and the {name} value", ""),
    "inside-value": ("inside the {name} value", ""),
    "after-value": ("after the {name} value", ""),
}


def _place(name: bytes, value: bytes, position: str, odd: bytes) -> bytes:
    middle = len(value) // 2
    return {
        "before-name": odd + name + b": " + value,
        "before-colon": name + odd + b": " + value,
        "after-colon": name + b":" + odd + value,
        "inside-value": name + b": " + value[:middle] + odd + value[middle:],
        "after-value": name + b": " + value + odd,
    }[position]


def _skip_field_byte(position: str, slug: str, byte: str) -> bool:
    """Combinations that are valid syntax (OWS, obs-text in an ordinary value), or that are
    line endings (the eol family's), or that would split a placeholder."""
    if byte in _OWS and position in ("after-colon", "after-value"):
        return True
    if byte in ("cr", "lf") and position == "after-value":
        return True
    if slug == "host" and position == "inside-value":
        return True
    value_position = position in ("after-colon", "inside-value", "after-value")
    return slug == "x-odd" and value_position and (byte in _OBS_TEXT or byte in _OWS)


def _field_byte_build(slug: str, position: str, odd: bytes) -> Build:
    name = _FIELDS[slug][0]

    def build(host: bytes, rid: bytes) -> bytes:
        if slug == "content-length":
            body = smuggled(host, rid)
            return request_bytes(host, rid, [_place(name, b"%d" % len(body), position, odd)], body)
        if slug == "transfer-encoding":
            body = chunked_smuggle(host, rid)
            line = _place(name, b"chunked", position, odd)
            return request_bytes(host, rid, [line, b"Content-Length: %d" % len(body)], body)
        if slug == "host":
            return request_bytes(host, rid, [_place(name, host, position, odd)], with_host=False)
        return request_bytes(host, rid, [_place(name, b"value", position, odd)])

    return build


def _field_bytes() -> Iterator[AmbiguousRequest]:
    for position, (where, position_reference) in _POSITIONS.items():
        for slug, (name, value_reference, matters) in _FIELDS.items():
            for byte, odd, said in BYTES:
                if _skip_field_byte(position, slug, byte):
                    continue
                folds = position == "before-name" and byte in _OWS
                what = where.format(name=name.decode())
                what += ", which makes it an obsolete line fold of the line before" if folds else ""
                reference = "RFC 9112 §5.2" if folds else position_reference or value_reference
                yield entry(
                    f"ws.{position}.{slug}.{byte}",
                    "ws",
                    f"{said} {what}: {matters}.",
                    reference,
                    _field_byte_build(slug, position, odd),
                )


def _separator(odd: bytes) -> bytes:
    """``odd`` in place of the single SP between two words; a space doubles it."""
    return b"  " if odd == b" " else odd


_REQUEST_LINE_POSITIONS: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "start": (lambda b: b + b"GET / HTTP/1.1", "before the method", "RFC 9112 §2.2"),
    "after-method": (lambda b: b"GET" + _separator(b) + b"/ HTTP/1.1",
                     "as the separator after the method", "RFC 9112 §3"),
    "after-target": (lambda b: b"GET /" + _separator(b) + b"HTTP/1.1",
                     "as the separator after the target", "RFC 9112 §3"),
    "in-target": (lambda b: b"GET /odd" + b + b"path HTTP/1.1", "inside the request target",
                  "RFC 9112 §3.2"),
    "end": (lambda b: b"GET / HTTP/1.1" + b, "after the HTTP version", "RFC 9112 §3"),
}  # fmt: skip


def _request_line_bytes() -> Iterator[AmbiguousRequest]:
    for position, (line_of, where, reference) in _REQUEST_LINE_POSITIONS.items():
        for byte, odd, said in BYTES:
            if position == "end" and byte == "cr":
                continue  # that is CR CR LF, the eol family's
            doubled = byte == "sp" and position in ("after-method", "after-target")

            def build(host: bytes, rid: bytes, line: bytes = line_of(odd)) -> bytes:
                return request_bytes(host, rid, [], line=line)

            yield entry(
                f"ws.request-line.{position}.{byte}",
                "ws",
                f"{'A second space' if doubled else said} {where} in the request line: "
                "readers that split it on different whitespace see a different method, "
                "target or version, or none.",
                reference,
                build,
            )


# ------------------------------------------------------------------------------ line endings

EOLS = (
    ("bare-lf", b"\n", "a bare LF, which RFC 9112 lets a recipient accept"),
    ("bare-cr", b"\r", "a bare CR, which a recipient must treat as invalid or as SP"),
    ("crcrlf", b"\r\r\n", "CR CR LF, a line with a stray CR before its end"),
    ("lfcr", b"\n\r", "LF CR, a line end written backwards"),
)
_EOL_POSITIONS = {  # position: (which line ends oddly, index in the lines or -1: the empty line)
    "request-line": ("the request line", 0),
    "field-line": ("the X-Odd line just above Content-Length", 4),
    "content-length-line": ("the Content-Length line", 5),
    "end-of-head": ("the empty line that ends the head", -1),
    "every-line": ("every line, the empty one too", -2),
}


def _eol_build(eol: bytes, index: int) -> Build:
    def build(host: bytes, rid: bytes) -> bytes:
        body = smuggled(host, rid)
        lines = [
            b"POST / HTTP/1.1",
            b"Host: " + host,
            b"Deproxy-Request-ID: " + rid,
            b"Accept: */*",
            b"X-Odd: 1",
            b"Content-Length: %d" % len(body),
        ]
        ends = [eol if index in (position, -2) else b"\r\n" for position in range(len(lines))]
        last = eol if index < 0 else b"\r\n"
        return b"".join(map(bytes.__add__, lines, ends)) + last + body

    return build


def _line_endings() -> Iterator[AmbiguousRequest]:
    for kind, eol, said in EOLS:
        for position, (which, index) in _EOL_POSITIONS.items():
            yield entry(
                f"eol.{kind}.{position}",
                "eol",
                f"{which.capitalize()} ends in {said}: a reader that takes it for a line end "
                "and one that does not see different fields, or a different end of the head, "
                "and so frame the smuggled request in the body differently.",
                "RFC 9112 §2.2",
                _eol_build(eol, index),
            )


def generate() -> tuple[AmbiguousRequest, ...]:
    """The whole corpus, generated afresh: the same requests, in the same order, every time."""
    return (
        *_field_bytes(),
        *_request_line_bytes(),
        *_line_endings(),
        *forms.content_length(),
        *forms.transfer_encoding(),
        *chunks.chunks(),
        *heads.request_lines(),
        *heads.hosts(),
        *heads.sizes(),
    )


@functools.cache
def corpus() -> tuple[AmbiguousRequest, ...]:
    """The corpus, generated once per process."""
    return generate()
