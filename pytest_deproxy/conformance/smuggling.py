"""Desynchronisation through the proxy, proven on the backend: request smuggling attacks, and
the corpus of ambiguous requests family by family.

Smuggling: each attack hides a whole request, ``GET /smuggled-<id>``, in the body of a
request whose framing a proxy and a backend may read differently; then ordinary requests
follow on new client connections, which a proxy that pools its upstream connections sends
where the attack went.

Rules kept here: the proof is on the record, never a timing: the backend received the hidden
request as a request of its own (an extra handling on the upstream connection, or bytes after
the framed request in the connection's ``received``), or a
follow-up's client got an answer that carries another request's tracking id (the proxy's
queue of answers slipped). These checks poison an upstream connection on purpose, so they run
alone, after every other check.

The corpus: each request is rendered with its id (``render`` counts every length over it)
and sent as it is, then a sentinel on the same connection (``Target.probe``); what reached
the backend for it is found by that id, in the tracking header or anywhere in the bytes.
``rejected``, ``normalised`` and ``dropped`` pass (the proxy refused the ambiguity, removed
it, or kept it from the backend); ``forwarded-ambiguous`` fails, because a backend that reads
the bytes differently from the proxy is desynchronised from it. Every request's own verdict
is kept on ``Target.corpus``, for the per-request report. Requests of a family go out
concurrently; family checks run after the ordinary checks, since a forwarded ambiguity may
poison an upstream connection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..models import TRACKING_HEADER
from ..record import MessageChain
from .ambiguous import AmbiguousRequest, Build, request_bytes, smuggled
from .check import Outcome, Target, arrived, check, failed, passed, status_of
from .classify import Classification, classify
from .corpus import corpus

SMUGGLING = "RFC 9112 §11.2"
FOLLOW_UPS = 3


def _attack(*fields: bytes, chunk_inside: bool = False) -> Build:
    """A request with ``fields`` (``%d``: the body's length) and a body hiding a request:
    after an empty chunked body, or (``chunk_inside``) inside one chunk of it."""

    def build(host: bytes, rid: bytes) -> bytes:
        hidden = smuggled(host, rid)
        if chunk_inside:
            body = b"%x\r\n" % len(hidden) + hidden + b"\r\n0\r\n\r\n"
        else:
            body = b"0\r\n\r\n" + hidden
        lines = [field.replace(b"%d", b"%d" % len(body)) for field in fields]
        return request_bytes(host, rid, lines, body)

    return build


ATTACKS: dict[str, tuple[str, Build]] = {
    "cl-te": (
        "Content-Length covering a chunked body that ends early (CL.TE)",
        _attack(b"Content-Length: %d", b"Transfer-Encoding: chunked"),
    ),
    "te-cl": (
        "a chunked body with a short Content-Length beside it (TE.CL)",
        _attack(b"Transfer-Encoding: chunked", b"Content-Length: 4", chunk_inside=True),
    ),
    "te-te": (
        "two Transfer-Encoding lines, chunked and an unknown coding (TE.TE)",
        _attack(
            b"Transfer-Encoding: chunked", b"Transfer-Encoding: x-deproxy", b"Content-Length: %d"
        ),
    ),
    "te-space": (
        "Transfer-Encoding with a space before its colon",
        _attack(b"Transfer-Encoding : chunked", b"Content-Length: %d"),
    ),
    "te-vtab": (
        "Transfer-Encoding whose value starts with a vertical tab",
        _attack(b"Transfer-Encoding: \x0bchunked", b"Content-Length: %d"),
    ),
    "cl-cl": (
        "two Content-Lengths, 0 then the body's length (CL.CL)",
        _attack(b"Content-Length: 0", b"Content-Length: %d"),
    ),
}


def _echoed(chain: MessageChain) -> str | None:
    response = chain.received_response
    return None if response is None else response.headers.get(TRACKING_HEADER)


def smuggling(name: str, said: str, build: Build) -> None:
    def run(target: Target) -> Outcome:
        attack, _ = target.probe(build)
        follow_ups = [target.request(f"smuggling.{name}") for _ in range(FOLLOW_UPS)]
        for chain in follow_ups:
            target.backend(chain)
        mine = target.backend(attack)
        rid = attack.request_id
        hidden = [
            handling
            for handling in arrived(target.origin.handlings, rid)
            if f"/smuggled-{rid}" in handling.request.path
        ]
        chains = (attack, *follow_ups)
        marker = f"GET /smuggled-{rid} ".encode()
        leftover = [rest for rest in target.unframed(mine) if marker in rest]
        if leftover and not hidden:
            return failed(
                f"request smuggling: {said}; the upstream connection carried the hidden request "
                f"after the one the proxy meant, outside it: {leftover[0][:80]!r} (the backend "
                f"closed before reading it; {status_of(attack)}): the proxy must refuse such a "
                f"request or forward it normalised ({SMUGGLING})",
                *chains,
            )
        if hidden:
            where = sorted({handling.connection for handling in hidden})
            return failed(
                f"request smuggling: {said}; the backend received the hidden request "
                f"GET /smuggled-{rid} as a request of its own on {where} ({status_of(attack)}): "
                f"the proxy must refuse such a request or forward it normalised ({SMUGGLING})",
                *chains,
            )
        slipped = [chain for chain in follow_ups if _echoed(chain) != chain.request_id]
        if any(_echoed(chain) is not None for chain in slipped):
            shown = [(chain.request_id, _echoed(chain)) for chain in slipped]
            return failed(
                f"response desynchronisation after {said}: follow-up requests got answers "
                f"meant for other requests (id sent, id answered): {shown} ({SMUGGLING})",
                *chains,
            )
        response = attack.received_response
        verdict = classify(
            attack.sent_bytes or b"", response.status if response else None, [h.raw for h in mine]
        )  # nothing unframed: that was checked above
        reused = {h.connection for h in mine} & {
            h.connection for chain in follow_ups for h in chain.handlings
        }
        return passed(
            f"{said}: {verdict.verdict} ({status_of(attack)}); no hidden request reached the "
            f"backend, and {FOLLOW_UPS} follow-ups got their own answers"
            + (" on the attack's upstream connection" if reused else ""),
            attack,
        )

    check(f"smuggling.{name}", f"No request smuggling by {said}", SMUGGLING, group="alone")(run)


for _name, (_said, _build) in ATTACKS.items():
    smuggling(_name, _said, _build)


# -- the corpus, family by family ----------------------------------------------------------
WORKERS = 16
SHOWN = 8  # failures detailed (and diagrammed) per family; the rest are listed by id

FAMILIES = {
    "ws": ("Whitespace and control bytes in fields and the request line", "RFC 9112 §5"),
    "eol": ("Odd line endings", "RFC 9112 §2.2"),
    "cl": ("Content-Length forms", "RFC 9110 §8.6"),
    "te": ("Transfer-Encoding forms", "RFC 9112 §6.1"),
    "chunk": ("Chunked bodies: sizes, extensions, trailers", "RFC 9112 §7.1"),
    "request-line": ("Request-line forms", "RFC 9112 §3"),
    "host": ("Host and authority forms", "RFC 9112 §3.2"),
    "head": ("Head sizes near common limits", "RFC 9112 §2.3"),
}
PASSING = ("rejected", "normalised", "dropped")


def send(target: Target, request: AmbiguousRequest) -> tuple[Classification, MessageChain]:
    """Send one corpus request through the proxy and classify what became of it."""
    chain, _ = target.probe(lambda host, rid: request.render(host.decode(), rid.decode()))
    raws = target.backend_bytes(chain)
    response = chain.received_response
    return classify(request, response.status if response else None, raws), chain


def family(name: str, title: str, reference: str) -> None:
    members = [request for request in corpus() if request.family == name]

    def run(target: Target) -> Outcome:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"corpus-{name}") as pool:
            results = list(pool.map(lambda request: send(target, request), members))
        counts = dict.fromkeys(("rejected", "normalised", "dropped", "forwarded-ambiguous"), 0)
        bad: list[tuple[AmbiguousRequest, Classification, MessageChain]] = []
        for request, (verdict, chain) in zip(members, results, strict=True):
            target.corpus[request.id] = (verdict.verdict, verdict.detail)
            counts[verdict.verdict] += 1
            if verdict.verdict not in PASSING:
                bad.append((request, verdict, chain))
        tally = ", ".join(f"{count} {verdict}" for verdict, count in counts.items())
        if bad:
            shown = "; ".join(f"{r.id}: {v.detail}" for r, v, _ in bad[:SHOWN])
            rest = [r.id for r, _, _ in bad[SHOWN:]]
            more = f"; also {', '.join(rest)}" if rest else ""
            return failed(
                f"{len(bad)} of {len(members)} requests forwarded ambiguous ({tally}): "
                f"{shown}{more}",
                *(chain for _, _, chain in bad[:SHOWN]),
            )
        return passed(f"{len(members)} requests: {tally}")

    check(f"corpus.{name}", f"Corpus: {title}", reference, group="corpus")(run)


for _name, (_title, _reference) in FAMILIES.items():
    family(_name, _title, _reference)
