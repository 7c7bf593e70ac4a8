"""Checks of what an intermediary must take off and put on a message: hop-by-hop fields
(RFC 9110 §7.6.1) both ways, Via (§7.6.3) and Max-Forwards (§7.6.2).

Rule kept here: every value the client or the backend sends is unique to its check
(``x-deproxy-...``, ``timeout=91``), so a proxy that adds its own ``Connection: close`` or
``Keep-Alive`` is never mistaken for one that forwarded the other side's; each verdict is
read from the record on both sides: the field lines as the backend received them
(``headers.items()``) and the raw head's bytes must agree.
"""

from __future__ import annotations

import re

from ..record import MessageChain
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
    raw_field,
    raw_head,
    status_of,
)

HOP = "RFC 9110 §7.6.1"
Fields = list[tuple[str, str]]


def _found(items: Fields, head: bytes, forbidden: Fields) -> list[str]:
    """Each forbidden ``(name, value pattern)`` found, in the parsed record or the raw bytes."""
    found: list[str] = []
    for name, pattern in forbidden:
        values = field_lines(items, name)
        values += [raw.decode("latin-1") for raw in raw_field(head, name)]
        for value in values:
            shown = f"{name}: {value}"
            if re.search(pattern, value, re.I) and shown not in found:
                found.append(shown)
    return found


def _shown(fields: Fields) -> str:
    return "; ".join(f"{name}: {value}" for name, value in fields)


def request_drops(
    id: str, title: str, sent: Fields, forbidden: Fields, reference: str = HOP
) -> None:
    """A check: the client sends ``sent``; none of ``forbidden`` may reach the backend."""

    def run(target: Target) -> Outcome:
        chain = target.request(id, headers=sent)
        arrived = target.backend(chain)
        if not arrived:
            return not_applicable(
                f"nothing reached the backend ({status_of(chain)}), so what the proxy would "
                f"forward of {_shown(sent)!r} cannot be seen",
                chain,
            )
        handling = arrived[0]
        found = _found(handling.request.headers.items(), raw_head(handling), forbidden)
        if found:
            return failed(
                f"the client sent {_shown(sent)!r} and the backend received {found}: the "
                f"proxy must remove these before forwarding ({reference})",
                chain,
            )
        return passed(f"the client sent {_shown(sent)!r}; none of it reached the backend", chain)

    check(id, title, reference)(run)


def response_drops(
    id: str, title: str, sent: Fields, forbidden: Fields, reference: str = HOP
) -> None:
    """A check: the backend answers with ``sent``; none of ``forbidden`` may reach the client."""

    def run(target: Target) -> Outcome:
        chain = target.request(id, answer=origin_answer(headers=sent))
        if not target.backend(chain):
            return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
        response = chain.received_response
        if response is None or not from_origin(chain):
            return not_applicable(
                f"the backend answered with {_shown(sent)!r} and {status_of(chain)}: the "
                "proxy did not relay the answer, so nothing of it was forwarded",
                chain,
            )
        found = _found(response.headers.items(), b"", forbidden)
        if found:
            return failed(
                f"the backend answered with {_shown(sent)!r} and the client received {found}: "
                f"the proxy must remove these before forwarding ({reference})",
                chain,
            )
        return passed(f"the backend sent {_shown(sent)!r}; none of it reached the client", chain)

    check(id, title, reference)(run)


