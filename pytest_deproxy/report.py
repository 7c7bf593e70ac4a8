"""MessageChains exported for other tools: HAR 1.2, which browsers' developer tools and HAR
viewers open. (The text diagram is the record's own: :mod:`pytest_deproxy.record`.)

Rule kept here: rendering is pure; it reads chains and returns dicts, nothing more.
HAR files get shared: secrets in headers, query strings and JSON/form bodies are redacted
(:mod:`pytest_deproxy.redaction`; pass ``redaction=`` to :func:`to_har` to hide more names).
WebSocket frames go in ``_webSocketMessages`` as browsers' developer tools write them
(``type`` ``"send"``/``"receive"`` as seen from the client of the entry, ``time`` in epoch
seconds, ``opcode``, ``data``: text as is, JSON keys that hold secrets redacted, anything else
base64). HTTP/2 connection-level frames go in ``_http2Events`` (``time``, ``direction`` as
seen from the entry's own side, ``type``, ``streamId``, ``text``): the client's frames on
its entry, a handling's stream and its connection's own frames on the handling's entry.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._version import __version__
from .diagram import ConnectionEvent, chain_window, event_text
from .models import Headers, Request, Response
from .record import OPCODES, Frame, Handling, MessageChain
from .redaction import DEFAULT, Redaction


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _har_headers(message: Request | Response, redaction: Redaction) -> list[dict[str, str]]:
    headers = redaction.headers(message.headers)
    return [{"name": name, "value": value} for name, value in headers.items()]


def _har_content(message: Request | Response, redaction: Redaction) -> dict[str, Any]:
    mime = message.headers.get("Content-Type", "") or ""
    body = message.body  # Content-Encoding undone where it could be
    if isinstance(body, str):
        return {"mimeType": mime, "text": redaction.text(body, mime)}
    body = redaction.body(body, Headers({"Content-Type": mime}))
    return {"mimeType": mime, "text": base64.b64encode(body).decode("ascii"), "encoding": "base64"}


def _har_request(request: Request, url: str, redaction: Redaction) -> dict[str, Any]:
    url = redaction.url(url)
    entry: dict[str, Any] = {
        "method": request.method,
        "url": url,
        "httpVersion": f"HTTP/{request.http_version}",
        "cookies": [],
        "headers": _har_headers(request, redaction),
        "queryString": [{"name": n, "value": v} for n, v in parse_qsl(urlsplit(url).query, True)],
        "headersSize": -1,
        "bodySize": len(request.raw_body),
    }
    if request.raw_body:
        entry["postData"] = _har_content(request, redaction)
    return entry


def _har_response(
    response: Response | None, redaction: Redaction, error: str = ""
) -> dict[str, Any]:
    if response is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": error,
        }
    content = _har_content(response, redaction)
    content["size"] = len(response.raw_body)
    return {
        "status": int(response.code),
        "statusText": response.message,
        "httpVersion": f"HTTP/{response.http_version}",
        "cookies": [],
        "headers": _har_headers(response, redaction),
        "content": content,
        "redirectURL": redaction.url(response.headers.get("Location", "") or ""),
        "headersSize": -1,
        "bodySize": len(response.raw_body),
    }


def _websocket_messages(
    frames: list[Frame], redaction: Redaction, *, at_server: bool
) -> list[dict[str, Any]]:
    """Frames as Chrome's HAR ``_webSocketMessages``; ``at_server``: the frames an endpoint
    logged, whose ``received`` are what the client of the entry sent."""
    messages = []
    for frame in list(frames):
        sent_by_client = (frame.direction == "received") if at_server else frame.direction == "sent"
        opcode = OPCODES.get(frame.opcode)
        if opcode is None:  # a reserved opcode, "0x3"
            opcode = int(frame.opcode, 16)
        data = base64.b64encode(frame.payload).decode("ascii")
        if frame.opcode == "text":
            text = frame.payload.decode("utf-8", "replace")
            data = redaction.text(text, "application/json")
        messages.append(
            {
                "type": "send" if sent_by_client else "receive",
                "time": frame.at,
                "opcode": opcode,
                "data": data,
            }
        )
    return messages


def _entry(
    started: float,
    request: dict[str, Any],
    response: dict[str, Any],
    milliseconds: float,
    comment: str,
    connection: str = "",
) -> dict[str, Any]:
    entry = {
        "startedDateTime": _iso(started),
        "time": milliseconds,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": milliseconds, "receive": 0},
        "comment": comment,
    }
    if connection:
        entry["connection"] = connection
    return entry


def _handling_url(handling: Handling) -> str:
    path = handling.request.path
    return path if "://" in path else handling.endpoint.url + path


def har_entries(chain: MessageChain, redaction: Redaction = DEFAULT) -> list[dict[str, Any]]:
    """The client's exchange, then every handling (orphans marked), as HAR entries."""
    elapsed = (chain.elapsed or 0.0) * 1000
    error = f"{type(chain.error).__name__}: {chain.error}" if chain.error else ""
    response = _har_response(chain.received_response, redaction, error)
    if chain.interim_responses:  # HAR has no place for 1xx: a custom field, as HAR allows
        response["_interimResponses"] = [
            {
                "status": int(interim.code),
                "statusText": interim.message,
                "httpVersion": f"HTTP/{interim.http_version}",
                "headers": _har_headers(interim, redaction),
            }
            for interim in chain.interim_responses
        ]
    entries = [
        _entry(
            chain.started,
            _har_request(chain.sent_request, chain.url, redaction),
            response,
            elapsed,
            f"client request, Deproxy-Request-ID {chain.request_id}"
            + (f"; {error}" if error else ""),
        )
    ]
    if chain.connection_events:
        entries[0]["_http2Events"] = _http2_events(chain.connection_events)
    if chain.frames:
        entries[0]["_webSocketMessages"] = _websocket_messages(
            chain.frames, redaction, at_server=False
        )
    start, end = chain_window(chain)
    for handlings, kind in ((chain.handlings, "handled"), (chain.orphaned_handlings, "orphan")):
        for handling in handlings:
            entries.append(_handling_entry(handling, kind, redaction))
            found = [
                event
                for event in getattr(handling.facts, "events", ())
                if handling.stream_id is not None
                and (
                    event.stream_id == handling.stream_id
                    or (event.stream_id == 0 and start <= event.at <= end)
                )
            ]
            if found:
                entries[-1]["_http2Events"] = _http2_events(found)
            if handling.frames:
                entries[-1]["_webSocketMessages"] = _websocket_messages(
                    handling.frames, redaction, at_server=True
                )
    return entries


