"""Checks of what the proxy sends back: answers a client library would refuse to read (the
backend's whitespace before a colon, obs-fold, conflicting lengths, a length beside chunked),
read byte for byte; and the client connection itself (HTTP/1.0 without chunked answers,
keep-alive, persistence, pipelining).

Rules kept here: the backend's odd answer is written by ``handlers.raw`` (which closes the
upstream connection after it, so no other check inherits it); the client side is every byte
the proxy sent until it closed (:meth:`Target.exchange`), or a persistent client connection
whose answers are matched to requests by their echoed tracking ids. These run one at a time:
their requests are not made through ``make_request``, and would be orphans in the diagrams
of checks running beside them.
"""

from __future__ import annotations

import re

from .. import handlers
from ..models import TRACKING_HEADER
from .ambiguous import Build
from .check import (
    Outcome,
    Target,
    check,
    failed,
    from_origin,
    not_applicable,
    origin_answer,
    passed,
    status_of,
)
from .forwarding import chunked_answer
from .messages import CL_TE
from .semantics import BODY


# -- answers a client library would not read, read byte for byte ---------------------------
def _get(http10: bool = False) -> Build:
    version = b"1.0" if http10 else b"1.1"
    close = b"" if http10 else b"Connection: close\r\n"
    return lambda host, rid: (
        b"GET {path} HTTP/"
        + version
        + b"\r\nHost: "
        + host
        + b"\r\n"
        + b"Deproxy-Request-ID: "
        + rid
        + b"\r\n"
        + close
        + b"\r\n"
    )


def _first_line(head: bytes) -> bytes:
    return head.split(b"\r\n")[0]


def _head_of(received: bytes) -> bytes:
    return received.partition(b"\r\n\r\n")[0]


def answer_check(id: str, title: str, reference: str, raw: bytes, bad: bytes, what: str) -> None:
    """A check: the backend answers ``raw``; the client's head must not match ``bad``, or the
    proxy answers 502 instead."""

    def run(target: Target) -> Outcome:
        chain, received = target.exchange(_get(), handlers.raw(raw))
        if not chain.handlings:
            return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
        head = _head_of(received)
        if not received:
            return failed(f"the client received nothing: {chain.error}", chain)
        if re.search(bad, head, re.I):
            return failed(f"the client received {what}: {head[:300]!r} ({reference})", chain)
        return passed(f"the client received {_first_line(head)!r}", chain)

    check(id, title, reference, group="alone")(run)


# never pooled (close), never cached (no-store)
_OK = b"HTTP/1.1 200 OK\r\nX-Deproxy-Origin: 1\r\nConnection: close\r\nCache-Control: no-store\r\n"
answer_check(
    "framing.response-ws-before-colon",
    "Whitespace before a response field's colon is removed",
    "RFC 9112 §5.1",
    _OK + b"X-Deproxy-WS : 1\r\nContent-Length: 5\r\n\r\nhello",
    rb"\nX-Deproxy-WS[ \t]+:",
    "the field with whitespace before its colon",
)
answer_check(
    "framing.response-obs-fold",
    "An obs-fold in a response is replaced or refused 502",
    "RFC 9112 §5.2",
    _OK + b"X-Deproxy-Fold: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
    rb"\n[ \t]+b",
    "the obs-fold as it was",
)
answer_check(
    "framing.response-cl-conflicting",
    "A response with two Content-Lengths becomes 502",
    CL_TE,
    _OK + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    rb"^(?!HTTP/1\.[01] 502)",
    "an answer other than 502",
)
answer_check(
    "framing.response-cl-te",
    "A response with Content-Length and chunked loses the length",
    CL_TE,
    _OK + b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    rb"content-length:(?s:.*)\ntransfer-encoding:|transfer-encoding:(?s:.*)\ncontent-length:",
    "both Content-Length and Transfer-Encoding",
)


