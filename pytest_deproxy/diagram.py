"""A chain as a text sequence diagram: the client's request, each endpoint's arrivals and
answers, the client's answer, the WebSocket frames after an upgrade (collapsed past a few), and
over HTTP/2 the connection-level frames of the client's connection and of the endpoints'
connections the chain used (SETTINGS shown by what they change, runs of alike frames folded
into one line), each where it happened in time. Also the pieces the HAR report reuses:
``chain_window`` and ``event_text``.

Rule kept here: a reader of the record, nothing more. It draws a MessageChain and its
handlings as they are when it is called (a handling still running says so) and changes
nothing: pure text, no socket, no thread, no lock. It sits one layer above ``record``, which
it reads; ``MessageChain.diagram()`` reaches up to it when called (the one exception to the
layers contract, named there).
"""

from __future__ import annotations

from typing import Protocol

from .models import Request, Response
from .record import Frame, Handling, MessageChain, draw_diagrams_with


class ConnectionEvent(Protocol):
    """One HTTP/2 connection-level frame, as the diagram shows it (a ``FrameEvent``)."""

    direction: str
    type: str
    stream_id: int
    flags: tuple[str, ...]
    values: dict[str, int]
    code: int | None
    error: str | None
    last_stream_id: int | None
    at: float


# Requests are shown in the order they arrived (outermost first, as a nested chain happens),
# then the answers in the order they were sent; a handling still running says so.

KEY_HEADERS = (
    "Host",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Via",
    "X-Forwarded-For",
    "Location",
    "Upgrade",
    "Expect",
)
WIDTH = 14
CLIENT = "client".ljust(WIDTH + 2)  # endpoints' lanes are indented by two


def _size(data: bytes) -> str:
    return f"body {len(data)} B" if data else "no body"


def _details(message: Request | Response, *extra: str) -> str:
    shown = [f"{name}: {message.headers[name]}" for name in KEY_HEADERS if name in message.headers]
    return " | ".join([*(part for part in extra if part), *shown, _size(message.raw_body)])


def _lane(name: str) -> str:
    return (name if len(name) <= WIDTH else name[: WIDTH - 1] + "~").ljust(WIDTH)


def _request_line(request: Request) -> str:
    return f"{request.method} {request.path}"


def _status_line(response: Response) -> str:
    return f"{response.code} {response.message}".rstrip()


def _where(handling: Handling) -> str:
    """The handling's connection, and its stream on an HTTP/2 connection (``conn-3 s5``)."""
    if handling.stream_id is None:
        return handling.connection
    return f"{handling.connection} s{handling.stream_id}"


def _arrived(handling: Handling) -> str:
    lane = "  " + _lane(handling.endpoint.name)
    facts = handling.facts.summary if handling.facts is not None else ""
    request = handling.request
    return f"{lane}--> {_request_line(request)}   {_details(request, _where(handling), facts)}"


def _answered(handling: Handling) -> list[str]:
    lane = "  " + _lane(handling.endpoint.name)
    lines = [
        f"{lane}<-- {_status_line(interim)} (interim)   {_where(handling)}"
        for interim in handling.interim_responses
    ]
    if not handling.done:
        return [*lines, f"{lane} .. still being handled   {_where(handling)}"]
    if handling.response is None:
        return [*lines, f"{lane} xx {handling.action}   {_where(handling)}"]
    response = handling.response
    line = f"{lane}<-- {_status_line(response)}   {_details(response, _where(handling))}"
    if handling.action is not None:
        line += f"   ({handling.action})"
    return [*lines, line, *_frame_lines(lane, handling.frames, endpoint=True)]


FRAMES_SHOWN = 6  # frames shown at the start of a WebSocket; then the last two
ARRIVING = {"sent": "~~>", "received": "<~~"}  # a client's frames, as its arrows go


