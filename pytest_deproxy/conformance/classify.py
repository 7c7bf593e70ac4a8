"""Deciding from bytes alone what a proxy did with an ambiguous request.

Rules kept here: pure, no socket, no thread, no clock. A verdict depends only on the status
the proxy answered with and the raw bytes of each request that reached the backend:

- ``rejected``: the proxy answered 4xx/5xx and nothing reached the backend;
- ``dropped``: nothing reached the backend and the proxy did not refuse (no answer, or an
  answer it made up itself);
- ``normalised``: exactly one request reached the backend, ``framing.py`` frames it, a
  strict reading (the RFC 9112 grammar, with no leniency) finds nothing to object to, and the
  request's odd element is gone;
- ``forwarded-ambiguous``: anything else; the detail names every reason (a second request and
  its path, ``framing.py``'s refusal, each strict-reading objection, the odd element found).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..framing import (
    ChunkedBody,
    Framing,
    RequestHead,
    Unframeable,
    read_request_head,
    request_framing,
    skip_empty_lines,
)
from .ambiguous import AmbiguousRequest

VERDICTS = ("rejected", "normalised", "forwarded-ambiguous", "dropped")
MAX_HEAD = 64 * 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)" % (_TOKEN, _TOKEN, _QUOTED)
)
_NAME = re.compile(_TOKEN)
_VALUE = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"([^ ]+) ([^ ]+) ([^ ]+)")
_TARGET = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})+")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::[0-9]*)?")
_DIGITS = re.compile(r"[0-9]+")
_CODINGS = {"chunked", "compress", "deflate", "gzip", "x-compress", "x-gzip"}
_NOT_IN_TRAILERS = {"content-length", "transfer-encoding", "host", "trailer"}


def _shown(data: bytes, limit: int) -> str:
    """``data`` as a quoted string a person can read (Latin-1, so every byte shows)."""
    return repr(data[:limit].decode("iso-8859-1"))


@dataclass(frozen=True)
class Classification:
    """What the proxy did with one request: ``verdict`` (one of :data:`VERDICTS`), and a
    ``detail`` a person can act on, made of the ``reasons`` for a forwarded ambiguity."""

    verdict: str
    detail: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Message:
    head: RequestHead
    framing: Framing
    raw: bytes  # leading empty lines, head and framed body

    @property
    def line(self) -> str:
        return f"{self.head.method} {self.head.target}"


def classify(
    sent: AmbiguousRequest | bytes, proxy_status: int | None, backend_raw: Sequence[bytes]
) -> Classification:
    """Classify what became of ``sent`` (a corpus request, or the bytes of one request).

    ``proxy_status`` is the status the proxy answered the client with (``None``: it closed
    without one); ``backend_raw`` the bytes of every request that reached the backend, one
    item per request as the endpoint received it (``[]``: nothing arrived)::

        >>> classify(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n", 400, []).verdict
        'rejected'
    """
    if not isinstance(sent, (AmbiguousRequest, bytes)):
        raise TypeError(f"sent must be an AmbiguousRequest or bytes, not {type(sent).__name__}")
    if proxy_status is not None and (
        type(proxy_status) is not int or not 100 <= proxy_status <= 599
    ):
        raise ValueError(
            f"proxy_status must be an HTTP status (100-599) or None, not {proxy_status!r}"
        )
    if isinstance(backend_raw, (bytes, bytearray, str)) or not all(
        isinstance(raw, (bytes, bytearray)) for raw in backend_raw
    ):
        raise TypeError("backend_raw must be a list with the bytes of each request, e.g. [raw]")
    answered = "closed without answering" if proxy_status is None else f"answered {proxy_status}"
    if not backend_raw:
        if proxy_status is not None and proxy_status >= 400:
            return Classification(
                "rejected", f"the proxy {answered} and nothing reached the backend"
            )
        return Classification(
            "dropped",
            f"the proxy {answered} and nothing reached the backend: it should refuse a "
            "request it will not forward with a 4xx status, or forward it normalised",
        )
    reasons = _reasons(sent, [bytes(raw) for raw in backend_raw])
    if not reasons:
        gone = (
            f", and nothing matches {sent.odd!r}"
            if isinstance(sent, AmbiguousRequest) and sent.odd
            else ""
        )
        detail = (
            "one request reached the backend, and a strict and a lenient reader read it the "
            f"same{gone} (the proxy {answered})"
        )
        return Classification("normalised", detail)
    reference = f" ({sent.reference})" if isinstance(sent, AmbiguousRequest) else ""
    detail = (
        f"{'; '.join(reasons)} (the proxy {answered}): the proxy should refuse such a request "
        f"with 400 or forward it normalised{reference}"
    )
    return Classification("forwarded-ambiguous", detail, tuple(reasons))


def _reasons(sent: AmbiguousRequest | bytes, raws: list[bytes]) -> list[str]:
    messages: list[_Message] = []
    refusals: list[str] = []
    for raw in raws:
        found, refusal = _split(raw)
        messages += found
        if refusal:
            refusals.append(f"framing.py refuses what reached the backend: {refusal}")
    reasons: list[str] = []
    if len(messages) > 1:
        listed = ", ".join(message.line for message in messages)
        reasons.append(
            f"smuggling: {len(messages)} requests reached the backend where 1 was sent ({listed})"
        )
    for message in messages:
        if "/smuggled-" in message.head.target:
            reasons.append(
                f"the smuggled request {message.line} reached the backend as a request of its own"
            )
    reasons += refusals
    for number, message in enumerate(messages, 1):
        prefix = f"request {number}: " if len(messages) > 1 else ""
        reasons += [prefix + problem for problem in strict_problems(message.raw, message.head)]
    if isinstance(sent, AmbiguousRequest) and sent.odd:
        for raw in raws:
            if found_odd := re.search(sent.odd, raw):
                start = raw.rfind(b"\n", 0, found_odd.start()) + 1
                end = raw.find(b"\n", found_odd.end())
                line = raw[start : end if end >= 0 else len(raw)].rstrip(b"\r")
                reasons.append(f"the odd element is still there: {_shown(line, 100)}")
    return reasons


def _split(raw: bytes) -> tuple[list[_Message], str | None]:
    """The requests in ``raw`` as the lenient reader frames them, and why it stopped early."""
    found: list[_Message] = []
    rest = raw
    while rest:
        try:
            head = read_request_head(rest, MAX_HEAD)
            if head is None:
                return found, f"an incomplete head with no empty line after it: {_shown(rest, 80)}"
            framing = request_framing(head)
            if framing.chunked:
                body = ChunkedBody()
                body.feed(rest[head.size :])
                end = head.size + body.size
                if not body.done:
                    found.append(_Message(head, framing, rest[:end]))
                    return found, "the chunked body is incomplete: the backend waits for more"
            else:
                end = head.size + framing.content_length
                if end > len(rest):
                    found.append(_Message(head, framing, rest))
                    arrived = len(rest) - head.size
                    return found, (
                        f"Content-Length says {framing.content_length} bytes and {arrived} "
                        "arrived: the backend waits for the rest"
                    )
        except Unframeable as exc:
            return found, str(exc)
        found.append(_Message(head, framing, rest[:end]))
        rest = rest[end:]
    return found, None


def strict_problems(raw: bytes, head: RequestHead) -> list[str]:
    """What a strict RFC 9112 reader objects to in one request that the lenient reader
    framed as ``head`` (``raw``: its leading empty lines, head and framed body)."""
    problems: list[str] = []
    lead = skip_empty_lines(raw)
    if lead:
        problems.append(f"{lead} bytes of empty lines before the request line (RFC 9112 §2.2)")
    head_bytes = raw[lead : head.size]
    if bare := len(re.findall(rb"(?<!\r)\n", head_bytes)):
        problems.append(f"{bare} line(s) of the head end in a bare LF (RFC 9112 §2.2)")
    if bare := len(re.findall(rb"\r(?!\n)", head_bytes)):
        problems.append(f"{bare} bare CR(s) in the head (RFC 9112 §2.2)")
    lines = [line.removesuffix(b"\r") for line in head_bytes.split(b"\n")][:-2]
    problems += _request_line_problems(lines[0])
    for line in lines[1:]:
        problems += _field_line_problems(line, "field")
    problems += _field_problems(head)
    if request_framing(head).chunked:
        problems += _chunk_problems(raw[head.size :])
    return problems


def _request_line_problems(line: bytes) -> list[str]:
    matched = _REQUEST_LINE.fullmatch(line)
    if matched is None:
        return [
            f"the request line {_shown(line, 100)} is not three words between single "
            "spaces (RFC 9112 §3)"
        ]
    method, target, version = matched.groups()
    problems = []
    if not _NAME.fullmatch(method):
        problems.append(f"the method {_shown(method, 40)} is not a token (RFC 9110 §9.1)")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        problems.append(
            f"the version {_shown(version, 20)} was forwarded instead of the proxy's own "
            "(RFC 9110 §2.5)"
        )
    if target == b"*":
        if method != b"OPTIONS":
            problems.append(
                "the asterisk-form target on a method other than OPTIONS (RFC 9112 §3.2.4)"
            )
    elif not _TARGET.fullmatch(target):
        problems.append(
            f"the target {_shown(target, 100)} holds bytes a URI cannot (RFC 9112 §3.2)"
        )
    elif not (target.startswith(b"/") or _ABSOLUTE.match(target) or method == b"CONNECT"):
        problems.append(
            f"the target {_shown(target, 100)} is in no request-target form (RFC 9112 §3.2)"
        )
    return problems


def _field_line_problems(line: bytes, what: str) -> list[str]:
    if line[:1] in (b" ", b"\t"):
        return [f"an obsolete line fold {_shown(line, 60)} (RFC 9112 §5.2)"]
    name, colon, value = line.partition(b":")
    if not colon:
        return [f"a {what} line with no colon: {_shown(line, 60)} (RFC 9112 §5)"]
    problems = []
    if not _NAME.fullmatch(name):
        if _NAME.fullmatch(name.rstrip(b" \t")):
            problems.append(
                f"whitespace between the {what} name {_shown(name.strip(), 60)} and its "
                "colon (RFC 9112 §5.1)"
            )
        else:
            problems.append(f"the {what} name {_shown(name, 60)} is not a token (RFC 9110 §5.1)")
    if not _VALUE.fullmatch(value):
        problems.append(
            f"the {_shown(name, 40)} value {_shown(value, 60)} holds a control byte (RFC 9110 §5.5)"
        )
    return problems


def _field_problems(head: RequestHead) -> list[str]:
    def values(name: str) -> list[str]:
        return [value for key, value in head.fields if key.lower() == name]

    hosts, lengths, codings = values("host"), values("content-length"), values("transfer-encoding")
    problems = []
    if len(hosts) != 1 and not (head.version == "1.0" and not hosts):
        problems.append(f"{len(hosts)} Host fields where there must be one (RFC 9112 §3.2)")
    problems += [
        f"the Host {host[:60]!r} is not a host and port (RFC 9110 §7.2)"
        for host in hosts
        if not _HOST.fullmatch(host)
    ]
    absolute = _ABSOLUTE.match(head.target.encode("iso-8859-1"))
    if absolute:
        authority = absolute.group(1).decode("iso-8859-1")
        if "@" in authority:
            problems.append(f"userinfo in the target's authority {authority!r} (RFC 9110 §4.2.4)")
        if hosts and hosts[0].lower() != authority.lower():
            problems.append(
                f"the Host {hosts[0]!r} differs from the target's {authority!r} (RFC 9112 §3.2.2)"
            )
    if len(lengths) > 1:
        problems.append(f"{len(lengths)} Content-Length fields (RFC 9110 §8.6)")
    problems += [
        f"the Content-Length {length[:40]!r} is not digits (RFC 9110 §8.6)"
        for length in lengths
        if not _DIGITS.fullmatch(length)
    ]
    if codings and lengths:
        problems.append("Content-Length beside Transfer-Encoding (RFC 9112 §6.3)")
    members = [member.strip(" \t").lower() for value in codings for member in value.split(",")]
    problems += [
        f"the transfer coding {member!r} is empty or unknown (RFC 9112 §7)"
        for member in members
        if member not in _CODINGS
    ]
    return problems


def _chunk_problems(body: bytes) -> list[str]:
    position = 0
    while True:
        end = body.find(b"\r\n", position)
        line = body[position : end if end >= 0 else len(body)]
        if end < 0 or b"\n" in line or b"\r" in line:
            return [f"the chunk-size line {_shown(line, 60)} does not end in CRLF (RFC 9112 §7.1)"]
        matched = _CHUNK_LINE.fullmatch(line)
        if matched is None:
            return [
                f"the chunk-size line {_shown(line, 60)} is not a size and extensions "
                "(RFC 9112 §7.1.1)"
            ]
        size = int(matched.group(1), 16)
        position = end + 2
        if size == 0:
            break
        position += size
        if body[position : position + 2] != b"\r\n":
            return [
                f"chunk data is followed by {_shown(body[position:], 10)}, not CRLF (RFC 9112 §7.1)"
            ]
        position += 2
    problems = []
    while (end := body.find(b"\r\n", position)) > position:
        line, position = body[position:end], end + 2
        if b"\n" in line or b"\r" in line:
            problems.append(
                f"the trailer line {_shown(line, 60)} holds a bare CR or LF (RFC 9112 §7.1.2)"
            )
        problems += _field_line_problems(line, "trailer")
        name = line.partition(b":")[0].strip(b" \t").decode("iso-8859-1").lower()
        if name in _NOT_IN_TRAILERS:
            problems.append(
                f"{name} in the trailer section, where a sender must not put it (RFC 9110 §6.5.1)"
            )
    if body[position:] != b"\r\n":
        problems.append(
            f"the trailer section ends in {_shown(body[position:], 20)}, not CRLF (RFC 9112 §7.1.2)"
        )
    return problems
