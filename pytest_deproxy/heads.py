"""Message heads of the common, unremarkable kind, read without h11.

Rule kept here: this module only ever *accepts* or *declines*; it never judges. It reads a
head only when the head is complete in the buffer, every line ends in CRLF, the start line
and every header name match RFC 9112's grammar exactly as h11 applies it, and the body is
framed by at most one plain ``Content-Length``. Anything else (chunked framing, ``Expect``,
folded lines, a second ``Host``, an informational response, a head over the size limit,
a stray control byte) makes it return ``None``, and ``wire`` hands the same bytes to h11,
which decides. So a malformed message is always refused by h11, and an ordinary one is read
in a quarter of the time h11 takes (5 us against 20 for a small GET, measured through
``MessageReader``). ``tests/test_heads.py`` holds the two readers to the same answers on
generated input.

:func:`glance_request_head` takes the same heads, and leaves the fields of the commonest kind
unread (an endpoint under load answers many requests whose headers nobody reads): a head whose
only notable headers are one ``Host`` and at most one ``Connection: keep-alive`` (what
python-requests and browsers send, and HTTP/1.1's default anyway) is checked whole against the
grammar, and only its start line is read; its fields are read from its bytes if they are
wanted (``models.Headers.from_head``, the same reading).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Header lines, each a token, a colon and a value free of what h11 refuses or reads its own
# way (NUL, VT, FF, and a CR or LF that is not the CRLF ending the line), then the blank line.
_FIELDS = rb"((?:" + _TOKEN + rb":[^\x00\x0b\x0c\r\n]*\r\n)*)\r\n"
_REQUEST_HEAD = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/(1\.[01])\r\n" + _FIELDS)
_RESPONSE_HEAD = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: ([^\x00\x0b\x0c\r\n]*))?\r\n" + _FIELDS)
_DECLINED_HEADERS = frozenset({"transfer-encoding", "expect"})
_MAX_LENGTH_DIGITS = 18
# The names a head may not carry to be glanced at: those this reader judges, and those an
# endpoint acts on as a request arrives (``models.UNREAD_LACKS``: a test holds the two equal).
# One ``Host``, nothing else of these, and at most one ``Connection`` whose whole value is
# ``keep-alive`` (which changes nothing an endpoint does) is a head whose fields can wait.
GLANCE_LACKS = ("content-length", "transfer-encoding", "expect", "deproxy-request-id")
_NOTABLE = re.compile(
    rb"\n(?:host|connection|" + "|".join(GLANCE_LACKS).encode("ascii") + rb"):", re.IGNORECASE
)
_HOST_AND_CONNECTION = frozenset({b"\nhost:", b"\nconnection:"})
_KEEP_ALIVE = re.compile(rb"\nconnection:[ \t]*keep-alive[ \t]*\r\n", re.IGNORECASE)


class Head(NamedTuple):  # a tuple, not a dataclass: made once per message on the hot path
    """A head read from the start of a buffer; ``size`` counts the bytes up to the body."""

    start: tuple[str, ...]
    items: list[tuple[str, str]]
    keys: list[str]
    content_length: int
    size: int


# A request head whose fields were left unread: method, target, version, and its size.
Glance = tuple[str, str, str, int]
# The start line's commonest words, as str without decoding them each time.
_METHODS = {name.encode("ascii"): name for name in ("GET", "HEAD", "POST", "PUT", "DELETE")}


def _read_head(data: bytes, grammar: re.Pattern[bytes], max_size: int) -> Head | None:
    # One match checks the whole head against the grammar and finds its end.
    match = grammar.match(data)
    if match is None or match.end() > max_size:
        return None
    return _read_fields(match)


def _read_fields(match: re.Match[bytes]) -> Head | None:
    parts = [part.decode("iso-8859-1") for part in match.groups(b"")]
    fields = parts.pop()
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    content_length: int | None = None
    for line in fields.split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        key = name.lower()
        value = value.strip(" \t")
        if key == "content-length":
            if (
                content_length is not None
                or not (value.isascii() and value.isdigit())
                or len(value) > _MAX_LENGTH_DIGITS
            ):
                return None
            content_length = int(value)
        elif key in _DECLINED_HEADERS:
            return None
        items.append((name, value))
        keys.append(key)
    return Head(tuple(parts), items, keys, content_length or 0, match.end())


def read_request_head(data: bytes, max_size: int) -> Head | None:
    """The request head at the start of ``data`` (``start``: method, target, version), or
    ``None`` to leave it to h11."""
    head = _read_head(data, _REQUEST_HEAD, max_size)
    if head is None or head.keys.count("host") != 1:  # h11 insists on exactly one
        return None
    return head


def glance_request_head(data: bytes, max_size: int) -> Glance | Head | None:
    """:func:`read_request_head`'s answer, the fields left unread (a :data:`Glance`, a plain
    tuple) where the head names one ``Host``, nothing of ``GLANCE_LACKS``, and no
    ``Connection`` but one of ``keep-alive``: accepted and declined alike, and what it reads is
    the same."""
    match = _REQUEST_HEAD.match(data)
    if match is None or (size := match.end()) > max_size:
        return None
    # Every field line follows a LF: from the request line's, the names that matter.
    fields_start = match.start(4) - 1
    notable = _NOTABLE.findall(data, fields_start, size)
    if (len(notable) == 1 and notable[0].lower() == b"\nhost:") or (
        len(notable) == 2 and _host_and_keep_alive(notable, data, fields_start, size)
    ):
        method, target, version = match.group(1, 2, 3)
        return (
            _METHODS.get(method) or method.decode("iso-8859-1"),
            target.decode("iso-8859-1"),
            "1.1" if version == b"1.1" else "1.0",  # the grammar allows these two
            size,
        )
    head = _read_fields(match)
    if head is None or head.keys.count("host") != 1:
        return None
    return head


def _host_and_keep_alive(notable: list[bytes], data: bytes, start: int, end: int) -> bool:
    """Whether the two notable names are one ``Host`` and one ``Connection: keep-alive``."""
    first, second = notable
    return {first.lower(), second.lower()} == _HOST_AND_CONNECTION and bool(
        _KEEP_ALIVE.search(data, start, end)
    )


def read_response_head(data: bytes, max_size: int, request_method: str) -> Head | None:
    """The final response head at the start of ``data`` (``start``: version, status, reason),
    or ``None`` to leave it to h11. Only responses whose body a length frames are taken."""
    if request_method in ("HEAD", "CONNECT"):
        return None
    head = _read_head(data, _RESPONSE_HEAD, max_size)
    if head is None:
        return None
    status = int(head.start[1])
    if status < 200 or status in (204, 304) or "content-length" not in head.keys:
        return None
    return head
