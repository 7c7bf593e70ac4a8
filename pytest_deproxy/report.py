"""MessageChains as people read them: a text sequence diagram, and HAR 1.2 for HAR viewers.

Rule kept here: rendering is pure; it reads chains and returns text or dicts, nothing more.
HAR files get shared: secrets in headers, query strings and JSON/form bodies are redacted
(:mod:`pytest_deproxy.redaction`; pass ``redaction=`` to :func:`har` to hide more names). The
diagram shows only the headers in KEY_HEADERS, none of them secret.
Handlings are appended as they complete (innermost first), so the diagram shows the requests
outermost first and the responses in the order they completed, as a nested chain happens.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import __version__
from .models import Handling, Headers, MessageChain, Request, Response
from .redaction import DEFAULT, Redaction

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
)
WIDTH = 14
CLIENT = "client".ljust(WIDTH + 2)  # endpoints' lanes are indented by two


def _size(data: bytes) -> str:
    return f"body {len(data)} B" if data else "no body"


def _details(message: Request | Response, *extra: str) -> str:
    shown = [f"{name}: {message.headers[name]}" for name in KEY_HEADERS if name in message.headers]
    return " | ".join([*extra, *shown, _size(message.raw_body)])


def _lane(name: str) -> str:
    return (name if len(name) <= WIDTH else name[: WIDTH - 1] + "~").ljust(WIDTH)


def _request_line(request: Request) -> str:
    return f"{request.method} {request.path}"


def _status_line(response: Response) -> str:
    return f"{response.code} {response.message}".rstrip()


def _handling_lines(handling: Handling, arrow: str) -> str:
    lane = "  " + _lane(handling.endpoint.name)
    connection = handling.connection
    if arrow == "-->":
        request = handling.request
        return f"{lane}--> {_request_line(request)}   {_details(request, connection)}"
    if handling.response is None:
        return f"{lane} xx {handling.action}   {connection}"
    line = (
        f"{lane}<-- {_status_line(handling.response)}   {_details(handling.response, connection)}"
    )
    if handling.action != "responded":
        line += f"   ({handling.action})"
    return line


def diagram(chain: MessageChain) -> str:
    """The chain as a sequence of arrows: client, then each endpoint, then back."""
    title = f"--- MessageChain {chain.request_id} "
    lines = [title + "-" * max(3, 72 - len(title))]
    lines.append(
        f"{CLIENT}--> {_request_line(chain.sent_request)}   {_details(chain.sent_request)}"
    )
    lines += [_handling_lines(h, "-->") for h in reversed(chain.handlings)]
    lines += [_handling_lines(h, "<--") for h in chain.handlings]
    elapsed = f"{chain.elapsed * 1000:.0f} ms" if chain.elapsed is not None else ""
    if chain.received_response is not None:
        response = chain.received_response
        lines.append(f"{CLIENT}<-- {_status_line(response)}   {_details(response, elapsed)}")
    if chain.error is not None:
        lines.append(f"{CLIENT} xx {type(chain.error).__name__}: {chain.error}")
    if chain.orphaned_handlings:
        lines.append("  orphans (requests without this chain's tracking id, meanwhile):")
        for handling in chain.orphaned_handlings:
            lines.append(_handling_lines(handling, "-->"))
            lines.append(_handling_lines(handling, "<--"))
    return "\n".join(lines)


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
    entries = [
        _entry(
            chain.started,
            _har_request(chain.sent_request, chain.url, redaction),
            _har_response(chain.received_response, redaction, error),
            elapsed,
            f"client request, Deproxy-Request-ID {chain.request_id}"
            + (f"; {error}" if error else ""),
        )
    ]
    for handlings, kind in ((chain.handlings, "handled"), (chain.orphaned_handlings, "orphan")):
        for handling in handlings:
            entries.append(
                _entry(
                    chain.started,
                    _har_request(handling.request, _handling_url(handling), redaction),
                    _har_response(handling.response, redaction, handling.action),
                    0.0,
                    f"{kind} at endpoint {handling.endpoint.name}: {handling.action}",
                    handling.connection,
                )
            )
    return entries


def har(
    chains: list[MessageChain], comment: str = "", *, redaction: Redaction = DEFAULT
) -> dict[str, Any]:
    """A HAR 1.2 document holding ``chains``, secrets redacted.

    ``chain.to_har()`` uses the default names; to hide more, or nothing at all::

        har([chain], redaction=DEFAULT.adding(headers=["X-Tenant"], body_keys=["pin"]))
        har([chain], redaction=Redaction((), (), ()))  # everything in clear: keep it private
    """
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "pytest-deproxy", "version": __version__},
            "entries": [entry for chain in chains for entry in har_entries(chain, redaction)],
            "comment": comment,
        }
    }