def _http2_events(events: Iterable[ConnectionEvent]) -> list[dict[str, Any]]:
    return [
        {
            "time": event.at,
            "direction": event.direction,
            "type": event.type,
            "streamId": event.stream_id,
            "text": event_text(event),
        }
        for event in events
    ]


def _handling_entry(handling: Handling, kind: str, redaction: Redaction) -> dict[str, Any]:
    """A handling as a HAR entry: timed from its arrival, with the record's own facts in
    custom fields (HAR allows fields that start with an underscore)."""
    answered = handling.responded_at
    waited = (answered - handling.received_at) * 1000 if answered is not None else 0.0
    entry = _entry(
        handling.received_at,
        _har_request(handling.request, _handling_url(handling), redaction),
        _har_response(handling.response, redaction, handling.action or ""),
        waited,
        f"{kind} at endpoint {handling.endpoint.name}: " + (handling.action or "responded"),
        handling.connection,
    )
    entry["_done"] = handling.done
    if handling.facts is not None:
        entry["_connection"] = handling.facts.summary  # peer, PROXY source, SNI, client cert
    if handling.stream_id is not None:
        entry["_streamId"] = handling.stream_id
    return entry


def to_har(
    chains: MessageChain | Iterable[MessageChain],
    *,
    comment: str = "",
    redaction: Redaction = DEFAULT,
) -> dict[str, Any]:
    """A HAR 1.2 document holding one chain or several, secrets redacted::

        json.dump(to_har(chain), open("chain.har", "w"))

    To hide more names than the defaults, or nothing at all::

        to_har(chain, redaction=DEFAULT.adding(headers=["X-Tenant"], body_keys=["pin"]))
        to_har(chain, redaction=Redaction((), (), ()))  # everything in clear: keep it private
    """
    if isinstance(chains, MessageChain):
        chains = [chains]
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "pytest-deproxy", "version": __version__},
            "entries": [entry for chain in chains for entry in har_entries(chain, redaction)],
            "comment": comment,
        }
    }
