"""One interaction file: INSPIRE-MITMProxy's YAML, read into a checked :class:`Interaction`.

A file holds one recorded exchange (``request``, ``response``), how to match it (``match``),
how often it may answer (``max_replays``) and the requests to send after it does
(``callbacks``). Files are untrusted input, parsed by :mod:`.safe_yaml`, their fields checked
by :mod:`.fields`. Rules kept here: everything replay needs (status, headers, url, delays,
bodies) is checked when the file is loaded, and every problem is a ScenarioError naming the
file and, where there is one, the line. A top-level key the format does not know is ignored,
as INSPIRE-MITMProxy ignores it, and listed in :attr:`Interaction.ignored` for a warning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ScenarioError
from ..models import Headers, Response
from ..redaction import replayable_set_cookies
from .bodies import encode_text
from .fields import (
    check_body,
    check_headers,
    check_method,
    check_status,
    check_url,
    line_at,
    line_of,
)
from .safe_yaml import YamlProblem, compose

MATCH_FIELDS = ("url", "method", "body", "headers")
DEFAULT_EXACT = ("url", "method", "body")
TOP_LEVEL_KEYS = {"request", "response", "match", "max_replays", "callbacks"}
DEFAULT_CALLBACK_DELAY = 0.5
# An hour: longer than any test waits, and short enough that shutdown is never stuck on it.
MAX_CALLBACK_DELAY = 3600.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    headers: Headers
    body: bytes  # as sent: text encoded in its declared charset
    text: str | None = None  # the body as the file wrote it, when it is text


@dataclass(frozen=True)
class RecordedResponse:
    code: int
    message: str
    headers: Headers  # as replayed: a redacted Set-Cookie value is deproxy-redacted-N
    body: str | bytes | None


@dataclass(frozen=True)
class Callback:
    delay: float
    method: str
    url: str
    headers: Headers
    body: str | bytes | None
    where: str = ""  # file:line, for errors


@dataclass(frozen=True)
class Interaction:
    """One recorded exchange and the rules for replaying it."""

    name: str
    path: Path
    request: RecordedRequest
    response: RecordedResponse
    exact: tuple[str, ...] = DEFAULT_EXACT
    regex: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    max_replays: int = -1
    callbacks: tuple[Callback, ...] = ()
    ignored: tuple[tuple[str, int | None], ...] = ()  # unknown top-level keys, and their lines
    # The response as it is replayed, made once (by replay.replayed_response) and sent again
    # unchanged: to a request that gets no body (HEAD) or one that does. Never changed once
    # made, as a canned Response is not.
    replayed: dict[bool, Response] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )


def load_interaction(path: Path) -> Interaction:
    """Read and validate one interaction file; a ScenarioError names the file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(f"{path}:{line}: not UTF-8 text: {exc}") from exc
    try:
        return _parse(path, text)
    except YamlProblem as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ScenarioError(f"{where}: {problem}") from problem.__cause__
    except Exception as exc:  # untrusted input: whatever else breaks still names the file
        raise ScenarioError(f"{path}: cannot be loaded: {type(exc).__name__}: {exc}") from exc


# -- the whole file ----------------------------------------------------------------------