ANY = r"."
# -- hop-by-hop fields on the request -------------------------------------------------------
request_drops(
    "hop.request.connection",
    "The client's Connection options are not forwarded",
    [("Connection", "x-deproxy-option")],
    [("Connection", "x-deproxy-option")],
)
request_drops(
    "hop.request.connection-nominated",
    "A field the client nominates in Connection is removed",
    [("Connection", "x-deproxy-hop"), ("X-Deproxy-Hop", "hop-secret")],
    [("X-Deproxy-Hop", ANY)],
)
request_drops(
    "hop.request.connection-nominated-several",
    "Every field of a Connection list is removed",
    [("Connection", "x-deproxy-a, x-deproxy-b"), ("X-Deproxy-A", "1"), ("X-Deproxy-B", "2")],
    [("X-Deproxy-A", ANY), ("X-Deproxy-B", ANY)],
)
request_drops(
    "hop.request.connection-nominated-case",
    "Connection options match field names case-insensitively",
    [("Connection", "X-DEPROXY-CASE"), ("x-deproxy-case", "1")],
    [("X-Deproxy-Case", ANY)],
)
request_drops(
    "hop.request.connection-repeated",
    "Options of a second Connection field line are honoured too",
    [("Connection", "keep-alive"), ("Connection", "x-deproxy-second"), ("X-Deproxy-Second", "1")],
    [("X-Deproxy-Second", ANY), ("Connection", "x-deproxy-second")],
)
request_drops(
    "hop.request.keep-alive",
    "Keep-Alive is not forwarded",
    [("Connection", "keep-alive"), ("Keep-Alive", "timeout=93, max=917")],
    [("Keep-Alive", r"917|timeout=93")],
)
request_drops(
    "hop.request.keep-alive-unnominated",
    "Keep-Alive is removed even when Connection does not name it",
    [("Keep-Alive", "timeout=94, max=918")],
    [("Keep-Alive", r"918|timeout=94")],
)
request_drops(
    "hop.request.te",
    "TE is not forwarded",
    [("Connection", "TE"), ("TE", "deflate;q=0.5")],
    [("TE", "deflate"), ("Connection", r"\bte\b")],
)
request_drops(
    "hop.request.te-unnominated",
    "TE is removed even when Connection does not name it",
    [("TE", "gzip;q=0.4")],
    [("TE", "gzip")],
)
request_drops(
    "hop.request.trailer-nominated",
    "Trailer nominated in Connection is removed (RFC 2616 §13.5.1 listed it as hop-by-hop)",
    [("Connection", "Trailer"), ("Trailer", "X-Deproxy-Sum")],
    [("Trailer", "x-deproxy-sum")],
)
request_drops(
    "hop.request.upgrade",
    "Upgrade is removed from a request that is not upgrading",
    [("Upgrade", "x-deproxy-proto/1")],
    [("Upgrade", "x-deproxy-proto")],
)
request_drops(
    "hop.request.proxy-connection",
    "Proxy-Connection is not forwarded",
    [("Proxy-Connection", "x-deproxy-pc")],
    [("Proxy-Connection", ANY)],
)
# -- hop-by-hop fields on the response ------------------------------------------------------
response_drops(
    "hop.response.connection",
    "The backend's Connection options are not forwarded",
    [("Connection", "x-deproxy-option")],
    [("Connection", "x-deproxy-option")],
)
response_drops(
    "hop.response.connection-nominated",
    "A field the backend nominates in Connection is removed",
    [("Connection", "x-deproxy-hop"), ("X-Deproxy-Hop", "hop-secret")],
    [("X-Deproxy-Hop", ANY)],
)
response_drops(
    "hop.response.connection-nominated-several",
    "Every field of the backend's Connection list is removed",
    [("Connection", "x-deproxy-a, x-deproxy-b"), ("X-Deproxy-A", "1"), ("X-Deproxy-B", "2")],
    [("X-Deproxy-A", ANY), ("X-Deproxy-B", ANY)],
)
response_drops(
    "hop.response.keep-alive",
    "The backend's Keep-Alive is not forwarded",
    [("Keep-Alive", "timeout=91, max=913")],
    [("Keep-Alive", r"913|timeout=91")],
)
response_drops(
    "hop.response.upgrade",
    "Upgrade is removed from a response that does not switch protocols",
    [("Upgrade", "x-deproxy-proto/1")],
    [("Upgrade", "x-deproxy-proto")],
)
response_drops(
    "hop.response.proxy-connection",
    "The backend's Proxy-Connection is not forwarded",
    [("Proxy-Connection", "x-deproxy-pc")],
    [("Proxy-Connection", ANY)],
)
response_drops(
    "hop.response.trailer-nominated",
    "Trailer nominated in the backend's Connection is removed",
    [("Connection", "Trailer"), ("Trailer", "X-Deproxy-Sum")],
    [("Trailer", "x-deproxy-sum")],
)


# -- Via ------------------------------------------------------------------------------------
VIA = "RFC 9110 §7.6.3"


def _members(values: list[str]) -> list[str]:
    return [member.strip() for value in values for member in value.split(",") if member.strip()]


@check("via.request", "The proxy adds Via to the request it forwards", VIA)
def _via_request(target: Target) -> Outcome:
    chain = target.request("via.request")
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    via = field_lines(arrived[0].request.headers.items(), "Via")
    if not via:
        return failed(f"the backend received no Via: a proxy MUST send one ({VIA})", chain)
    if not any(re.match(r"(HTTP/)?1\.1\s", member) for member in _members(via)):
        return failed(f"Via {via!r} names no received-protocol 1.1 for this hop", chain)
    return passed(f"the backend received Via: {', '.join(via)}", chain)


