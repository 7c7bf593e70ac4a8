"""Checks of what a proxy does with a message's meaning: Host and the absolute form (RFC 9112
§3.2), Expect and interim responses (RFC 9110 §10.1.1, §15.2), field order and combining
(§5.1-§5.3).

Rule kept here: a verdict rests on the two records, the request as the backend received it
and the answer as the client received it; a request the proxy refuses is ``n/a`` for a check
about forwarding, never a pass.
"""

from __future__ import annotations

from ..handlers import HandlerContext
from ..models import Request, Response
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
    status_of,
)

HOST = "RFC 9112 §3.2"


def response_status(chain: MessageChain) -> int | None:
    response = chain.received_response
    return None if response is None else response.status


def must_reject(id: str, title: str, data: bytes, reference: str, code: int = 400) -> None:
    """A check: ``data`` must be answered ``code`` by the proxy and reach no backend."""

    def run(target: Target) -> Outcome:
        chain = target.raw(data.replace(b"{host}", target.authority.encode()))
        arrived = target.backend(chain)
        if arrived:
            return failed(
                f"the request reached the backend ({len(arrived)} request(s)) and "
                f"{status_of(chain)}: the proxy MUST answer {code} and not forward it "
                f"({reference})",
                chain,
            )
        if response_status(chain) != code:
            return failed(
                f"nothing was forwarded, but {status_of(chain)}: the proxy MUST answer {code} "
                f"({reference})",
                chain,
            )
        return passed(f"answered {code}, nothing forwarded", chain)

    check(id, title, reference)(run)


_TRACK = b"Deproxy-Request-ID: {request_id}\r\n"
must_reject(
    "host.missing",
    "An HTTP/1.1 request without Host is answered 400",
    b"GET /conformance/host.missing HTTP/1.1\r\n" + _TRACK + b"\r\n",
    HOST,
)
must_reject(
    "host.duplicate",
    "An HTTP/1.1 request with two Host fields is answered 400",
    b"GET /conformance/host.duplicate HTTP/1.1\r\nHost: {host}\r\nHost: deproxy-other.test\r\n"
    + _TRACK
    + b"\r\n",
    HOST,
)
must_reject(
    "host.invalid",
    "A Host that is not a host and port is answered 400",
    b"GET /conformance/host.invalid HTTP/1.1\r\nHost: deproxy bad.test\r\n" + _TRACK + b"\r\n",
    HOST,
)


@check("host.absolute-form", "The absolute form's authority replaces the Host field", HOST)
def _absolute_form(target: Target) -> Outcome:
    chain = target.raw(
        b"GET http://" + target.authority.encode() + b"/conformance/host.absolute-form HTTP/1.1"
        b"\r\nHost: deproxy-wrong-host.test\r\n" + _TRACK + b"\r\n"
    )
    arrived = target.backend(chain)
    if not arrived:
        return failed(
            f"{status_of(chain)} and nothing was forwarded: a server MUST accept the absolute "
            f"form ({HOST}.2)",
            chain,
        )
    hosts = field_lines(arrived[0].request.headers.items(), "Host")
    if any("deproxy-wrong-host" in host for host in hosts) or len(hosts) != 1:
        return failed(
            f"the backend received Host {hosts}: a proxy MUST ignore the received Host and "
            f"generate one from the target's authority ({HOST}.2)",
            chain,
        )
    return passed(f"the backend received Host: {hosts[0]}", chain)


@check("host.http10", "An HTTP/1.0 request without Host is forwarded with one Host", HOST)
def _http10_host(target: Target) -> Outcome:
    chain = target.raw(b"GET /conformance/host.http10 HTTP/1.0\r\n" + _TRACK + b"\r\n")
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"{status_of(chain)}; nothing reached the backend", chain)
    request = arrived[0].request
    hosts = field_lines(request.headers.items(), "Host")
    if request.http_version == "1.1" and len(hosts) != 1:
        return failed(
            f"the proxy forwarded HTTP/1.1 with Host {hosts}: an HTTP/1.1 request carries "
            f"exactly one ({HOST})",
            chain,
        )
    return passed(f"forwarded as HTTP/{request.http_version} with Host {hosts}", chain)


# -- Expect and interim responses -----------------------------------------------------------
EXPECT = "RFC 9110 §10.1.1"
BODY = "0123456789abcdef" * 64


def body_intact(target: Target, chain: MessageChain, sent: bytes, what: str) -> Outcome:
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"{status_of(chain)}; nothing reached the backend", chain)
    got = arrived[0].request.raw_body
    if got != sent:
        return failed(
            f"{what}: the client sent {len(sent)} body bytes and the backend received "
            f"{len(got)} ({got[:40]!r}...)",
            chain,
        )
    if not from_origin(chain):
        return failed(f"{what}: the body arrived, but {status_of(chain)}", chain)
    return passed(f"{what}: the body reached the backend intact; {status_of(chain)}", chain)


@check(
    "expect.100-continue",
    "A request with Expect: 100-continue gets its body through",
    EXPECT,
    group="alone",
)
def _expect(target: Target) -> Outcome:
    chain = target.request("expect.100-continue", "POST", body=BODY, expect_continue=True)
    return body_intact(target, chain, BODY.encode(), "Expect: 100-continue")


