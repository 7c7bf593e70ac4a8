"""What an endpoint sends for a handler's response: the default headers it adds, and the bytes.

Rule kept here: pure. Nothing here records, writes or waits; the endpoint records the
response exactly as these functions give it, and then writes the bytes they make of it.
:func:`respond` is the endpoint's hot path: the three answers of :func:`as_sent`,
:func:`wire_parts` and ``wire.response_keeps_alive`` in one pass; ``tests`` hold it to them.
It remembers the last answer it made (the parts it came from, and the head it made, shared
only as immutable tuples and bytes), so that the same answer again in the same second, from
the same Response or from an equal one a handler made again, costs a new Response and
Headers, not a new head.
"""

from __future__ import annotations

import email.utils
import time

from . import wire
from ._version import __version__
from .models import TRACKING_HEADER, TRACKING_KEY, Headers, Request, Response

SERVER_NAME = f"pytest-deproxy/{__version__}"

_date_cache: tuple[int, str] = (0, "")
_time = time.time


def http_date() -> str:
    """The ``Date`` header value, formatted once a second rather than once a response."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def as_sent(
    response: Response, request: Request, *, defaults: bool = True, chunked: bool = False
) -> Response:
    """A copy of ``response`` as it goes on the wire: the request's tracking id echoed and,
    with ``defaults``, ``Server``, ``Date`` and the framing (``chunked`` or a length) added
    where absent and allowed. A response with trailers to an HTTP/1.1 request is framed
    chunked, the only HTTP/1 framing that carries them; where HTTP/1 cannot carry them (no
    chunked framing, no body) they are left off the copy, which is what was sent."""
    sent = response.copy()  # a canned Response is never changed by being sent
    headers = sent.headers
    if defaults:
        if "Server" not in headers:
            headers._append("Server", SERVER_NAME)
        if "Date" not in headers:
            headers._append("Date", http_date())
        status = int(sent.code)
        framed = "Content-Length" in headers or "Transfer-Encoding" in headers
        if not framed and status >= 200 and status not in (204, 304):
            if chunked or (sent.has_trailers and request.http_version == "1.1"):
                headers._append("Transfer-Encoding", "chunked")
            elif not (sent.has_trailers and request.http_version == "2"):
                # With trailers, HTTP/2 ends the body at END_STREAM (as gRPC servers do):
                # nginx's grpc_pass drops the trailers of a body a length says is over.
                headers._append("Content-Length", str(len(sent.raw_body)))
        # An HTTP/1.0 client assumes the server closes unless told otherwise.
        http10_keep_alive = request.http_version == "1.0" and wire.request_keeps_alive(request)
        if http10_keep_alive and "Connection" not in headers:
            headers._append("Connection", "keep-alive")
        elif _asks_close(request) and "Connection" not in headers:
            headers._append("Connection", "close")  # RFC 9112 9.6: the server says it closes
    tracking_id = request.headers.get(TRACKING_HEADER)
    if tracking_id is not None and TRACKING_HEADER not in headers:
        headers._append(TRACKING_HEADER, tracking_id)
    if (
        sent.has_trailers
        and request.http_version in ("1.0", "1.1")
        and not _carries_trailers(sent, request)
    ):
        sent.trailers = Headers()
    return sent


def _asks_close(request: Request) -> bool:
    """Whether ``request`` carries the ``close`` connection option (an unread request never
    does: its one Connection, if any, is ``keep-alive``; no reading its headers to know)."""
    if request._unread_head is not None:
        return False
    return request._has_header("connection") and request.headers.has_token("Connection", "close")


def _carries_trailers(sent: Response, request: Request) -> bool:
    """Whether HTTP/1 sends ``sent``'s trailers: after a chunked body only."""
    return wire.response_has_body(int(sent.code), request.method) and sent.headers.has_token(
        "Transfer-Encoding", "chunked"
    )


# The header items respond() adds, made once rather than once a response: fewer objects made
# per request is fewer garbage collections under load (tuples are immutable: sharing is safe).
_SERVER_ITEM = ("Server", SERVER_NAME)
_SMALL = 4096
_LENGTH_ITEMS = [("Content-Length", str(size)) for size in range(_SMALL)]
_date_item_cache: tuple[str, tuple[str, str]] = ("", ("Date", ""))


def _date_item() -> tuple[str, str]:
    global _date_item_cache
    date = http_date()
    if _date_item_cache[0] is not date:
        _date_item_cache = (date, ("Date", date))
    return _date_item_cache[1]