def _parse(path: Path, text: str) -> Interaction:
    node, data = compose(text)
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise YamlProblem("an interaction file must be a mapping with request and response", 1)
    ignored = tuple(
        (str(key), line_of(node, str(key))) for key in data if key not in TOP_LEVEL_KEYS
    )
    for required in ("request", "response"):
        if not isinstance(data.get(required), dict):
            raise YamlProblem(f"{required!r} must be a mapping", line_of(node, required) or 1)
    request, response = data["request"], data["response"]
    if "method" not in request or "url" not in request:
        raise YamlProblem("request needs a method and a url", line_of(node, "request"))
    code, message = check_status(response.get("status"), node)
    exact, regex = _match_rules(data.get("match"), line_of(node, "match"))
    max_replays = data.get("max_replays", -1)
    if max_replays is None:
        max_replays = -1
    if isinstance(max_replays, bool) or not isinstance(max_replays, int) or max_replays < -1:
        raise YamlProblem(
            "max_replays must be -1 (unlimited), 0 or more", line_of(node, "max_replays")
        )
    request_headers = check_headers(
        request.get("headers"), "request.headers", node, "request", "headers"
    )
    request_body = check_body(
        request.get("body"), line_at(node, "request", "body"), request_headers
    )
    response_headers = check_headers(
        response.get("headers"), "response.headers", node, "response", "headers"
    )
    return Interaction(
        name=path.stem,
        path=path,
        request=RecordedRequest(
            check_method(request["method"], "request", line_at(node, "request", "method")),
            check_url(request["url"], "request", line_at(node, "request", "url")),
            request_headers,
            _request_bytes(request_body, request_headers),
            request_body if isinstance(request_body, str) else None,
        ),
        response=RecordedResponse(
            code,
            message,
            replayable_set_cookies(response_headers),
            check_body(response.get("body"), line_at(node, "response", "body"), response_headers),
        ),
        exact=exact,
        regex=regex,
        max_replays=max_replays,
        callbacks=_callbacks(data.get("callbacks"), path, node),
        ignored=ignored,
    )


def _request_bytes(body: str | bytes | None, headers: Headers) -> bytes:
    if body is None:
        return b""
    return encode_text(body, headers) if isinstance(body, str) else body


def _match_rules(
    match: Any, line: int | None
) -> tuple[tuple[str, ...], dict[str, re.Pattern[str]]]:
    if not match:  # absent, null or {}: INSPIRE-MITMProxy's default
        return DEFAULT_EXACT, {}
    if not isinstance(match, dict) or set(match) - {"exact", "regex"}:
        raise YamlProblem(
            "match takes 'exact' (a list of fields) and 'regex' (field: pattern)", line
        )
    exact = match.get("exact") or []
    regex_source = match.get("regex") or {}
    if not isinstance(exact, list) or not isinstance(regex_source, dict):
        raise YamlProblem("match.exact must be a list and match.regex a mapping", line)
    for name in [*exact, *regex_source]:
        if name not in MATCH_FIELDS:
            raise YamlProblem(f"cannot match on {name!r} (fields: {', '.join(MATCH_FIELDS)})", line)
    try:
        regex = {name: re.compile(str(pattern)) for name, pattern in regex_source.items()}
    except (re.error, RecursionError, OverflowError) as exc:
        raise YamlProblem(f"bad regular expression in match.regex: {exc}", line) from exc
    return tuple(exact), regex


def _callbacks(value: Any, path: Path, node: yaml.MappingNode) -> tuple[Callback, ...]:
    if not value:
        return ()
    if not isinstance(value, list):
        raise YamlProblem("callbacks must be a list", line_of(node, "callbacks"))
    callbacks = []
    for number, entry in enumerate(value):
        line = line_at(node, "callbacks", number)
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or "url" not in request:
            raise YamlProblem("each callback needs a request with a url", line)
        delay = entry.get("delay", DEFAULT_CALLBACK_DELAY)
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not math.isfinite(delay)
            or not 0 <= delay <= MAX_CALLBACK_DELAY
        ):
            raise YamlProblem(
                f"a callback's delay is a number of seconds from 0 to {MAX_CALLBACK_DELAY:g}, "
                f"not {delay!r}",
                line_at(node, "callbacks", number, "delay"),
            )
        at = ("callbacks", number, "request")
        method = request.get("method") or "GET"
        headers = check_headers(request.get("headers"), "callback headers", node, *at, "headers")
        callbacks.append(
            Callback(
                float(delay),
                check_method(method, "callback", line_at(node, *at, "method")),
                check_url(str(request["url"]), "callback", line_at(node, *at, "url")),
                headers,
                check_body(request.get("body"), line_at(node, *at, "body"), headers),
                f"{path}:{line}",
            )
        )
    return tuple(callbacks)
