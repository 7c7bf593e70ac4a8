"""What a conformance check is, what it decides, and the proxy it decides it about.

Rules kept here: a check is a function of a :class:`Target` (the proxy's URL, the endpoint it
forwards to, and the :class:`~pytest_deproxy.Deproxy` on both sides) that returns an
:class:`Outcome`; it decides from BOTH sides of the proxy, what the client got and what reached
the backend (``handling.raw``, ``handling.request.headers.items()`` exactly, the upstream
connection's ``received`` bytes), never from how long anything took. What reached the backend
for a request is found by its tracking id, in the handling's header or anywhere in its raw
bytes, so checks that share the endpoint can run at once; bytes a connection carried outside
any request count too (:meth:`Target.unframed`). A check that raises is an ``error``, never
a ``pass``.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import new_request_id
from ..errors import DeproxyError
from ..handlers import Handler, HandlerContext, call_handler
from ..models import HeaderItems, Request, Response
from ..record import Handling, MessageChain
from ..wire import parse_sent_request
from .ambiguous import Build
from .probing import Probe, parse_response, probe, read_to_close

if TYPE_CHECKING:
    from ..deproxy import Deproxy
    from ..endpoint import Endpoint

VERDICTS = ("pass", "fail", "n/a", "error")
SETTLE_GRACE = 1.0
"""Seconds past the timeout to wait for a backend request to be done (its bytes all there)."""
ORIGIN_MARK = "X-Deproxy-Origin"
"""A field every check's backend answer carries, so the client can tell it from the proxy's own."""


@dataclass(frozen=True)
class Outcome:
    """What a check decided: a verdict of :data:`VERDICTS`, a detail a person can act on, and
    the chains it is based on (their diagrams go with a failure)."""

    verdict: str
    detail: str
    chains: tuple[MessageChain, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {VERDICTS}, not {self.verdict!r}")


def passed(detail: str, *chains: MessageChain) -> Outcome:
    return Outcome("pass", detail, chains)


def failed(detail: str, *chains: MessageChain) -> Outcome:
    return Outcome("fail", detail, chains)


def not_applicable(detail: str, *chains: MessageChain) -> Outcome:
    return Outcome("n/a", detail, chains)


def errored(detail: str, *chains: MessageChain) -> Outcome:
    return Outcome("error", detail, chains)


@dataclass(frozen=True)
class Result:
    """One check's verdict on one proxy, in the configuration ``config``."""

    id: str
    title: str
    reference: str
    verdict: str
    detail: str
    config: str = ""
    chains: tuple[MessageChain, ...] = field(default=(), repr=False)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, str]:
        """The JSON report's entry: ``id``, ``title``, ``reference``, ``verdict``, ``detail``."""
        return {
            "id": self.id,
            "title": self.title,
            "reference": self.reference,
            "verdict": self.verdict,
            "detail": self.detail,
        }

    def report(self) -> str:
        """A few lines for a person: the verdict, why, the configuration, and for a failure
        the two-sided sequence diagram of every chain it rests on."""
        lines = [
            f"{self.verdict.upper():5} {self.id} ({self.reference}): {self.title}",
            f"      {self.detail}",
        ]
        if self.config:
            lines.append(f"      configuration: {self.config}")
        if self.verdict in ("fail", "error"):
            for chain in self.chains:
                lines += ["      " + line for line in chain.diagram().splitlines()]
        return "\n".join(lines)


CheckFunction = Callable[["Target"], Outcome]


@dataclass(frozen=True)
class Check:
    """One check: ``id`` (dotted, stable), ``title``, ``reference`` (the RFC section it holds
    the proxy to), and ``group``: ``"concurrent"`` checks run at once; ``"corpus"`` checks run
    after them, together; ``"alone"`` checks (those that poison an upstream connection on
    purpose) run one at a time, last."""

    id: str
    title: str
    reference: str
    function: CheckFunction = field(repr=False, compare=False)
    group: str = "concurrent"

    def __str__(self) -> str:
        return self.id

    def __call__(self, target: Target) -> Result:
        """Run the check against ``target``; an exception is an ``error`` result, not a pass."""
        started = time.monotonic()
        try:
            outcome = self.function(target)
        except Exception as exc:  # a check's own failure is data: the others still run
            outcome = errored(f"the check itself raised {type(exc).__name__}: {exc}")
        return Result(
            self.id,
            self.title,
            self.reference,
            outcome.verdict,
            outcome.detail,
            target.config,
            outcome.chains,
            time.monotonic() - started,
        )