@check("via.response", "The proxy adds Via to the response it forwards", VIA)
def _via_response(target: Target) -> Outcome:
    chain = target.request("via.response")
    if not from_origin(chain):
        return not_applicable(f"{status_of(chain)}: no backend answer to look at", chain)
    assert chain.received_response is not None
    via = field_lines(chain.received_response.headers.items(), "Via")
    if not via:
        return failed(f"the client received no Via: a proxy MUST send one ({VIA})", chain)
    return passed(f"the client received Via: {', '.join(via)}", chain)


def _keeps_earlier(chain: MessageChain, fields: Fields | None, earlier: str, where: str) -> Outcome:
    if fields is None:
        return not_applicable(f"nothing reached the {where} ({status_of(chain)})", chain)
    members = _members(field_lines(fields, "Via"))
    if not members or members[0] != earlier:
        return failed(
            f"the earlier hop's Via entry {earlier!r} is not first at the {where} (got "
            f"{members}): a proxy appends its own entry and keeps the order ({VIA})",
            chain,
        )
    return passed(f"the {where} received Via {', '.join(members)}", chain)


@check("via.request-keeps-earlier", "An earlier Via entry is kept first", VIA)
def _via_request_earlier(target: Target) -> Outcome:
    chain = target.request("via.request-keeps-earlier", headers=[("Via", "1.0 deproxy-client")])
    arrived = target.backend(chain)
    fields = arrived[0].request.headers.items() if arrived else None
    return _keeps_earlier(chain, fields, "1.0 deproxy-client", "backend")


@check("via.response-keeps-earlier", "The backend's Via entry is kept first", VIA)
def _via_response_earlier(target: Target) -> Outcome:
    answer = origin_answer(headers=[("Via", "1.1 deproxy-origin")])
    chain = target.request("via.response-keeps-earlier", answer=answer)
    response = chain.received_response if from_origin(chain) else None
    fields = response.headers.items() if response is not None else None
    return _keeps_earlier(chain, fields, "1.1 deproxy-origin", "client")


@check("via.received-protocol", "Via names the protocol the proxy received (1.0)", VIA)
def _via_protocol(target: Target) -> Outcome:
    chain = target.request("via.received-protocol", http_version="1.0")
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    members = _members(field_lines(arrived[0].request.headers.items(), "Via"))
    if not members:
        return not_applicable("the proxy adds no Via (see via.request)", chain)
    if not re.match(r"(HTTP/)?1\.0\s", members[-1]):
        return failed(
            f"the client spoke HTTP/1.0 and the proxy's Via entry is {members[-1]!r}: the "
            f"received-protocol is the version of the message received ({VIA})",
            chain,
        )
    return passed(f"the proxy's Via entry is {members[-1]!r}", chain)


# -- Max-Forwards ---------------------------------------------------------------------------
MAX_FORWARDS = "RFC 9110 §7.6.2"


def max_forwards(method: str, value: int) -> None:
    id = f"max-forwards.{method.lower()}-{'zero' if value == 0 else 'decrement'}"
    title = (
        f"{method} with Max-Forwards: 0 is answered by the proxy, not forwarded"
        if value == 0
        else f"{method} is forwarded with Max-Forwards decremented"
    )

    def run(target: Target) -> Outcome:
        chain = target.request(id, method, headers=[("Max-Forwards", str(value))])
        arrived = target.backend(chain)
        if value == 0:
            if arrived:
                return failed(
                    f"{method} with Max-Forwards: 0 reached the backend: the proxy MUST NOT "
                    f"forward it and MUST answer as the final recipient ({MAX_FORWARDS})",
                    chain,
                )
            if chain.received_response is None:
                return failed(f"the proxy did not answer: {status_of(chain)}", chain)
            return passed(f"not forwarded; {status_of(chain)}", chain)
        if not arrived:
            return not_applicable(
                f"the proxy does not forward {method} ({status_of(chain)})", chain
            )
        got = field_lines(arrived[0].request.headers.items(), "Max-Forwards")
        if got != [str(value - 1)]:
            return failed(
                f"the client sent Max-Forwards: {value} and the backend received {got}: a "
                f"proxy that forwards {method} MUST decrement it ({MAX_FORWARDS})",
                chain,
            )
        return passed(f"the backend received Max-Forwards: {got[0]}", chain)

    check(id, title, MAX_FORWARDS)(run)


for _method in ("OPTIONS", "TRACE"):
    max_forwards(_method, 0)
    max_forwards(_method, 5)