@check(
    "expect.http10",
    "Expect: 100-continue from an HTTP/1.0 client gets no 100",
    EXPECT,
    group="alone",
)
def _expect_http10(target: Target) -> Outcome:
    data = (
        b"POST /conformance/expect.http10 HTTP/1.0\r\nHost: "
        + target.authority.encode()
        + b"\r\n"
        + _TRACK
        + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY.encode())
    )
    chain = target.raw(data)
    if chain.interim_responses:
        codes = [response.code for response in chain.interim_responses]
        return failed(
            f"the HTTP/1.0 client received {codes}: a server MUST ignore 100-continue from "
            f"HTTP/1.0 and MUST NOT send it a 1xx ({EXPECT}, RFC 9110 §15.2)",
            chain,
        )
    return body_intact(target, chain, BODY.encode(), "no 1xx sent")


def _early_hints(request: Request, context: HandlerContext) -> Response:
    context.send_interim(Response(103, headers=[("Link", "</deproxy.css>; rel=preload")]))
    return origin_answer()


@check(
    "interim.http10", "An HTTP/1.0 client is sent no 1xx response", "RFC 9110 §15.2", group="alone"
)
def _interim_http10(target: Target) -> Outcome:
    chain = target.request("interim.http10", http_version="1.0", answer=_early_hints)
    if chain.interim_responses:
        return failed(
            "the backend sent 103 and the HTTP/1.0 client received "
            f"{[r.code for r in chain.interim_responses]}: a server MUST NOT send a 1xx "
            "response to an HTTP/1.0 client (RFC 9110 §15.2)",
            chain,
        )
    if not from_origin(chain):
        return failed(
            f"the backend sent 103 then 200, and {status_of(chain)}: the proxy, a client of the "
            "backend, MUST be able to read 1xx responses before the final one (RFC 9110 §15.2)",
            chain,
        )
    return passed("the 103 was not relayed to the HTTP/1.0 client", chain)


# -- fields ---------------------------------------------------------------------------------
FIELDS = "RFC 9110 §5.3"
_MULTI = [("X-Deproxy-Multi", "first"), ("X-Deproxy-Other", "x"), ("X-Deproxy-Multi", "second")]


def _in_order(fields: list[tuple[str, str]] | None, chain: MessageChain, where: str) -> Outcome:
    if fields is None:
        return not_applicable(f"nothing reached the {where} ({status_of(chain)})", chain)
    values = [v.strip() for line in field_lines(fields, "X-Deproxy-Multi") for v in line.split(",")]
    if values != ["first", "second"]:
        return failed(
            f"X-Deproxy-Multi was sent as 'first' then 'second' and the {where} received "
            f"{values}: a proxy MUST NOT change the order of a field's lines ({FIELDS})",
            chain,
        )
    return passed(f"the {where} received X-Deproxy-Multi as {values}", chain)


@check("fields.request-order", "Lines of one request field keep their order", FIELDS)
def _request_order(target: Target) -> Outcome:
    chain = target.request("fields.request-order", headers=_MULTI)
    arrived = target.backend(chain)
    return _in_order(arrived[0].request.headers.items() if arrived else None, chain, "backend")


@check("fields.response-order", "Lines of one response field keep their order", FIELDS)
def _response_order(target: Target) -> Outcome:
    chain = target.request("fields.response-order", answer=origin_answer(headers=_MULTI))
    response = chain.received_response if from_origin(chain) else None
    return _in_order(response.headers.items() if response else None, chain, "client")


@check("fields.set-cookie", "Set-Cookie lines are relayed apart, never combined", FIELDS)
def _set_cookie(target: Target) -> Outcome:
    cookies = [
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
    ]
    chain = target.request("fields.set-cookie", answer=origin_answer(headers=cookies))
    if not from_origin(chain):
        return not_applicable(f"{status_of(chain)}: no backend answer to look at", chain)
    assert chain.received_response is not None
    got = field_lines(chain.received_response.headers.items(), "Set-Cookie")
    if got != [value for _, value in cookies]:
        return failed(
            f"the backend sent two Set-Cookie lines and the client received {got}: Set-Cookie "
            f"cannot be combined into one line ({FIELDS})",
            chain,
        )
    return passed("both Set-Cookie lines reached the client as sent", chain)


UNKNOWN = ("X-Deproxy-Unknown", "some value; with=parameters")


@check("fields.request-unknown", "An unknown request field is forwarded", "RFC 9110 §5.1")
def _request_unknown(target: Target) -> Outcome:
    chain = target.request("fields.request-unknown", headers=[UNKNOWN])
    arrived = target.backend(chain)
    if not arrived:
        return not_applicable(f"nothing reached the backend ({status_of(chain)})", chain)
    got = field_lines(arrived[0].request.headers.items(), UNKNOWN[0])
    if got != [UNKNOWN[1]]:
        return failed(
            f"the backend received {UNKNOWN[0]} {got}: a proxy MUST forward unrecognized "
            "fields (RFC 9110 §5.1)",
            chain,
        )
    return passed("forwarded unchanged", chain)


@check("fields.response-unknown", "An unknown response field is forwarded", "RFC 9110 §5.1")
def _response_unknown(target: Target) -> Outcome:
    chain = target.request("fields.response-unknown", answer=origin_answer(headers=[UNKNOWN]))
    if not from_origin(chain):
        return not_applicable(f"{status_of(chain)}: no backend answer to look at", chain)
    assert chain.received_response is not None
    got = field_lines(chain.received_response.headers.items(), UNKNOWN[0])
    if got != [UNKNOWN[1]]:
        return failed(f"the client received {UNKNOWN[0]} {got} (RFC 9110 §5.1)", chain)
    return passed("forwarded unchanged", chain)
