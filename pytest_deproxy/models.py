"""Value types for HTTP messages and for the record of what crossed the wire.

Rule kept here: these types are pure data. They coerce ``str``/``bytes`` once, at
construction, and never touch a socket. Header values are ``str``; bytes from the wire are
decoded as ISO-8859-1 so that every byte survives the round trip. A request read off the wire
by an endpoint's fast path may keep its headers unread (:meth:`Request.unread`): they are made
from the head's bytes when first read, the same as if they had been made at once.
"""

from __future__ import annotations

import functools
import gzip
import http
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

TRACKING_HEADER = "Deproxy-Request-ID"

Body = str | bytes | None


def _as_header_text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("iso-8859-1")
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"header {what} must be str, bytes or int, not {type(value).__name__}")


class Headers:
    """Ordered, multi-valued HTTP headers with case-insensitive lookup.

    Wire order and the caller's spelling of names are kept::

        >>> h = Headers([("Via", "1.1 a"), ("via", "1.1 b")])
        >>> h["VIA"], h.get_all("via"), len(h)
        ('1.1 a', ['1.1 a', '1.1 b'], 2)
    """

    # Tuples, replaced whole on change, not lists: a tuple of str is invisible to the cyclic
    # garbage collector once it has looked at it, and a copy shares them, so a recorded
    # message costs the collector one object for its headers, not three.
    __slots__ = ("_items", "_keys")

    def __init__(self, items: HeaderItems = None) -> None:
        self._items: tuple[tuple[str, str], ...] = ()
        self._keys: tuple[str, ...] = ()  # the names lowered, in step with _items for lookups
        if items is None:
            return
        if isinstance(items, Headers):
            self._items, self._keys = items._items, items._keys
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        made: list[tuple[str, str]] = []
        for pair in pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(
                    f"headers must be a mapping or (name, value) pairs; got item {pair!r}"
                ) from None
            made.append((_as_header_text(name, "name"), _as_header_text(value, "value")))
        self._replace(made)

    @classmethod
    def from_wire(
        cls, pairs: Sequence[tuple[str, str]], keys: Sequence[str] | None = None
    ) -> Headers:
        """Headers already decoded from the wire: str pairs (and their lowercased names, when
        the parser has them), nothing left to check."""
        headers = object.__new__(cls)
        headers._items = tuple(pairs)
        headers._keys = tuple(name.lower() for name, _ in pairs) if keys is None else tuple(keys)
        return headers

    @classmethod
    def from_head(cls, raw_head: bytes) -> Headers:
        """The header fields of a message head as it arrived (start line first, blank line
        last), read as ``heads`` reads them: a name up to the first colon, and its value
        with surrounding spaces and tabs removed."""
        items: list[tuple[str, str]] = []
        keys: list[str] = []
        for line in raw_head.decode("iso-8859-1").split("\r\n")[1:-2]:
            name, _, value = line.partition(":")
            items.append((name, value.strip(" \t")))
            keys.append(name.lower())
        headers = object.__new__(cls)
        headers._items, headers._keys = tuple(items), tuple(keys)
        return headers

    def _append(self, name: str, value: str) -> None:
        """Append a header this package made itself: both already ``str``, nothing to coerce."""
        self._items += ((name, value),)
        self._keys += (name.lower(),)

    def add(self, name: str, value: str) -> None:
        """Append one header at the end, keeping any others of the same name."""
        name = _as_header_text(name, "name")
        self._items += ((name, _as_header_text(value, "value")),)
        self._keys += (name.lower(),)

    def set(self, name: str, value: str) -> None:
        """Replace every header called ``name`` with one, at the first one's place."""
        name = _as_header_text(name, "name")
        value = _as_header_text(value, "value")
        lowered = name.lower()
        kept: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if item[0].lower() != lowered:
                kept.append(item)
            elif not placed:
                kept.append((name, value))
                placed = True
        if not placed:
            kept.append((name, value))
        self._replace(kept)

    def _replace(self, items: list[tuple[str, str]]) -> None:
        self._items = tuple(items)
        self._keys = tuple([name.lower() for name, _ in items])

    def delete_all(self, name: str) -> None:
        """Remove every header called ``name`` (no error when there is none)."""
        lowered = name.lower()
        if lowered in self._keys:
            self._replace([item for item in self._items if item[0].lower() != lowered])

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lowered = name.lower()
        if lowered not in self._keys:  # checked first: a raised ValueError costs more than a scan
            return default
        return self._items[self._keys.index(lowered)][1]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in wire order."""
        lowered = name.lower()
        if lowered not in self._keys:
            return []
        pairs = zip(self._keys, self._items, strict=True)
        return [item[1] for key, item in pairs if key == lowered]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in wire order, duplicates included."""
        return list(self._items)

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (``Connection``, say) lists ``token``."""
        if name.lower() not in self._keys:
            return False
        token = token.lower()
        return any(
            part.strip().lower() == token
            for value in self.get_all(name)
            for part in value.split(",")
        )

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._keys

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


HeaderItems = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None

_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)
_TEXT_TYPES = re.compile(
    r"^(text/|application/([\w.-]+\+)?(json|xml|javascript|ecmascript|x-www-form-urlencoded"
    r"|yaml|x-yaml|graphql|problem\+json)\b)",
    re.IGNORECASE,
)


def charset_of(headers: Headers) -> str:
    """The charset the ``Content-Type`` declares, else UTF-8."""
    match = _CHARSET.search(headers.get("Content-Type") or "")
    return match.group(1) if match else "utf-8"


def encode_body(body: Body, headers: Headers) -> bytes:
    """The bytes a body is sent as: ``str`` in the declared charset (UTF-8 by default)."""
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode(charset_of(headers))
        except LookupError:
            return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a body must be str, bytes or None, not {type(body).__name__}")


def _decode_content(raw: bytes, headers: Headers) -> bytes | None:
    """Undo ``Content-Encoding`` (gzip, deflate); ``None`` when it cannot be undone."""
    if "content-encoding" not in headers._keys:
        return raw
    codings = [
        part.strip().lower()
        for value in headers.get_all("Content-Encoding")
        for part in value.split(",")
        if part.strip()
    ]
    data = raw
    for coding in reversed(codings):
        try:
            if coding in ("gzip", "x-gzip"):
                data = gzip.decompress(data)
            elif coding == "deflate":
                try:
                    data = zlib.decompress(data)
                except zlib.error:  # servers often send raw deflate without the zlib wrapper
                    data = zlib.decompress(data, -zlib.MAX_WBITS)
            elif coding != "identity":
                return None
        except (OSError, EOFError, zlib.error):
            return None
    return data


def decode_body(raw: bytes, headers: Headers) -> str | bytes:
    """The body as a test wants to read it.

    Content-Encoding is undone; the result is ``str`` when the content is text (no
    ``Content-Type``, or a textual one) and decodes with its charset, else ``bytes``.
    """
    if not raw:
        return ""
    data = _decode_content(raw, headers)
    if data is None:
        return raw
    content_type = headers.get("Content-Type")
    if content_type is not None and not _TEXT_TYPES.match(content_type.strip()):
        return data
    try:
        return data.decode(charset_of(headers))
    except (UnicodeDecodeError, LookupError):
        return data


def _check_token(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


@dataclass(eq=False)
class _Trailers:
    """The trailer fields of a message (a Request's or a Response's)."""

    _trailers: Headers | None

    @property
    def trailers(self) -> Headers:
        """The fields after the body (empty when there were none)."""
        # Most messages have none: their empty Headers is made when first asked for.
        if self._trailers is None:
            self._trailers = Headers()
        return self._trailers

    @trailers.setter
    def trailers(self, trailers: Headers) -> None:
        self._trailers = trailers

    @property
    def has_trailers(self) -> bool:
        """Whether any fields come after the body (asked without making an empty Headers)."""
        return bool(self._trailers)


# The header names a request left unread (Request.unread) never carries: ``heads`` reads a
# head naming any of them at once. So whoever asks whether one came need not read them.
UNREAD_LACKS = frozenset(
    {"content-length", "transfer-encoding", "expect", "connection", TRACKING_HEADER.lower()}
)
_READING = threading.Lock()  # makes an unread request's headers once, whichever thread asks


class Request(_Trailers):
    """An HTTP request, as sent or as received.

    ``body`` is the readable view (Content-Encoding undone, ``str`` for text); ``raw_body``
    holds the payload bytes exactly as they crossed the wire, Content-Encoding intact, with
    only the chunked transfer framing removed. ``trailers`` are the fields sent after the
    body (HTTP/2 trailers), empty when there were none.
    """

    method: str
    path: str
    headers: Headers  # no class attribute: an unread request's is made on first read
    body: str | bytes = ""
    http_version: str = "1.1"
    raw_body: bytes = field(init=False, repr=False)

    def __init__(
        self,
        method: str,
        path: str,
        headers: HeaderItems = None,
        body: Body = None,
        http_version: str = "1.1",
        trailers: HeaderItems = None,
    ) -> None:
        self.method = _check_token(method, "method")
        self.path = _check_token(path, "path")
        self.headers = Headers(headers)
        self.raw_body = encode_body(body, self.headers)
        self.body = "" if body is None else body
        self.http_version = http_version
        self._trailers: Headers | None = None if trailers is None else Headers(trailers)

    @classmethod
    def received(
        cls, method: str, path: str, headers: Headers, raw_body: bytes, http_version: str
    ) -> Request:
        """A request as read off the wire: ``body`` is decoded from ``raw_body``.

        The parts are taken as they are (the framing layer made them): no copy, no checks.
        """
        request = object.__new__(cls)
        request.method, request.path, request.http_version = method, path, http_version
        request.headers, request.raw_body = headers, raw_body
        request.body = decode_body(raw_body, headers)
        request._trailers = None
        return request

    @classmethod
    def from_head(
        cls,
        method: str,
        path: str,
        items: Sequence[tuple[str, str]],
        keys: Sequence[str],
        raw_body: bytes,
        http_version: str,
    ) -> Request:
        """:meth:`received`, with the headers as the head reader gives them (the pairs and
        their lowercased names): the poll thread's path, one call where there were three."""
        headers = object.__new__(Headers)
        headers._items, headers._keys = tuple(items), tuple(keys)
        request = object.__new__(cls)
        request.method, request.path, request.http_version = method, path, http_version
        request.headers, request.raw_body = headers, raw_body
        request.body = decode_body(raw_body, headers) if raw_body else ""
        request._trailers = None
        return request

    # The head whose header fields are still to be read into ``headers`` (None: read).
    _unread_head: bytes | None = None

    @classmethod
    def unread(cls, method: str, path: str, raw_head: bytes, http_version: str) -> Request:
        """A bodiless request as read off the wire whose ``headers`` are made from
        ``raw_head`` (its head's bytes) when first read: an endpoint under load answers many
        requests whose headers nobody reads. Only for a head that names Host once and none
        of ``UNREAD_LACKS`` (``heads.glance_request_head`` says which)."""
        request = object.__new__(cls)
        request.method, request.path, request.http_version = method, path, http_version
        request.raw_body, request.body = b"", ""
        request._trailers = None
        request._unread_head = raw_head
        return request

    if not TYPE_CHECKING:  # (hidden from mypy: every other attribute stays checked)

        def __getattr__(self, name: str) -> Headers:
            # Only a missing attribute comes here: ``headers`` of an unread request, once.
            if name != "headers":
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            with _READING:
                try:
                    return object.__getattribute__(self, "headers")
                except AttributeError:  # not read yet
                    self.headers = Headers.from_head(self._unread_head)
                    self._unread_head = None
                    return self.headers

    def _has_header(self, key: str) -> bool:
        """Whether a header called ``key`` (lowercase) came with the request, answered for
        the names in ``UNREAD_LACKS`` without reading an unread request's headers."""
        if self._unread_head is not None and key in UNREAD_LACKS:
            return False
        return key in self.headers._keys


