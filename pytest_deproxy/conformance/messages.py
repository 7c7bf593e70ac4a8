"""Checks of RFC 9112 request framing through the proxy: Content-Length and
Transfer-Encoding together, repeated and conflicting; obs-fold; whitespace before the colon;
bare CR and bare LF; chunk sizes and extensions; chunked not last; oversized heads.

Rules kept here: a request whose framing two readers may disagree on is decided by
:func:`~pytest_deproxy.conformance.classify.classify` from the backend's bytes: rejected,
normalised or dropped pass, forwarded-ambiguous fails. A request whose syntax is valid must
arrive with its body intact, and one the RFC says MUST be refused must be.
"""

from __future__ import annotations

from .ambiguous import Build, chunked_smuggle, request_bytes, smuggled
from .check import (
    Outcome,
    Target,
    check,
    failed,
    passed,
    status_of,
)
from .classify import classify
from .semantics import body_intact, must_reject

CL_TE = "RFC 9112 §6.3"
CHUNKS = "RFC 9112 §7.1"


def ambiguity(id: str, title: str, reference: str, build: Build) -> None:
    """A check: ``build``'s request is rejected, normalised or dropped, never forwarded as it is."""

    def run(target: Target) -> Outcome:
        chain, probe = target.probe(build)
        raws = target.backend_bytes(chain)
        response = chain.received_response
        verdict = classify(chain.sent_bytes or b"", response.status if response else None, raws)
        if probe.extra:
            codes = [answer.code for answer in probe.extra]
            return failed(
                f"the client sent one request and got {1 + len(codes)} answers (then {codes}): "
                f"the proxy read requests where there was one; {verdict.detail}",
                chain,
            )
        if verdict.verdict == "forwarded-ambiguous":
            return failed(f"forwarded-ambiguous: {verdict.detail}", chain)
        return passed(f"{verdict.verdict}: {verdict.detail}", chain)

    check(id, title, reference)(run)


def _fields(*fields: bytes, body: bytes = b"", line: bytes = b"") -> Build:
    return lambda host, rid: request_bytes(host, rid, list(fields), body, line=line)


def _cl_smuggle(*fields: bytes) -> Build:
    """``fields`` (``%d`` for the body's length) and a body that hides a request."""

    def build(host: bytes, rid: bytes) -> bytes:
        body = smuggled(host, rid)
        return request_bytes(host, rid, [f.replace(b"%d", b"%d" % len(body)) for f in fields], body)

    return build


def _te_smuggle(*fields: bytes) -> Build:
    """``fields`` (``%d``: the whole body's length) and a chunked body that ends at once."""

    def build(host: bytes, rid: bytes) -> bytes:
        body = chunked_smuggle(host, rid)
        return request_bytes(host, rid, [f.replace(b"%d", b"%d" % len(body)) for f in fields], body)

    return build


def _chunked(size_line: bytes, data: bytes = b"hello") -> Build:
    body = size_line + b"\r\n" + data + b"\r\n0\r\n\r\n"
    return _fields(b"Transfer-Encoding: chunked", body=body)


ambiguity(
    "framing.cl-te",
    "Content-Length beside chunked is refused or dropped",
    CL_TE,
    _te_smuggle(b"Content-Length: %d", b"Transfer-Encoding: chunked"),
)
ambiguity(
    "framing.te-cl",
    "Chunked before Content-Length is refused or dropped",
    CL_TE,
    _te_smuggle(b"Transfer-Encoding: chunked", b"Content-Length: 3"),
)
ambiguity(
    "framing.cl-duplicate",
    "Two equal Content-Lengths are refused or merged",
    CL_TE,
    _cl_smuggle(b"Content-Length: %d", b"Content-Length: %d"),
)
ambiguity(
    "framing.cl-list",
    "A Content-Length list of equal values is refused or merged",
    CL_TE,
    _cl_smuggle(b"Content-Length: %d, %d"),
)
ambiguity(
    "framing.obs-fold",
    "An obs-fold is refused or replaced by spaces",
    "RFC 9112 §5.2",
    _fields(b"X-Deproxy-Fold: first", b" folded"),
)
ambiguity(
    "framing.ws-before-colon-cl",
    "Content-Length with space before its colon is not trusted",
    "RFC 9112 §5.1",
    _cl_smuggle(b"Content-Length : %d"),
)
ambiguity(
    "framing.bare-cr",
    "A bare CR in a field value is refused or replaced by SP",
    "RFC 9112 §2.2",
    _fields(b"X-Deproxy-CR: one\rtwo"),
)
ambiguity(
    "framing.bare-lf",
    "Lines ending in a bare LF are refused or forwarded with CRLF",
    "RFC 9112 §2.2",
    lambda h, r: request_bytes(h, r, [b"X-Deproxy-LF: 1"]).replace(b"\r\n", b"\n"),
)
ambiguity(
    "framing.leading-empty-line",
    "An empty line before the request line is not forwarded",
    "RFC 9112 §2.2",
    lambda h, r: b"\r\n" + request_bytes(h, r, []),
)
ambiguity(
    "framing.chunk-size-prefix", "A chunk size written 0x5 is refused", CHUNKS, _chunked(b"0x5")
)
ambiguity(
    "framing.chunk-size-overflow",
    "A chunk size over 64 bits is refused",
    CHUNKS,
    _chunked(b"10000000000000005"),
)
ambiguity(
    "framing.chunk-size-space",
    "Whitespace inside a chunk-size line is refused",
    CHUNKS,
    _chunked(b"5 5"),
)
ambiguity(
    "framing.chunk-lf",
    "A chunk-size line ending in a bare LF is refused or normalised",
    CHUNKS,
    _fields(b"Transfer-Encoding: chunked", body=b"5\nhello\r\n0\r\n\r\n"),
)
ambiguity(
    "framing.te-unknown",
    "An unknown transfer coding is refused (501)",
    "RFC 9112 §6.1",
    _te_smuggle(b"Transfer-Encoding: x-deproxy", b"Content-Length: %d"),
)
ambiguity(
    "framing.te-chunked-twice",
    "chunked applied twice is refused or normalised",
    "RFC 9112 §6.1",
    _te_smuggle(b"Transfer-Encoding: chunked, chunked"),
)
ambiguity(
    "framing.te-http10",
    "Transfer-Encoding in HTTP/1.0 is treated as faulty framing",
    "RFC 9112 §6.1",
    lambda h, r: _te_smuggle(b"Transfer-Encoding: chunked", b"Content-Length: %d")(h, r).replace(
        b"POST / HTTP/1.1", b"POST / HTTP/1.0", 1
    ),
)
ambiguity(
    "framing.te-obfuscated",
    "Transfer-Encoding: xchunked is not read as chunked",
    "RFC 9112 §6.1",
    _te_smuggle(b"Transfer-Encoding: xchunked", b"Content-Length: %d"),
)