class Made:
    """An answer :func:`respond` made for a request with no tracking id: the parts it was
    made from (compared by value, so a Response changed since gives a new one) and what it
    made. Never changed once made (slots, read by the poll thread on every request): the
    head is shared by the same answer again in the same second, and :meth:`sent` makes the
    Response as sent from it whenever it is asked for."""

    __slots__ = (
        "again_get",
        "body",
        "code",
        "data",
        "head",
        "items",
        "keys",
        "message",
        "raw_body",
        "second",
        "since",
        "source",
        "until",
    )

    def __init__(
        self,
        response: Response,
        sent: Response,
        second: int,
        head: bytes,
        data: bytes,
    ) -> None:
        self.source = response.headers._items
        self.code, self.message = response.code, response.message
        self.body, self.raw_body = response.body, response.raw_body
        self.second = second  # the Date's second: the head is made again the next one
        # The times in that second, as time.time() says them (floats: a float compared with
        # a float, not with an int, takes the interpreter's quick way).
        self.since, self.until = float(second), float(second + 1)
        self.items, self.keys = sent.headers._items, sent.headers._keys
        self.head = head
        self.data = data  # the bytes to a GET (the head, and the body where one goes)
        # respond_again's answer to a GET, made once (an immutable tuple: sharing is safe).
        self.again_get = (self, data, True)

    def sent(self) -> Response:
        """The response as sent: a new Response (and Headers) sharing the made tuples."""
        sent = object.__new__(Response)
        sent.code, sent.message, sent.http_version = self.code, self.message, "1.1"
        sent.headers = Headers.from_wire(self.items, self.keys)
        sent.body, sent.raw_body = self.body, self.raw_body
        sent._trailers = None  # the fast path is for answers without trailers
        return sent


# Under load, a stock handler gives the same answer again and again: its head is made once a
# second (when the Date changes), not once a request.
_last_made: Made | None = None


def respond_again(
    response: Response, request: Request, now: float | None = None
) -> tuple[Made, bytes, bool] | None:
    """:func:`respond`'s answer, if it is the last one it made (from a response with the
    same parts, in the same second as ``now``, a ``time.time()`` such as the request's
    arrival (default: now), to a request with no tracking id): what was made, the
    bytes and whether the connection goes on; ``None``: call :func:`respond`. The Response
    as sent is ``made.sent()``, for whoever asks for it (the record makes it when read)."""
    made = _last_made
    if made is None:
        return None
    # The same parts (the same objects, as a canned answer's are, or equal ones, as those of
    # a handler that makes ``Response(200)`` each time): the same head.
    if not (
        response.headers._items is made.source
        and response.code is made.code
        and response.message is made.message
        and response.body is made.body
        and response.raw_body is made.raw_body
    ) and not _same_parts(made, response):
        return None
    if now is None:
        now = _time()
    if (
        not made.since <= now < made.until  # the Date it was made with is still the date
        or request.http_version != "1.1"
        or response.http_version != "1.1"
        or (response._trailers is not None and response.has_trailers)
    ):
        return None
    # (An unread request carries no tracking id and does not ask to close: no call to ask.)
    if request._unread_head is None and (request._has_header(TRACKING_KEY) or _asks_close(request)):
        return None  # tracked, or asks to close: that answer differs
    method = request.method
    if method == "GET":
        return made.again_get
    if wire.response_has_body(int(made.code), method):
        return made, made.head + made.raw_body, True
    return made, made.head, True


def _same_parts(made: Made, response: Response) -> bool:
    """Whether ``response``'s parts equal those ``made`` was made from (not the same objects:
    a handler that makes ``Response(200)`` each time)."""
    body = response.body
    return (
        made.source == response.headers._items
        and made.code == response.code
        and made.message == response.message
        and type(made.body) is type(body)
        and made.body == body
        and made.raw_body == response.raw_body
    )


_status_lines: dict[tuple[str, str], str] = {}  # "HTTP/1.1 200 OK\r\n", made once per status