def _frame_lines(lane: str, frames: list[Frame], *, endpoint: bool) -> list[str]:
    """The frames of an upgraded connection, collapsed past a few: arrows point as requests
    (towards the endpoints) and answers (back to the client) do."""
    frames = list(frames)
    shown = frames
    if len(frames) > FRAMES_SHOWN + 3:
        shown = frames[:FRAMES_SHOWN] + frames[-2:]
    lines = []
    for number, frame in enumerate(shown):
        if number == FRAMES_SHOWN and shown is not frames:
            hidden = frames[FRAMES_SHOWN:-2]
            sent = sum(1 for f in hidden if f.direction == "sent")
            lines.append(
                f"{lane}    ... {len(hidden)} frames more ({sent} sent, "
                f"{len(hidden) - sent} received) ..."
            )
        direction = frame.direction
        if endpoint:  # what an endpoint received came towards it, from the client's side
            direction = "received" if direction == "sent" else "sent"
        lines.append(f"{lane}{ARRIVING[direction]} {frame.summary}")
    return lines


def _answer_order(handling: Handling) -> float:
    return handling.responded_at if handling.responded_at is not None else float("inf")


def chain_window(chain: MessageChain) -> tuple[float, float]:
    """From the chain's start to its answer and the last of its handlings' answers (to the
    end of time while the call or a handling is still running)."""
    ends = [chain.started + chain.elapsed if chain.elapsed is not None else float("inf")]
    for handling in chain.handlings:
        ends.append(handling.responded_at or handling.received_at)
        if not handling.done:
            ends.append(float("inf"))
    return chain.started, max(ends)


def endpoint_events(chain: MessageChain) -> list[tuple[Handling, list[ConnectionEvent]]]:
    """The HTTP/2 frames of each endpoint connection the chain's handlings came on (one
    entry per connection, with its first handling): those on the chain's streams, and the
    connection's own (stream 0) while the chain ran. HTTP/1 connections have none."""
    start, end = chain_window(chain)
    found: list[tuple[Handling, list[ConnectionEvent]]] = []
    seen: dict[int, set[int]] = {}
    firsts: dict[int, Handling] = {}
    for handling in chain.handlings:
        if handling.stream_id is None or handling.facts is None:
            continue
        key = id(handling.facts)
        seen.setdefault(key, set()).add(handling.stream_id)
        firsts.setdefault(key, handling)
    for key, handling in firsts.items():
        events: list[ConnectionEvent] = list(getattr(handling.facts, "events", ()))
        streams = seen[key]
        kept = [
            e
            for e in events
            if e.stream_id in streams or (e.stream_id == 0 and start <= e.at <= end)
        ]
        found.append((handling, kept))
    return found


EVENT_ARROWS = {"sent": "==>", "received": "<=="}  # as a client's: requests go right
# RFC 9113 6.5.2's initial values: a SETTINGS frame is shown by what it changes.
SETTINGS_DEFAULTS = {
    "HEADER_TABLE_SIZE": 4096,
    "ENABLE_PUSH": 1,
    "INITIAL_WINDOW_SIZE": 65535,
    "MAX_FRAME_SIZE": 16384,
    "ENABLE_CONNECT_PROTOCOL": 0,
}


def event_text(event: ConnectionEvent) -> str:
    """A frame in a few words: ``SETTINGS INITIAL_WINDOW_SIZE=0`` (the values that differ
    from the initial ones), ``RST_STREAM s3 CANCEL``, ``GOAWAY PROTOCOL_ERROR
    last_stream_id=1``, ``PING ACK``."""
    parts = [event.type]
    if event.stream_id:
        parts.append(f"s{event.stream_id}")
    if event.flags:
        parts.append("+".join(event.flags))
    values = event.values
    if event.type == "SETTINGS":
        values = {k: v for k, v in values.items() if SETTINGS_DEFAULTS.get(k) != v}
        if not values and not event.flags:
            parts.append("(initial values)")
    if values:
        parts.append(", ".join(f"{k}={v}" for k, v in values.items()))
    if event.error is not None:
        parts.append(event.error)
    if event.last_stream_id is not None:
        parts.append(f"last_stream_id={event.last_stream_id}")
    return " ".join(parts)


