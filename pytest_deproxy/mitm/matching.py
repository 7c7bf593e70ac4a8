"""Which recorded interaction answers a request: a pure function, no I/O.

INSPIRE-MITMProxy's rules: every field in ``exact`` must be equal, every ``regex`` must match
the field's text from its start (``re.match``); with no ``match`` the exact fields are url,
method and body. A body recorded as text is compared as text: the received body with its
Content-Encoding undone, decoded in its declared charset (or, failing that, its bytes with the
recorded text encoded in the recorded charset); a ``!!binary`` body is compared byte for byte.
A ``regex`` on the body sees it as text the same way. Interactions are tried in file order;
one that has been replayed ``max_replays`` times is used up and the next matching one answers.
When none does, the decision says which came nearest and why each failed, for a 501 a person
can act on.

A recorded value redacted to ``<redacted>`` matches any value, so a recording whose secrets
were hidden still replays: a query parameter in the url, a header value (or a part of one,
as in ``Cookie: session=<redacted>``), and a key of a JSON or form body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..models import Headers
from ..redaction import body_equal, url_equal, wildcard_equal
from .bodies import received_text
from .interactions import Interaction, RecordedRequest

MAX_NEAREST = 3


@dataclass(frozen=True)
class IncomingRequest:
    """A request as the MITM saw it, reduced to what matching looks at."""

    method: str
    url: str
    headers: Headers
    body: bytes

    @functools.cached_property
    def text(self) -> str | None:
        """The body as text (Content-Encoding undone, declared charset), None if it is not."""
        return received_text(self.body, self.headers)


@dataclass(frozen=True)
class Difference:
    field: str
    recorded: str
    received: str
    rule: str  # "exact" or "regex"


@dataclass(frozen=True)
class NearMiss:
    interaction: Interaction
    differences: tuple[Difference, ...]
    used_up: bool
    replays: int


@dataclass(frozen=True)
class Decision:
    """``interaction`` answers, or it is ``None`` and ``nearest`` explains the miss."""

    interaction: Interaction | None
    nearest: tuple[NearMiss, ...] = ()


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _field_text(request: IncomingRequest, name: str) -> str:
    if name == "body":
        return request.text if request.text is not None else _text(request.body)
    if name == "headers":
        return "\n".join(f"{n}: {v}" for n, v in request.headers.items())
    return str(getattr(request, name))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _headers_included(recorded: Headers, received: Headers) -> bool:
    return all(
        any(wildcard_equal(value, theirs) for theirs in received.get_all(name))
        for name, value in recorded.items()
    )


def differences(interaction: Interaction, request: IncomingRequest) -> tuple[Difference, ...]:
    """Each rule of ``interaction`` that ``request`` breaks (empty: it matches)."""
    found = []
    recorded = interaction.request
    for name in interaction.exact:
        if name == "headers":
            equal = _headers_included(recorded.headers, request.headers)
            mine = "\n".join(f"{n}: {v}" for n, v in recorded.headers.items())
        elif name == "body":
            equal = _bodies_equal(recorded, request)
            mine = recorded.text if recorded.text is not None else _text(recorded.body)
        elif name == "url":
            mine = recorded.url
            equal = url_equal(mine, request.url)
        else:
            mine = getattr(recorded, name)
            equal = mine == getattr(request, name)
        if not equal:
            found.append(
                Difference(name, _short(mine), _short(_field_text(request, name)), "exact")
            )
    for name, pattern in interaction.regex.items():
        received = _field_text(request, name)
        if pattern.match(received) is None:
            found.append(Difference(name, pattern.pattern, _short(received), "regex"))
    return tuple(found)


def _bodies_equal(recorded: RecordedRequest, request: IncomingRequest) -> bool:
    """Byte for byte; and a body recorded as text equals the same text received in any
    charset or Content-Encoding the request declares."""
    if body_equal(recorded.body, request.body):
        return True
    if recorded.text is None or request.text is None:
        return False
    return body_equal(recorded.text.encode("utf-8"), request.text.encode("utf-8"))


def used_up(interaction: Interaction, replays: int) -> bool:
    """Whether ``interaction``, replayed ``replays`` times, may answer no more."""
    return interaction.max_replays != -1 and replays >= interaction.max_replays


def decide(
    request: IncomingRequest,
    candidates: Sequence[Interaction],
    replays: Callable[[Interaction], int],
) -> Decision:
    """The first candidate that matches and is not used up, else the nearest misses."""
    misses = []
    for interaction in candidates:
        broken = differences(interaction, request)
        count = replays(interaction)
        exhausted = used_up(interaction, count)
        if not broken and not exhausted:
            return Decision(interaction)
        misses.append(NearMiss(interaction, broken, exhausted, count))
    misses.sort(key=lambda miss: len(miss.differences))  # stable: file order among equals
    return Decision(None, tuple(misses[:MAX_NEAREST]))


def explain(request: IncomingRequest, decision: Decision, where: str) -> str:
    """A few lines that say what was asked for and why nothing recorded answered."""
    lines = [f"no recorded interaction of {where} matches", f"  {request.method} {request.url}"]
    if not decision.nearest:
        lines.append("the scenario has no interaction with this method and URL for this service")
    for miss in decision.nearest:
        name = f"{miss.interaction.name} ({miss.interaction.path.name})"
        if not miss.differences and miss.used_up:
            lines.append(
                f"- {name} matches but is used up: max_replays {miss.interaction.max_replays}, "
                f"replayed {miss.replays} times"
            )
            continue
        lines.append(f"- {name} differs:")
        for difference in miss.differences:
            verb = "recorded" if difference.rule == "exact" else "pattern"
            lines.append(
                f"    {difference.field} ({difference.rule}): {verb} {difference.recorded!r}, "
                f"received {difference.received!r}"
            )
        if miss.used_up:
            lines.append(f"    and it is used up (max_replays {miss.interaction.max_replays})")
    return "\n".join(lines)