REGISTRY: list[Check] = []


def check(
    id: str, title: str, reference: str, *, group: str = "concurrent"
) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as a check (modules of checks use it at import)."""

    def register(function: CheckFunction) -> CheckFunction:
        if any(existing.id == id for existing in REGISTRY):
            raise ValueError(f"two checks have the id {id!r}")
        REGISTRY.append(Check(id, title, reference, function, group))
        return function

    return register


class Target:
    """The proxy under test as checks see it: ``url`` (``http://host:port`` of the proxy),
    ``origin`` (the endpoint it forwards to) and ``deproxy`` (which owns ``origin``).

    ``config`` says which configuration the verdicts are about (it goes into every result).
    """

    def __init__(
        self,
        deproxy: Deproxy,
        url: str,
        origin: Endpoint,
        *,
        config: str = "",
        timeout: float = 5.0,
    ) -> None:
        if not url.startswith("http://"):
            raise ValueError(f"the proxy's URL must be http://host:port, got {url!r}")
        self.deproxy = deproxy
        self.url = url.rstrip("/")
        self.origin = origin
        self.config = config
        self.timeout = timeout
        self.authority = self.url.removeprefix("http://")
        host, _, port = self.authority.rpartition(":")
        self._address = (host.strip("[]"), int(port or 80))
        self._paths = itertools.count(1)
        self._lock = threading.Lock()
        self._answers: dict[str, Handler] = {}
        self.corpus: dict[str, tuple[str, str]] = {}  # corpus id -> (verdict, detail)
        origin.default_handler = self._answer_by_path

    def path(self, name: str) -> str:
        """A path no other request used (so that a caching proxy has nothing to answer from)."""
        return f"/conformance/{name}/{next(self._paths)}"

    def request(
        self,
        name: str,
        method: str = "GET",
        headers: HeaderItems = None,
        body: str | bytes | None = None,
        *,
        answer: Handler | None = None,
        path: str | None = None,
        **options: object,
    ) -> MessageChain:
        """``make_request`` through the proxy to a fresh path; the backend answers with
        ``answer`` (default: 200 carrying :data:`ORIGIN_MARK`)."""
        return self.deproxy.make_request(
            self.url + (path or self.path(name)),
            method,
            headers,
            body,
            handlers={self.origin: answer or origin_answer()},
            timeout=self.timeout,
            **options,  # type: ignore[arg-type]
        )

    def raw(self, data: bytes, *, answer: Handler | None = None) -> MessageChain:
        """``make_raw_request`` through the proxy: ``{request_id}`` in ``data`` is the id."""
        return self.deproxy.make_raw_request(
            self.url,
            data,
            handlers={self.origin: answer or origin_answer()},
            timeout=self.timeout,
        )

    def exchange(self, build: Build, answer: Handler) -> tuple[MessageChain, bytes]:
        """Send ``build(host, request_id)`` on a connection of its own, read until the proxy
        closes it, and return a chain of the record on both sides with every byte the client
        received. For answers a client library would refuse to read (the proxy's own framing is
        what is checked); the request asks for ``Connection: close`` or is HTTP/1.0. The
        backend's answer is chosen by the request's path (``answer`` for it)."""
        request_id = new_request_id()
        path = self.path("exchange")
        data = build(self.authority.encode(), request_id.encode()).replace(b"{path}", path.encode())
        with self._lock:
            self._answers[path] = answer
        chain = MessageChain(request_id, parse_sent_request(data), url=self.url, sent_bytes=data)
        received, error = read_to_close(self._address, data, self.timeout)
        chain.error = DeproxyError(error) if error else None
        try:
            chain.received_response = parse_response(
                received, chain.sent_request.method, chain.interim_responses
            )
        except DeproxyError as exc:
            chain.error = chain.error or exc
        chain.handlings.extend(self.backend(chain, settle=False))
        return chain, received

    def probe(self, data: bytes | Build) -> tuple[MessageChain, Probe]:
        """Send an ambiguous request (bytes with ``{request_id}``, or a ``Build``) on a
        connection of its own, then a sentinel request after its answer (see
        :func:`~pytest_deproxy.conformance.probing.probe`): once this returns, whatever the
        proxy made of the request has reached the backend. The chain holds the record of both
        sides; the probe, the answers that came before the sentinel's."""
        request_id = new_request_id()
        host = self.authority.encode()
        if callable(data):
            data = data(host, request_id.encode())
        else:
            data = data.replace(b"{request_id}", request_id.encode())
        chain = MessageChain(request_id, parse_sent_request(data), url=self.url, sent_bytes=data)
        found = probe(self._address, data, host, new_request_id(), self.timeout)
        chain.received_response, chain.error = found.first, found.error
        chain.interim_responses.extend(found.interim)
        chain.handlings.extend(self.backend(chain, settle=False))
        return chain, found

    def _answer_by_path(self, request: Request, context: HandlerContext) -> Any:
        """The origin's default handler: ``exchange`` picks answers by path."""
        with self._lock:
            answer = self._answers.get(request.path)
        return call_handler(answer or origin_answer(), request, context)

    def backend(self, chain: MessageChain, *, settle: bool = True) -> list[Handling]:
        """Every handling that carries ``chain``'s id, in its tracking header or anywhere in
        its bytes, in arrival order; with ``settle``, once each is done: answered, or given up
        on by the endpoint (a request the proxy left unfinished is done when the proxy hangs
        up or the endpoint's request timeout ends it), so that its bytes are all there."""
        found = arrived(self.origin.handlings, chain.request_id)
        deadline = time.monotonic() + self.timeout + SETTLE_GRACE
        while settle and not all(handling.done for handling in found):
            if time.monotonic() > deadline:
                break  # still not done: a check says so from the bytes that did arrive
            time.sleep(0.005)
            found = arrived(self.origin.handlings, chain.request_id)
        return found

    def unframed(self, handlings: Iterable[Handling]) -> list[bytes]:
        """Bytes that reached the backend on these handlings' connections and are in no
        handling: what the endpoint received but never read as a request (it closed the
        connection first, say, after a request with both Content-Length and chunked). A
        request hidden there still crossed the proxy: it is on the record of the connection."""
        ids = {handling.connection for handling in handlings}
        found = []
        for record in self.origin.connections:
            if record.id not in ids:
                continue
            rest = record.received
            for handling in record.handlings:
                at = rest.find(handling.raw)
                if at >= 0:
                    rest = rest[:at] + rest[at + len(handling.raw) :]
            if rest.strip(b"\r\n"):
                found.append(rest)
        return found

    def backend_bytes(self, chain: MessageChain) -> list[bytes]:
        """What reached the backend for ``chain``: each request's raw bytes, then the bytes
        its connections carried outside any request (see :meth:`unframed`)."""
        handlings = self.backend(chain)
        return [handling.raw for handling in handlings] + self.unframed(handlings)


def arrived(handlings: Iterable[Handling], request_id: str) -> list[Handling]:
    """The handlings of ``handlings`` that carry ``request_id`` (header or bytes)."""
    marker = request_id.encode()
    return [
        handling
        for handling in handlings
        if handling.request_id == request_id or marker in handling.raw
    ]


def origin_answer(
    code: int = 200, headers: HeaderItems = None, body: str | bytes = "origin answer\n"
) -> Response:
    """A canned backend answer that the client can tell from the proxy's own, and that a
    caching proxy must not store (a cached answer would keep later requests from the
    backend, and a check from seeing what the proxy forwards)."""
    answer = Response(code, headers=headers, body=body)
    answer.headers.add(ORIGIN_MARK, "1")
    if "Cache-Control" not in answer.headers:
        answer.headers.add("Cache-Control", "no-store")
    return answer


def from_origin(chain: MessageChain) -> bool:
    """Whether the client's answer is the backend's (it carries :data:`ORIGIN_MARK`)."""
    response = chain.received_response
    return response is not None and ORIGIN_MARK in response.headers


def status_of(chain: MessageChain) -> str:
    """How the proxy answered the client, in words."""
    if chain.received_response is None:
        return f"the client got no answer ({chain.error})"
    response = chain.received_response
    whose = "the backend's" if from_origin(chain) else "the proxy's own"
    return f"the client got {whose} {response.code} {response.message}".rstrip()


def field_lines(items: Iterable[tuple[str, str]], name: str) -> list[str]:
    """The values of every ``name`` field line, as the record holds them (case-insensitive)."""
    return [value for key, value in items if key.lower() == name.lower()]


def raw_head(handling: Handling) -> bytes:
    """The head of what reached the backend, as bytes."""
    return handling.raw_head or handling.raw.partition(b"\r\n\r\n")[0]


def raw_field(head: bytes, name: str) -> list[bytes]:
    """The values of ``name`` in a raw head, read from its bytes with no leniency."""
    pattern = re.compile(rb"\n" + re.escape(name.encode()) + rb"[ \t]*:[ \t]*([^\r\n]*)", re.I)
    return pattern.findall(head)