def _event_lines(
    lane: str, events: list[ConnectionEvent], *, endpoint: bool, where: str = ""
) -> list[tuple[float, str]]:
    """One line per frame, at its time; a run of alike frames (a rapid-reset burst, a
    WINDOW_UPDATE for each DATA) is one line that counts them. SETTINGS acks are left out
    (``events`` keeps them)."""
    runs: list[list[ConnectionEvent]] = []
    for event in events:
        if event.type == "SETTINGS" and "ACK" in event.flags:
            continue
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and (last.direction, last.type, last.flags, last.error)
            == (event.direction, event.type, event.flags, event.error)
            and event.type in ("RST_STREAM", "WINDOW_UPDATE", "PING")
        ):
            runs[-1].append(event)
        else:
            runs.append([event])
    lines = []
    for run in runs:
        first = run[0]
        direction = first.direction
        if endpoint:  # what an endpoint received came towards it, from the client's side
            direction = "received" if direction == "sent" else "sent"
        text = event_text(first)
        if len(run) > 1:
            streams = sorted({e.stream_id for e in run if e.stream_id})
            named = f" on s{streams[0]}..s{streams[-1]}" if len(streams) > 1 else ""
            text = f"{first.type}{named} {first.error or ''}".rstrip()
            text += f" ({len(run)} frames)"
        suffix = f"   {where}" if where else ""
        lines.append((first.at, f"{lane}{EVENT_ARROWS[direction]} {text}{suffix}"))
    return lines


def _merge(timed: list[tuple[float, str]], events: list[tuple[float, str]]) -> list[str]:
    """The diagram's lines with the frames between them, each after the last line that
    happened before it (the lines' own order is kept)."""
    events = sorted(events, key=lambda pair: pair[0])
    out, latest, index = [], float("-inf"), 0
    for at, line in timed:
        latest = max(latest, at)
        while index < len(events) and events[index][0] < latest:
            out.append(events[index][1])
            index += 1
        out.append(line)
    out += [line for _, line in events[index:]]
    return out


def diagram(chain: MessageChain) -> str:
    """The chain as a sequence of arrows: client, then each endpoint, then back; over
    HTTP/2, the connections' frames (``==>``/``<==``) where they happened in time."""
    title = f"--- MessageChain {chain.request_id} "
    lines = [title + "-" * max(3, 72 - len(title))]
    timed: list[tuple[float, str]] = []
    timed.append(
        (
            chain.started,
            f"{CLIENT}--> {_request_line(chain.sent_request)}   {_details(chain.sent_request)}",
        )
    )
    if chain.body_withheld:
        timed.append(
            (chain.started, f"{CLIENT}    (body withheld: the answer came before 100 Continue)")
        )
    handlings = list(chain.handlings)
    timed += [(h.received_at, _arrived(h)) for h in handlings]
    for handling in sorted(handlings, key=_answer_order):
        timed += [(_answer_order(handling), line) for line in _answered(handling)]
    ended = chain.started + chain.elapsed if chain.elapsed is not None else float("inf")
    timed += [
        (ended, f"{CLIENT}<-- {_status_line(interim)} (interim)   {_details(interim)}")
        for interim in chain.interim_responses
    ]
    elapsed = f"{chain.elapsed * 1000:.0f} ms" if chain.elapsed is not None else ""
    if chain.received_response is not None:
        response = chain.received_response
        timed.append(
            (ended, f"{CLIENT}<-- {_status_line(response)}   {_details(response, elapsed)}")
        )
        timed += [(ended, line) for line in _frame_lines(CLIENT, chain.frames, endpoint=False)]
    if chain.error is not None:
        timed.append((ended, f"{CLIENT} xx {type(chain.error).__name__}: {chain.error}"))
    events = _event_lines(CLIENT, list(chain.connection_events), endpoint=False)
    for handling, found in endpoint_events(chain):
        lane = "  " + _lane(handling.endpoint.name)
        events += _event_lines(lane, found, endpoint=True, where=handling.connection)
    lines += _merge(timed, events)
    if chain.orphaned_handlings:
        lines.append("  orphans (requests without this chain's tracking id, meanwhile):")
        for handling in list(chain.orphaned_handlings):
            lines.append(_arrived(handling))
            lines += _answered(handling)
    return "\n".join(lines)


draw_diagrams_with(diagram)