@functools.lru_cache(maxsize=128)
def reason_phrase(code: int) -> str:
    """The standard reason phrase for ``code``, or ``""`` for a code HTTP does not name."""
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


@dataclass(eq=False)
class Response(_Trailers):
    """An HTTP response. ``code`` and ``message`` are strings: ``response.code == "200"``.

    ``Response(404)`` fills in ``message="Not Found"``; a canned ``Response`` can be used as a
    handler. ``body`` and ``raw_body`` mean what they mean on :class:`Request`. ``trailers``
    are sent after the body (on HTTP/2; ``handlers.grpc`` sends ``grpc-status`` so), and are
    the trailers received on a response read off the wire.
    """

    code: str
    message: str = ""
    headers: Headers = field(default_factory=Headers)
    body: str | bytes = ""
    http_version: str = "1.1"
    raw_body: bytes = field(init=False, repr=False)

    def __init__(
        self,
        code: int | str,
        message: str | None = None,
        headers: HeaderItems = None,
        body: Body = None,
        http_version: str = "1.1",
        trailers: HeaderItems = None,
    ) -> None:
        text = str(code).strip()
        if not (len(text) == 3 and text.isdigit()):
            raise ValueError(f"a status code must be three digits, like 200; got {code!r}")
        self.code = text
        self.message = reason_phrase(int(text)) if message is None else message
        self.headers = Headers(headers)
        self.raw_body = encode_body(body, self.headers)
        self.body = "" if body is None else body
        self.http_version = http_version
        self._trailers: Headers | None = None if trailers is None else Headers(trailers)

    def copy(self) -> Response:
        """An independent copy (headers copied) without validating again."""
        twin = object.__new__(Response)
        twin.code, twin.message, twin.http_version = self.code, self.message, self.http_version
        twin.headers = Headers(self.headers)
        twin.body, twin.raw_body = self.body, self.raw_body
        twin._trailers = None if self._trailers is None else Headers(self._trailers)
        return twin

    @property
    def status(self) -> int:
        """``code`` as an ``int``."""
        return int(self.code)

    @classmethod
    def received(
        cls, code: int, message: str, headers: Headers, raw_body: bytes, http_version: str
    ) -> Response:
        """A response as read off the wire: ``body`` is decoded from ``raw_body``.

        The parts are taken as they are (the framing layer made them): no copy, no checks.
        """
        response = object.__new__(cls)
        response.code, response.message, response.http_version = str(code), message, http_version
        response.headers, response.raw_body = headers, raw_body
        response.body = decode_body(raw_body, headers)
        response._trailers = None
        return response
