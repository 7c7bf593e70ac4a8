"""Checks of what a proxy tells the backend about the client (Forwarded, X-Forwarded-For:
RFC 7239), and of methods and answers whose framing is special: HEAD, 204 and 304 have no
body, an unknown method, bodies sent with Content-Length and chunked both ways.

Rule kept here: a bodiless answer is checked where it can go wrong, on a persistent client
connection: the answer after it must be the next request's own (its echoed tracking id).
A proxy that refuses what a check is about makes it ``n/a``, never ``pass``.
"""

from __future__ import annotations

import re

from ..handlers import HandlerContext
from ..models import TRACKING_HEADER, Request, Response
from .check import (
    Outcome,
    Target,
    check,
    failed,
    field_lines,
    from_origin,
    not_applicable,
    origin_answer,
    passed,
    status_of,
)
from .semantics import BODY, body_intact, response_status

# -- Forwarded and X-Forwarded-For ----------------------------------------------------------
SPOOF = "203.0.113.66"
_ELEMENT = re.compile(r'(?:for|by|host|proto)=(?:[!#$%&\'*+.^_`|~0-9A-Za-z-]+|"[^"\\]*")', re.I)


def _last_for(values: list[str]) -> str | None:
    elements = [element for value in values for element in value.split(",")]
    if not elements:
        return None
    found = re.search(r'for="?\[?([^;,"\]]+)', elements[-1], re.I)
    return found.group(1) if found else ""


def spoof(id: str, name: str, value: str) -> None:
    def run(target: Target) -> Outcome:
        chain = target.request(id, headers=[(name, value)])
        arrived = target.backend(chain)
        if not arrived:
            return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
        values = field_lines(arrived[0].request.headers.items(), name)
        last = (
            _last_for(values)
            if name == "Forwarded"
            else (values[-1].split(",")[-1].strip() if values else None)
        )
        if last == SPOOF:
            return failed(
                f"the client sent {name}: {value} and the backend received {values}: the "
                "nearest hop it sees is the client's own claim, so the client's address can "
                "be spoofed; the proxy must append the address it saw, or remove the field "
                "(RFC 7239 §8.1)",
                chain,
            )
        return passed(f"the backend received {name} {values}", chain)

    check(id, f"A client's own {name} does not pass for its address", "RFC 7239 §8.1")(run)


spoof("forwarded.xff-spoof", "X-Forwarded-For", SPOOF)
spoof("forwarded.forwarded-spoof", "Forwarded", f"for={SPOOF}")


@check("forwarded.client-address", "The backend learns the client's address", "RFC 7239 §5.2")
def _client_address(target: Target) -> Outcome:
    chain = target.request("forwarded.client-address")
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    items = arrived[0].request.headers.items()
    said = {
        name: field_lines(items, name) for name in ("Forwarded", "X-Forwarded-For", "X-Real-IP")
    }
    if not any(values for values in said.values()):
        return not_applicable(
            "the proxy adds neither Forwarded nor X-Forwarded-For (nor X-Real-IP) in this "
            "configuration: the backend cannot know the client's address",
            chain,
        )
    if not any("127.0.0.1" in value for values in said.values() for value in values):
        return failed(f"the client is 127.0.0.1 and the backend received {said}", chain)
    return passed(f"the backend received { ({k: v for k, v in said.items() if v}) }", chain)


@check("forwarded.syntax", "A Forwarded field the proxy adds is well formed", "RFC 7239 §4")
def _forwarded_syntax(target: Target) -> Outcome:
    chain = target.request("forwarded.syntax")
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    values = field_lines(arrived[0].request.headers.items(), "Forwarded")
    if not values:
        return not_applicable("the proxy adds no Forwarded field in this configuration", chain)
    pair = _ELEMENT.pattern
    element = re.compile(rf"(?:{pair})?(?:\s*;\s*(?:{pair})?)*", re.I)
    bad = [
        part.strip()
        for value in values
        for part in value.split(",")
        if not element.fullmatch(part.strip())
    ]
    if bad:
        return failed(
            f"Forwarded elements {bad} do not parse (an IPv6 address or a port must be quoted) "
            "(RFC 7239 §4)",
            chain,
        )
    return passed(f"Forwarded: {', '.join(values)}", chain)


# -- methods and bodiless answers -----------------------------------------------------------


