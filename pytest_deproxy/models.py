"""Value types for HTTP messages: :class:`Request` and :class:`Response` (their fields are
:mod:`~pytest_deproxy.fields`' :class:`Headers`, their bodies read and written by
:mod:`~pytest_deproxy.content`).

Rule kept here: these types are pure data. They coerce ``str``/``bytes`` once, at
construction, and never touch a socket. A request read off the wire by an endpoint's fast
path may keep its headers unread (:meth:`Request.unread`): they are made from the head's
bytes when first read, the same as if they had been made at once. A Response made with an
int status shares its ``code`` and ``message`` str with every other of that status.
"""

from __future__ import annotations

import functools
import http
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .content import Body as Body
from .content import charset_of as charset_of
from .content import decode_body as decode_body
from .content import encode_body as encode_body
from .fields import TRACKING_HEADER as TRACKING_HEADER
from .fields import TRACKING_KEY as TRACKING_KEY
from .fields import HeaderItems as HeaderItems
from .fields import Headers as Headers


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
# head naming any of them at once. So whoever asks whether one came need not read them. (Its
# one ``Connection``, if any, is ``keep-alive``: it does not ask to close.)
UNREAD_LACKS = frozenset({"content-length", "transfer-encoding", "expect", TRACKING_KEY})
_READING = threading.Lock()  # makes an unread request's headers once, whichever thread asks


class _HeadersOnFirstRead:
    """The ``headers`` of an unread request (:meth:`Request.unread`), made from its head when
    first read and kept in the instance, which is looked at first from then on (a descriptor
    with no ``__set__``). A descriptor, not ``__getattr__``: a class with ``__getattr__`` has
    every attribute of every instance looked up the slow way (the interpreter does not
    specialize them), and a request's are read many times on the endpoint's hot path."""

    def __get__(self, request: Request | None, owner: type | None = None) -> Headers:
        if request is None:
            raise AttributeError("headers is an attribute of a Request, not of the class")
        with _READING:
            made = request.__dict__.get("headers")
            if made is None:  # not read yet: no other thread made them meanwhile
                head = request._unread_head
                if head is None:
                    raise AttributeError(f"{type(request).__name__!r} object has no headers")
                made = request.__dict__["headers"] = Headers.from_head(head)
                request._unread_head = None
            return made


class Request(_Trailers):
    """An HTTP request, as sent or as received.

    ``body`` is the readable view (Content-Encoding undone, ``str`` for text); ``raw_body``
    holds the payload bytes exactly as they crossed the wire, Content-Encoding intact, with
    only the chunked transfer framing removed. ``trailers`` are the fields sent after the
    body (HTTP/2 trailers), empty when there were none.
    """

    method: str
    path: str
    headers: Headers  # an unread request's is made on first read (_HeadersOnFirstRead)
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
        requests whose headers nobody reads. Only for a head that names Host once, none
        of ``UNREAD_LACKS``, and no Connection but ``keep-alive``
        (``heads.glance_request_head`` says which)."""
        request = object.__new__(cls)
        request.method, request.path, request.http_version = method, path, http_version
        request.raw_body, request.body = b"", ""
        request._trailers = None
        request._unread_head = raw_head
        return request

    if not TYPE_CHECKING:  # (hidden from mypy: ``headers`` stays an attribute to it)
        # Found only where the instance has no ``headers`` of its own: an unread request's.
        headers = _HeadersOnFirstRead()

    def _has_header(self, key: str) -> bool:
        """Whether a header called ``key`` (lowercase) came with the request, answered for
        the names in ``UNREAD_LACKS`` without reading an unread request's headers."""
        if self._unread_head is not None and key in UNREAD_LACKS:
            return False
        return key in self.headers._keys


# A status given as an int (``Response(200)``, as handlers mostly make them), its code and
# reason phrase made once: every Response of a status shares the same two str objects, so
# that an answer equal to one made before is seen to be the same by identity, not compared.
_STATUSES: dict[int, tuple[str, str]] = {}


def _status(code: int | str) -> tuple[str, str]:
    """``code`` as a Response's ``code`` (three digits) and its standard reason phrase."""
    text = str(code).strip()
    if not (len(text) == 3 and text.isdigit()):
        raise ValueError(f"a status code must be three digits, like 200; got {code!r}")
    status = (text, reason_phrase(int(text)))
    if type(code) is int:  # (three digits: at most 900 of them)
        status = _STATUSES.setdefault(code, status)
    return status


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
        status = _STATUSES.get(code) if type(code) is int else None
        if status is None:
            status = _status(code)
        self.code = status[0]
        self.message = status[1] if message is None else message
        self.headers = Headers(headers)
        if body is None:  # (the commonest: no call to encode nothing)
            self.raw_body, self.body = b"", ""
        else:
            self.raw_body, self.body = encode_body(body, self.headers), body
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