def respond(
    response: Response, request: Request, *, defaults: bool = True, chunked: bool = False
) -> tuple[Response, bytes, bool]:
    """:func:`as_sent`, :func:`wire_parts` and whether the connection may carry another
    request (``wire.response_keeps_alive``), in one pass: the response as sent, its bytes,
    and that. The same answers as those three, made in a third of the time for the common
    exchange (HTTP/1.1 both ways, default headers, no ``Connection`` or ``Transfer-Encoding``
    in the response); anything else takes those three."""
    global _last_made
    source = response.headers
    keys = source._keys  # read only: names lowered, in step with the items
    if (
        not defaults
        or chunked
        or response.http_version != "1.1"
        or request.http_version != "1.1"
        or "transfer-encoding" in keys
        or "connection" in keys
        or response.has_trailers
        or _asks_close(request)
    ):
        sent = as_sent(response, request, defaults=defaults, chunked=chunked)
        head, body = wire_parts(sent, request)
        return sent, head + body, wire.response_keeps_alive(sent, request)
    again = respond_again(response, request)
    if again is not None:  # the same answer as the last one: its head is made already
        made, data, keeps = again
        return made.sent(), data, keeps
    code = response.code
    raw_body = response.raw_body
    date = http_date()
    tracked = request._has_header(TRACKING_KEY) and TRACKING_KEY not in keys
    items = list(source._items)
    sent_keys = list(keys)
    if "server" not in keys:
        items.append(_SERVER_ITEM)
        sent_keys.append("server")
    if "date" not in keys:
        items.append(_date_item())
        sent_keys.append("date")
    status = int(code)
    if "content-length" not in keys and status >= 200 and status not in (204, 304):
        size = len(raw_body)
        items.append(_LENGTH_ITEMS[size] if size < _SMALL else ("Content-Length", str(size)))
        sent_keys.append("content-length")
    if tracked:
        items.append((TRACKING_HEADER, request.headers[TRACKING_HEADER]))
        sent_keys.append(TRACKING_KEY)
    sent = object.__new__(Response)
    sent.code, sent.message, sent.http_version = code, response.message, "1.1"
    sent.headers = Headers.from_wire(items, sent_keys)
    sent.body, sent.raw_body = response.body, raw_body
    sent._trailers = None  # the fast path is for answers without trailers
    status_line = _status_lines.get((code, response.message))
    if status_line is None:
        status_line = wire.serialize_response_head(Response(code, response.message))[:-2].decode(
            "iso-8859-1"
        )
        if len(_status_lines) < 1024:
            _status_lines[(code, response.message)] = status_line
    text = status_line + "".join([f"{name}: {value}\r\n" for name, value in items]) + "\r\n"
    try:
        head = text.encode("iso-8859-1")
    except UnicodeEncodeError:  # rare: text beyond Latin-1 goes out as the wire module says
        head = wire.serialize_response_head(sent)
    # Framed by a length (given, or added above) or bodiless, to a request that did not ask
    # to close (that one took as_sent above): the connection goes on.
    cache = _date_cache  # read once: the second and the Date that go together
    if not tracked and date is cache[1]:  # the next answer like this one, this second,
        # reuses its head (the Date is http_date()'s of that second)
        data = head + raw_body if wire.response_has_body(status, "GET") else head
        _last_made = Made(response, sent, cache[0], head, data)
    if wire.response_has_body(status, request.method):
        return sent, head + raw_body, True
    return sent, head, True


def wire_parts(sent: Response, request: Request) -> tuple[bytes, bytes]:
    """The head of ``sent``, and its body framed as its headers say (empty where the exchange
    allows no body: HEAD, 1xx, 204, 304)."""
    head = wire.serialize_response_head(sent)
    if not wire.response_has_body(int(sent.code), request.method):
        return head, b""
    chunked = sent.headers.has_token("Transfer-Encoding", "chunked")
    return head, wire.frame_body(
        sent.raw_body, chunked=chunked, trailers=sent.trailers if sent.has_trailers else None
    )


def error_response(status: int, reason: str) -> Response:
    return Response(
        status,
        headers={"Content-Type": "text/plain; charset=utf-8", "Connection": "close"},
        body=reason + "\n",
    )


_UNREAD = Request("GET", "/")  # what stands for a request that could not be read


def refusal_response(status: int, reason: str, request: Request = _UNREAD) -> Response:
    """The response, as sent, that refuses ``request`` (a request whose head could be read,
    or one that could not be read at all); the connection then closes."""
    return as_sent(error_response(status, reason), request)


def refusal(status: int, reason: str) -> bytes:
    """The bytes that answer a request that could not be read (the connection then closes)."""
    sent = refusal_response(status, reason)
    return wire.serialize_response(sent, chunked=False, send_body=True)