@check(
    "http10.response-not-chunked",
    "An HTTP/1.0 client gets no chunked answer",
    "RFC 9112 §6.1",
    group="alone",
)
def _http10_chunked(target: Target) -> Outcome:
    chain, received = target.exchange(_get(http10=True), chunked_answer)
    head, _, body = received.partition(b"\r\n\r\n")
    if not chain.handlings:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    if re.search(rb"\ntransfer-encoding:", head, re.I):
        return failed(
            "the HTTP/1.0 client received Transfer-Encoding: a server MUST NOT send it to a "
            "client that did not speak HTTP/1.1 (RFC 9112 §6.1)",
            chain,
        )
    if BODY.encode() not in body:
        return failed(
            f"the client received {len(body)} body bytes, not the {len(BODY)} sent", chain
        )
    return passed(f"{_first_line(head)!r}, the body whole, not chunked", chain)


@check("http10.keep-alive", "HTTP/1.0 keep-alive: kept as answered, or closed", "RFC 9112 §9.3")
def _http10_keep_alive(target: Target) -> Outcome:
    headers = [("Connection", "keep-alive")]
    with target.deproxy.connect(target.url, timeout=target.timeout) as connection:
        first = target.request(
            "http10.keep-alive", headers=headers, http_version="1.0", connection=connection
        )
        if not from_origin(first):
            return failed(f"{status_of(first)}", first)
        if connection.closed:
            return passed(
                "the proxy did not keep the HTTP/1.0 connection alive, and closed it", first
            )
        second = target.request(
            "http10.keep-alive", headers=headers, http_version="1.0", connection=connection
        )
        if not from_origin(second):
            return failed(
                f"the proxy answered keep-alive, then the second request on the connection got "
                f"{status_of(second)} (RFC 9112 §9.3)",
                first,
                second,
            )
        return passed("kept alive: two requests answered on one HTTP/1.0 connection", first, second)


@check(
    "http11.persistent",
    "Three requests on one HTTP/1.1 connection are all answered",
    "RFC 9112 §9.3",
)
def _persistent(target: Target) -> Outcome:
    chains = []
    with target.deproxy.connect(target.url, timeout=target.timeout) as connection:
        for _ in range(3):
            chain = target.request("http11.persistent", connection=connection)
            chains.append(chain)
            echoed = chain.received_response and chain.received_response.headers.get(
                TRACKING_HEADER
            )
            if echoed != chain.request_id:
                unsaid = (
                    ": the proxy closed the connection after an answer that did not say "
                    "Connection: close; a server that does not keep connections MUST say so "
                    "in every answer (RFC 9112 §9.6)"
                    if chain.received_response is None and connection.closed
                    else " (RFC 9112 §9.3)"
                )
                return failed(
                    f"request {len(chains)} on a persistent connection: {status_of(chain)}, "
                    f"its answer for id {echoed!r}{unsaid}",
                    *chains,
                )
    return passed("three requests, three answers, one connection", *chains)


@check(
    "http11.pipelined", "Pipelined requests are answered in order", "RFC 9112 §9.3.2", group="alone"
)
def _pipelined(target: Target) -> Outcome:
    def build(host: bytes, rid: bytes) -> bytes:
        first = b"GET {path} HTTP/1.1\r\nHost: " + host + b"\r\nDeproxy-Request-ID: " + rid
        return first + b"-1\r\n\r\n" + first + b"-2\r\nConnection: close\r\n\r\n"

    chain, received = target.exchange(build, origin_answer())
    rid = chain.request_id
    order = re.findall(
        rb"(?i)\ndeproxy-request-id: *" + re.escape(rid.encode()) + rb"-([12])", received
    )
    if order != [b"1", b"2"]:
        return failed(
            f"two pipelined requests; the client got answers for {[o.decode() for o in order]} "
            f"({len(received)} bytes): a server MUST answer in the order received "
            "(RFC 9112 §9.3.2)",
            chain,
        )
    return passed("both pipelined requests answered, in order", chain)