def _then_get(target: Target, id: str, method: str, answer: Response, reference: str) -> Outcome:
    """``method`` answered ``answer`` on a persistent connection, then a GET on it."""
    with target.deproxy.connect(target.url, timeout=target.timeout) as connection:
        first = target.request(id, method, answer=answer, connection=connection)
        if first.received_response is None:
            return failed(f"the {method} got no answer: {first.error}", first)
        response = first.received_response
        if response.raw_body:
            return failed(
                f"the {response.code} answer to {method} carried {len(response.raw_body)} body "
                f"bytes: it has none ({reference})",
                first,
            )
        if response.code in ("204", "304") or method == "HEAD":
            framing = field_lines(response.headers.items(), "Transfer-Encoding")
            if response.code == "204":
                framing += field_lines(response.headers.items(), "Content-Length")
            if framing:
                return failed(f"the {response.code} carried framing fields {framing}", first)
        if connection.closed:
            return passed(f"{status_of(first)}, no body; the proxy closed the connection", first)
        second = target.request(id, connection=connection)
        echoed = second.received_response and second.received_response.headers.get(TRACKING_HEADER)
        if second.received_response is None and connection.closed:
            return passed(
                f"{status_of(first)}, no body; then the proxy closed the connection without "
                "having said Connection: close (see http11.persistent)",
                first,
                second,
            )
        if echoed != second.request_id:
            return failed(
                f"the GET after the {method} on the same connection got {status_of(second)} "
                f"with id {echoed!r}: the proxy framed the bodiless answer wrongly ({reference})",
                first,
                second,
            )
        return passed(f"{status_of(first)}, no body; the next request on it was answered", first)


@check(
    "method.head", "A HEAD answer has no body, and the connection stays in step", "RFC 9110 §9.3.2"
)
def _head(target: Target) -> Outcome:
    return _then_get(target, "method.head", "HEAD", origin_answer(), "RFC 9110 §9.3.2")


@check(
    "method.204",
    "A 204 has no body nor framing, and the connection stays in step",
    "RFC 9110 §15.3.5",
)
def _no_content(target: Target) -> Outcome:
    answer = origin_answer(204, body="")
    return _then_get(target, "method.204", "GET", answer, "RFC 9110 §15.3.5, RFC 9110 §8.6")


@check(
    "method.304",
    "A 304 with Content-Length has no body, and the connection stays in step",
    "RFC 9112 §6.3",
)
def _not_modified(target: Target) -> Outcome:
    answer = origin_answer(304, headers=[("Content-Length", "42"), ("ETag", '"deproxy"')], body="")
    return _then_get(target, "method.304", "GET", answer, "RFC 9112 §6.3")


@check("method.unknown", "An unknown method is forwarded unchanged, or refused", "RFC 9110 §9.1")
def _unknown_method(target: Target) -> Outcome:
    chain = target.request("method.unknown", "DEPROXYCHECK")
    arrived = target.backend(chain)
    if not arrived:
        if response_status(chain) in (405, 501):
            return not_applicable(f"the proxy refuses unknown methods: {status_of(chain)}", chain)
        return failed(f"{status_of(chain)}: an unknown method is refused with 501", chain)
    if arrived[0].request.method != "DEPROXYCHECK":
        return failed(f"the backend received method {arrived[0].request.method!r}", chain)
    return passed(f"forwarded unchanged; {status_of(chain)}", chain)


@check("method.post-body", "A request body with Content-Length arrives intact", "RFC 9112 §6.2")
def _post_body(target: Target) -> Outcome:
    chain = target.request("method.post-body", "POST", body=BODY)
    return body_intact(target, chain, BODY.encode(), "Content-Length body")


@check("method.chunked-body", "A chunked request body arrives intact", "RFC 9112 §7.1")
def _chunked_body(target: Target) -> Outcome:
    chain = target.request("method.chunked-body", "POST", body=BODY, chunked=True)
    return body_intact(target, chain, BODY.encode(), "chunked body")


def chunked_answer(request: Request, context: HandlerContext) -> Response:
    context.chunked = True
    return origin_answer(body=BODY)


@check("method.chunked-response", "A chunked response body arrives intact", "RFC 9112 §7.1")
def _chunked_response(target: Target) -> Outcome:
    chain = target.request("method.chunked-response", answer=chunked_answer)
    if not from_origin(chain):
        return failed(f"{status_of(chain)}", chain)
    assert chain.received_response is not None
    if chain.received_response.raw_body != BODY.encode():
        return failed(
            f"the client received {len(chain.received_response.raw_body)} of "
            f"{len(BODY)} body bytes",
            chain,
        )
    return passed("the chunked body reached the client intact", chain)
