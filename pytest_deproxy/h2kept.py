"""What an HTTP/2 connection makes once and sends or records again: a request's header block
and the last answer made for a request with no tracking id.

Rule kept here: what is kept is shared only as immutable tuples and str, and every request
and answer made of it is a new Request or Response with its own Headers over them, equal to
what making it anew would give (``tests/test_h2perf_answers.py`` holds the two to the same).
The session that keeps them (:mod:`~pytest_deproxy.h2serve`) decides when one is used.
"""

from __future__ import annotations

from . import responding
from .h2frames import CONNECTION_SPECIFIC, fields_text, request_of
from .models import TRACKING_KEY, Headers, Request, Response


class KeptHead:
    """What a request's header block makes: the request's parts (shared only as immutable
    tuples and str) and the text the record keeps of the block. A client sends the same block
    again and again (h2load, a proxy's health checks): each is made once per connection, and
    every request made of it is a new Request with its own Headers over the same tuples, equal
    to what ``request_of`` makes. The wire gives the same fields (the same list) for the same
    block again: a head is found by their identity, and holds them, so that no other list
    can take their id while it is kept. A block with the tracking header (new in every
    request) is not kept."""

    __slots__ = ("fields", "items", "keys", "method", "path", "raw_head", "tracked")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        request = request_of(fields)
        self.fields = fields  # held: the block is known by the identity of its fields
        self.method, self.path = request.method, request.path
        self.items, self.keys = request.headers._items, request.headers._keys
        self.raw_head = fields_text(fields)
        self.tracked = TRACKING_KEY in self.keys


class KeptAnswer:
    """An answer made on the connection's thread for a request with no tracking id, kept to
    be sent again: the parts it was made from (compared by value, as ``responding``'s
    ``respond_again`` does, so a Response changed since makes a new one), the Date's second it
    was made in, and what was made: the response as sent (immutable tuples and str) and its
    fields, a tuple, so that h2conn encodes them once per HPACK table state. A handling it
    answers is finished with it (``Handling.finish_as``): its Response as sent is made from it
    when first read."""

    __slots__ = (
        "body",
        "code",
        "fields",
        "items",
        "keys",
        "message",
        "raw_body",
        "second",
        "source",
    )

    def __init__(
        self, response: Response, sent: Response, fields: list[tuple[str, str]], second: int
    ) -> None:
        self.source = response.headers._items
        self.code, self.message = response.code, response.message
        self.body, self.raw_body = response.body, response.raw_body
        self.second = second
        self.items, self.keys = sent.headers._items, sent.headers._keys
        self.fields = tuple(fields)

    def answers(self, response: Response, second: int) -> bool:
        """Whether ``response`` is made of the same parts, in the same second."""
        items, code, message = response.headers._items, response.code, response.message
        body, raw_body = response.body, response.raw_body
        return not (
            (self.source is not items and self.source != items)
            or (self.code is not code and self.code != code)
            or (self.message is not message and self.message != message)
            or (self.body is not body and (type(self.body) is not type(body) or self.body != body))
            or (self.raw_body is not raw_body and self.raw_body != raw_body)
            or self.second != second
            or (response._trailers is not None and response.has_trailers)
        )

    def sent(self) -> Response:
        """The response as sent: a new Response (and Headers) sharing the made tuples."""
        sent = object.__new__(Response)
        sent.code, sent.message, sent.http_version = self.code, self.message, "2"
        sent.headers = Headers.from_wire(self.items, self.keys)
        sent.body, sent.raw_body = self.body, self.raw_body
        sent._trailers = None
        return sent


def sent_and_fields(
    response: Response, request: Request, defaults: bool
) -> tuple[Response, list[tuple[str, str]]]:
    """The response as sent (what HTTP/2 can carry is what is recorded), and its fields
    (``response_fields`` of it), made in the same pass."""
    sent = responding.as_sent(response, request, defaults=defaults)
    items = sent.headers.items()
    fields = [(":status", sent.code)]
    carried = True
    for name, value in items:
        lower = name.lower()
        if lower in CONNECTION_SPECIFIC or lower[:1] == ":":
            carried = False
        else:
            fields.append((lower, value))
    if not carried:
        sent.headers = Headers.from_wire(
            [(n, v) for n, v in items if n.lower() not in CONNECTION_SPECIFIC and n[:1] != ":"]
        )
    sent.http_version = "2"
    return sent, fields
