"""What an endpoint sends for a handler's response: the default headers it adds, and the bytes.

Rule kept here: pure. Nothing here records, writes or waits; the endpoint records the
response exactly as these functions give it, and then writes the bytes they make of it.
"""

from __future__ import annotations

import email.utils
import time

from . import wire
from ._version import __version__
from .models import TRACKING_HEADER, Headers, Request, Response

SERVER_NAME = f"pytest-deproxy/{__version__}"

_date_cache: tuple[int, str] = (0, "")


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
            if chunked or (sent.trailers and request.http_version == "1.1"):
                headers._append("Transfer-Encoding", "chunked")
            elif not (sent.trailers and request.http_version == "2"):
                # With trailers, HTTP/2 ends the body at END_STREAM (as gRPC servers do):
                # nginx's grpc_pass drops the trailers of a body a length says is over.
                headers._append("Content-Length", str(len(sent.raw_body)))
        # An HTTP/1.0 client assumes the server closes unless told otherwise.
        http10_keep_alive = request.http_version == "1.0" and wire.request_keeps_alive(request)
        if http10_keep_alive and "Connection" not in headers:
            headers._append("Connection", "keep-alive")
    tracking_id = request.headers.get(TRACKING_HEADER)
    if tracking_id is not None and TRACKING_HEADER not in headers:
        headers._append(TRACKING_HEADER, tracking_id)
    if (
        sent.trailers
        and request.http_version in ("1.0", "1.1")
        and not _carries_trailers(sent, request)
    ):
        sent.trailers = Headers()
    return sent


def _carries_trailers(sent: Response, request: Request) -> bool:
    """Whether HTTP/1 sends ``sent``'s trailers: after a chunked body only."""
    return wire.response_has_body(int(sent.code), request.method) and sent.headers.has_token(
        "Transfer-Encoding", "chunked"
    )


def wire_parts(sent: Response, request: Request) -> tuple[bytes, bytes]:
    """The head of ``sent``, and its body framed as its headers say (empty where the exchange
    allows no body: HEAD, 1xx, 204, 304)."""
    head = wire.serialize_response_head(sent)
    if not wire.response_has_body(int(sent.code), request.method):
        return head, b""
    chunked = sent.headers.has_token("Transfer-Encoding", "chunked")
    return head, wire.frame_body(sent.raw_body, chunked=chunked, trailers=sent.trailers)


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