_TRACK = b"Deproxy-Request-ID: {request_id}\r\n"
_POST = b"POST /conformance/%s HTTP/1.1\r\nHost: {host}\r\n" + _TRACK
must_reject(
    "framing.cl-conflicting",
    "Two different Content-Lengths are answered 400",
    _POST % b"cl" + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    CL_TE,
)
must_reject(
    "framing.cl-plus",
    "Content-Length: +5 is answered 400",
    _POST % b"plus" + b"Content-Length: +5\r\n\r\nhello",
    CL_TE,
)
must_reject(
    "framing.ws-before-colon",
    "Whitespace between a field name and its colon: 400",
    _POST % b"ws" + b"X-Deproxy-WS : 1\r\nContent-Length: 0\r\n\r\n",
    "RFC 9112 §5.1",
)
must_reject(
    "framing.te-chunked-not-last",
    "A request whose last coding is not chunked: 400",
    _POST % b"te" + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    CL_TE,
)


def must_accept(id: str, title: str, reference: str, size_line: bytes) -> None:
    """A check: a chunked body whose size line is valid syntax reaches the backend intact."""

    def run(target: Target) -> Outcome:
        chain, _ = target.probe(_chunked(size_line))
        if not target.backend(chain):
            return failed(
                f"{status_of(chain)} and nothing reached the backend: the chunk-size line "
                f"{size_line.decode()!r} is valid, and a recipient MUST ignore chunk extensions "
                f"it does not know ({reference})",
                chain,
            )
        return body_intact(target, chain, b"hello", f"chunk line {size_line.decode()!r}")

    check(id, title, reference)(run)


must_accept("framing.chunk-ext", "A chunk extension is ignored", "RFC 9112 §7.1.1", b"5;deproxy=1")
must_accept(
    "framing.chunk-ext-quoted",
    "A quoted chunk extension value is ignored",
    "RFC 9112 §7.1.1",
    b'5;deproxy="a;b \\" c"',
)
must_accept(
    "framing.chunk-ext-bws",
    "Whitespace around a chunk extension's ';' is ignored",
    "RFC 9112 §7.1.1",
    b"5 ; deproxy=1",
)


def _big(what: str, size: int) -> Build:
    filler = b"d" * size
    if what == "field":
        return _fields(b"X-Deproxy-Big: " + filler)
    return _fields(line=b"GET /conformance/long/" + filler + b" HTTP/1.1")


def oversized(id: str, title: str, reference: str, what: str, size: int) -> None:
    """A check: a head larger than most limits is refused 4xx, or forwarded whole."""

    def run(target: Target) -> Outcome:
        chain, _ = target.probe(_big(what, size))
        arrived = target.backend(chain)
        filler = b"d" * size
        if arrived:
            if filler not in arrived[0].raw:
                return failed(f"the backend received the {what} cut short", chain)
            return passed(f"forwarded whole; {status_of(chain)}", chain)
        response = chain.received_response
        if response is None or not 400 <= response.status < 500:
            return failed(
                f"a {size}-byte {what}: {status_of(chain)}; a server MUST answer one larger "
                f"than it wishes to process with a 4xx ({reference})",
                chain,
            )
        return passed(f"refused: {status_of(chain)}", chain)

    check(id, title, reference)(run)


oversized(
    "framing.oversized-field",
    "A 40 KiB field is refused 4xx or forwarded whole",
    "RFC 9110 §5.4",
    "field",
    40 * 1024,
)
oversized(
    "framing.long-target",
    "A 12 KiB target is refused 4xx (414) or forwarded whole",
    "RFC 9112 §3",
    "target",
    12 * 1024,
)
