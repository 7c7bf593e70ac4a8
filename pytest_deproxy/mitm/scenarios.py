"""Scenario files: INSPIRE-MITMProxy's YAML, loaded safely, validated, indexed and written.

Layout: ``<scenarios_path>/<scenario>/<Service>/<interaction>.yaml``, one interaction per file.
Rules kept here: YAML is loaded with a safe loader (PyYAML 3's ``!!python/unicode`` tags are
read as plain strings, nothing else of Python's); a broken file is a ScenarioError naming the
file and line, raised when it is loaded; a lookup never reads the disk unless a file changed.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ScenarioError
from ..models import Headers

MATCH_FIELDS = ("url", "method", "body", "headers")
DEFAULT_EXACT = ("url", "method", "body")
TOP_LEVEL_KEYS = {"request", "response", "match", "max_replays", "callbacks"}
DEFAULT_CALLBACK_DELAY = 0.5
FULL_RESCAN_SECONDS = 1.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present: large bodies), plus the string tags PyYAML 3
    wrote under Python 2."""


def _as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


for _tag in ("tag:yaml.org,2002:python/unicode", "tag:yaml.org,2002:python/str"):
    _Loader.add_constructor(_tag, _as_string)


def check_name(name: str, what: str) -> str:
    """A scenario or service name that is one plain path component (no ``..``, ``/``, NUL)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} is not allowed: use letters, digits and _ . @ + - only, "
            "starting with a letter or digit"
        )
    return name


def natural_key(name: str) -> list[Any]:
    """Sort ``interaction_2`` before ``interaction_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
    headers: Headers
    body: str | bytes | None


@dataclass(frozen=True)
class Callback:
    delay: float
    method: str
    url: str
    headers: Headers
    body: str | bytes | None


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


