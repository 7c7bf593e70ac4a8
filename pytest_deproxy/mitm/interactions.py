"""One interaction file: INSPIRE-MITMProxy's YAML, read into a checked :class:`Interaction`.

A file holds one recorded exchange (``request``, ``response``), how to match it (``match``),
how often it may answer (``max_replays``) and the requests to send after it does
(``callbacks``). Files are untrusted input, parsed by :mod:`.safe_yaml`. Rule kept here:
everything replay needs (status, headers, url, delays, bodies) is checked when the file is
loaded, and every problem is a ScenarioError naming the file and, where there is one, the line.
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
from ..models import Headers
from ..redaction import replayable_set_cookies
from .safe_yaml import YamlProblem, compose

MATCH_FIELDS = ("url", "method", "body", "headers")
DEFAULT_EXACT = ("url", "method", "body")
TOP_LEVEL_KEYS = {"request", "response", "match", "max_replays", "callbacks"}
DEFAULT_CALLBACK_DELAY = 0.5
# An hour: longer than any test waits, and short enough that shutdown is never stuck on it.
MAX_CALLBACK_DELAY = 3600.0

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in header values
_URL = re.compile(r"[^\x00-\x20\x7f]+")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    headers: Headers
    body: bytes


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


def body_bytes(body: str | bytes | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else body


# -- where in the file -------------------------------------------------------------------


def _find(node: yaml.Node | None, *path: str | int) -> list[yaml.Node]:
    """The nodes along ``path`` (mapping keys, sequence indexes), as far as they exist."""
    found = []
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            node = node.value[step] if step < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        found.append(node)
    return found


def _line(node: yaml.Node | None, *path: str | int) -> int | None:
    """The line of the deepest node along ``path`` that exists."""
    found = _find(node, *path)
    if found:
        return int(found[-1].start_mark.line) + 1
    return int(node.start_mark.line) + 1 if node is not None else None


def _line_of(node: yaml.MappingNode, key: str) -> int | None:
    for key_node, _ in node.value:
        if key_node.value == key:
            return int(key_node.start_mark.line) + 1
    return None


# -- the whole file ----------------------------------------------------------------------


def _parse(path: Path, text: str) -> Interaction:
    node, data = compose(text)
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise YamlProblem("an interaction file must be a mapping with request and response", 1)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise YamlProblem(
                f"unknown field {key!r} (known: {', '.join(sorted(TOP_LEVEL_KEYS))})",
                _line_of(node, str(key)),
            )
    for required in ("request", "response"):
        if not isinstance(data.get(required), dict):
            raise YamlProblem(f"{required!r} must be a mapping", _line_of(node, required) or 1)
    request, response = data["request"], data["response"]
    if "method" not in request or "url" not in request:
        raise YamlProblem("request needs a method and a url", _line_of(node, "request"))
    code, message = _status(response.get("status"), node)
    exact, regex = _match_rules(data.get("match"), _line_of(node, "match"))
    max_replays = data.get("max_replays", -1)
    if max_replays is None:
        max_replays = -1
    if isinstance(max_replays, bool) or not isinstance(max_replays, int) or max_replays < -1:
        raise YamlProblem(
            "max_replays must be -1 (unlimited), 0 or more", _line_of(node, "max_replays")
        )
    return Interaction(
        name=path.stem,
        path=path,
        request=RecordedRequest(
            _method(request["method"], "request", _line(node, "request", "method")),
            _url(request["url"], "request", _line(node, "request", "url")),
            _headers(request.get("headers"), "request.headers", node, "request", "headers"),
            body_bytes(_body(request.get("body"), _line(node, "request", "body"))),
        ),
        response=RecordedResponse(
            code,
            message,
            replayable_set_cookies(
                _headers(response.get("headers"), "response.headers", node, "response", "headers")
            ),
            _body(response.get("body"), _line(node, "response", "body")),
        ),
        exact=exact,
        regex=regex,
        max_replays=max_replays,
        callbacks=_callbacks(data.get("callbacks"), path, node),
    )


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
        raise YamlProblem("callbacks must be a list", _line_of(node, "callbacks"))
    callbacks = []
    for number, entry in enumerate(value):
        line = _line(node, "callbacks", number)
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
                _line(node, "callbacks", number, "delay"),
            )
        at = ("callbacks", number, "request")
        callbacks.append(
            Callback(
                float(delay),
                _method(request.get("method") or "GET", "callback", _line(node, *at, "method")),
                _url(str(request["url"]), "callback", _line(node, *at, "url")),
                _headers(request.get("headers"), "callback headers", node, *at, "headers"),
                _body(request.get("body"), _line(node, *at, "body")),
                f"{path}:{line}",
            )
        )
    return tuple(callbacks)


# -- the fields --------------------------------------------------------------------------


def _headers(value: Any, where: str, node: yaml.Node | None, *path: str | int) -> Headers:
    if value is None:
        return Headers()
    if not isinstance(value, Mapping):
        raise YamlProblem(
            f"{where} must be a mapping of name to a list of values", _line(node, *path)
        )
    headers = Headers()
    for name, values in value.items():
        line = _line(node, *path, str(name))
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise YamlProblem(
                f"{where}: {name!r} is not a valid header name (letters, digits, "
                "!#$%&'*+-.^_`|~ only)",
                line,
            )
        for item in values if isinstance(values, list) else [values]:
            if isinstance(item, (dict, list, bytes)) or item is None:
                raise YamlProblem(f"{where}: the value of {name} must be text", line)
            text = str(item)
            control = _CONTROL.search(text)
            if control:
                raise YamlProblem(
                    f"{where}: the value of {name} holds a control character "
                    f"({control.group()!r}); header values cannot carry one",
                    line,
                )
            headers.add(name, text)
    return headers


def _body(value: Any, line: int | None) -> str | bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list)):
        raise YamlProblem("a body must be text or !!binary, not a mapping or a list", line)
    text = value if isinstance(value, str) else str(value)  # an unquoted number: '42'
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise YamlProblem(
            f"a text body holds {text[exc.start]!r}, which UTF-8 cannot encode; use !!binary",
            line,
        ) from None
    return text


def _method(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise YamlProblem(f"{where} method {value!r} is not an HTTP method (a token)", line)
    return value.upper()


def _url(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise YamlProblem(
            f"{where} url {value!r} must be text without spaces or control characters", line
        )
    return value


def _status(status: Any, node: yaml.Node | None) -> tuple[int, str]:
    line = _line(node, "response", "status")
    if not isinstance(status, dict) or "code" not in status:
        raise YamlProblem("response needs status: {code: ..., message: ...}", line)
    code = status["code"]
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise YamlProblem(
            f"status code {status['code']!r} is not an HTTP status: use 100 to 599",
            _line(node, "response", "status", "code"),
        )
    message = status.get("message")
    message = "" if message is None else str(message)
    if _CONTROL.search(message):
        raise YamlProblem(
            f"status message {message!r} holds a control character",
            _line(node, "response", "status", "message"),
        )
    return code, message