class _FileProblem(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _headers(value: Any, where: str, line: int | None) -> Headers:
    if value is None:
        return Headers()
    if not isinstance(value, Mapping):
        raise _FileProblem(f"{where} must be a mapping of name to a list of values", line)
    headers = Headers()
    for name, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            headers.add(str(name), str(item))
    return headers


def _body(value: Any) -> str | bytes | None:
    if value is None or isinstance(value, (str, bytes)):
        return value
    return str(value)  # an unquoted number in YAML: '42' was meant


def body_bytes(body: str | bytes | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else body


def _line_of(node: yaml.MappingNode, key: str) -> int | None:
    for key_node, _ in node.value:
        if key_node.value == key:
            return int(key_node.start_mark.line) + 1
    return None


def _parse(path: Path, text: str) -> Interaction:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _FileProblem(
            f"not valid YAML: {exc.problem or exc}", mark.line + 1 if mark else None
        ) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise _FileProblem("an interaction file must be a mapping with request and response", 1)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise _FileProblem(
                f"unknown field {key!r} (known: {', '.join(sorted(TOP_LEVEL_KEYS))})",
                _line_of(node, str(key)),
            )
    for required in ("request", "response"):
        if not isinstance(data.get(required), dict):
            raise _FileProblem(f"{required!r} must be a mapping", _line_of(node, required) or 1)
    request, response = data["request"], data["response"]
    if not isinstance(request.get("method"), str) or not isinstance(request.get("url"), str):
        raise _FileProblem("request needs a method and a url", _line_of(node, "request"))
    status = response.get("status") or {}
    try:
        code = int(status["code"])
    except (KeyError, TypeError, ValueError):
        raise _FileProblem(
            "response needs status: {code: ..., message: ...}", _line_of(node, "response")
        ) from None
    exact, regex = _match_rules(data.get("match"), _line_of(node, "match"))
    max_replays = data.get("max_replays", -1)
    if max_replays is None:
        max_replays = -1
    if not isinstance(max_replays, int) or max_replays < -1:
        raise _FileProblem(
            "max_replays must be -1 (unlimited), 0 or more", _line_of(node, "max_replays")
        )
    return Interaction(
        name=path.stem,
        path=path,
        request=RecordedRequest(
            request["method"].upper(),
            request["url"],
            _headers(request.get("headers"), "request.headers", _line_of(node, "request")),
            body_bytes(_body(request.get("body"))),
        ),
        response=RecordedResponse(
            code,
            str(status.get("message") or ""),
            _headers(response.get("headers"), "response.headers", _line_of(node, "response")),
            _body(response.get("body")),
        ),
        exact=exact,
        regex=regex,
        max_replays=max_replays,
        callbacks=_callbacks(data.get("callbacks"), _line_of(node, "callbacks")),
    )


def _match_rules(
    match: Any, line: int | None
) -> tuple[tuple[str, ...], dict[str, re.Pattern[str]]]:
    if not match:  # absent, null or {}: INSPIRE-MITMProxy's default
        return DEFAULT_EXACT, {}
    if not isinstance(match, dict) or set(match) - {"exact", "regex"}:
        raise _FileProblem(
            "match takes 'exact' (a list of fields) and 'regex' (field: pattern)", line
        )
    exact = match.get("exact") or []
    regex_source = match.get("regex") or {}
    if not isinstance(exact, list) or not isinstance(regex_source, dict):
        raise _FileProblem("match.exact must be a list and match.regex a mapping", line)
    for name in [*exact, *regex_source]:
        if name not in MATCH_FIELDS:
            raise _FileProblem(
                f"cannot match on {name!r} (fields: {', '.join(MATCH_FIELDS)})", line
            )
    try:
        regex = {name: re.compile(str(pattern)) for name, pattern in regex_source.items()}
    except re.error as exc:
        raise _FileProblem(f"bad regular expression in match.regex: {exc}", line) from exc
    return tuple(exact), regex


def _callbacks(value: Any, line: int | None) -> tuple[Callback, ...]:
    if not value:
        return ()
    if not isinstance(value, list):
        raise _FileProblem("callbacks must be a list", line)
    callbacks = []
    for entry in value:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or "url" not in request:
            raise _FileProblem("each callback needs a request with a url", line)
        delay = entry.get("delay", DEFAULT_CALLBACK_DELAY)
        if not isinstance(delay, (int, float)) or delay < 0:
            raise _FileProblem("a callback's delay is a number of seconds >= 0", line)
        callbacks.append(
            Callback(
                float(delay),
                str(request.get("method") or "GET").upper(),
                str(request["url"]),
                _headers(request.get("headers"), "callback headers", line),
                _body(request.get("body")),
            )
        )
    return tuple(callbacks)


def load_interaction(path: Path) -> Interaction:
    """Read and validate one interaction file; a ScenarioError names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from exc
    try:
        return _parse(path, text)
    except _FileProblem as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ScenarioError(f"{where}: {problem}") from problem.__cause__


@dataclass
class ServiceInteractions:
    """The interactions of one service in one scenario, in natural file order, indexed."""

    directory: Path
    interactions: list[Interaction]
    by_method_url: dict[tuple[str, str], list[Interaction]]
    scanned: list[Interaction]  # those the index cannot narrow down (no exact url or method)
    positions: dict[int, int]  # id(interaction) -> its place in file order, for merging
    directory_mtime: float
    file_mtimes: dict[Path, float]
    checked_at: float

    @classmethod
    def load(cls, directory: Path) -> ServiceInteractions:
        files = (
            sorted(
                (p for p in directory.iterdir() if p.suffix == ".yaml" and p.is_file()),
                key=lambda p: natural_key(p.name),
            )
            if directory.is_dir()
            else []
        )
        interactions = [load_interaction(path) for path in files]
        by_method_url: dict[tuple[str, str], list[Interaction]] = {}
        scanned = []
        for interaction in interactions:
            if "url" in interaction.exact and "method" in interaction.exact:
                key = (interaction.request.method, interaction.request.url)
                by_method_url.setdefault(key, []).append(interaction)
            else:
                scanned.append(interaction)
        return cls(
            directory,
            interactions,
            by_method_url,
            scanned,
            {id(interaction): n for n, interaction in enumerate(interactions)},
            _mtime(directory),
            {path: _mtime(path) for path in files},
            time.monotonic(),
        )

    def candidates(self, method: str, url: str) -> list[Interaction]:
        """The interactions that could match, in file order."""
        indexed = self.by_method_url.get((method, url), [])
        if not self.scanned:
            return indexed
        return sorted([*indexed, *self.scanned], key=lambda i: self.positions[id(i)])

    def is_stale(self) -> bool:
        """Whether a file was added, removed or changed since loading.

        The directory is checked on every call (renames and new files show there at once);
        files edited in place are caught by a full check at most once a second.
        """
        if _mtime(self.directory) != self.directory_mtime:
            return True
        now = time.monotonic()
        if now - self.checked_at < FULL_RESCAN_SECONDS:
            return False
        self.checked_at = now
        return any(_mtime(path) != mtime for path, mtime in self.file_mtimes.items())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0


class ScenarioStore:
    """Every scenario under one directory, loaded on first use and reloaded when files change."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], ServiceInteractions] = {}

    def service(self, scenario: str, service: str) -> ServiceInteractions:
        key = (check_name(scenario, "scenario"), check_name(service, "service"))
        with self._lock:
            cached = self._cache.get(key)
            if cached is None or cached.is_stale():
                # Forget the old copy first: a file broken by an edit must keep failing
                # loudly, not fall back to what it said before.
                self._cache.pop(key, None)
                cached = ServiceInteractions.load(self.root / scenario / service)
                self._cache[key] = cached
            return cached

    def tree(self) -> dict[str, dict[str, dict[str, list[str]]]]:
        """``{scenario: {"responses": {service: [file names]}}}``, INSPIRE-MITMProxy's shape."""
        if not self.root.is_dir():
            return {}
        tree = {}
        for scenario in sorted(p for p in self.root.iterdir() if p.is_dir()):
            tree[scenario.name] = {
                "responses": {
                    service.name: sorted(
                        (f.name for f in service.iterdir() if f.suffix == ".yaml" and f.is_file()),
                        key=natural_key,
                    )
                    for service in sorted(s for s in scenario.iterdir() if s.is_dir())
                }
            }
        return tree
