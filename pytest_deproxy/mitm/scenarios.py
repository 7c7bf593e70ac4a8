"""Scenario files: INSPIRE-MITMProxy's YAML, loaded safely, validated, indexed and written.

Layout: ``<scenarios_path>/<scenario>/<Service>/<interaction>.yaml``, one interaction per file.
Files are untrusted input. Rules kept here: YAML is loaded with a safe loader (PyYAML 3's
``!!python/unicode`` tags are read as plain strings, nothing else of Python's); libyaml never
composes a file nested deeper than :data:`MAX_NESTING` (a cheap upper bound first, an exact
count from the parser's events when the bound is too high); aliases may not expand beyond
:data:`MAX_ALIAS_EXPANSION`; everything replay needs (status, headers, url, delays, bodies)
is checked when the file is loaded, and every problem is a ScenarioError naming the file and,
where there is one, the line. A lookup never reads the disk unless a file changed.
"""

from __future__ import annotations

import functools
import math
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
from ..redaction import holds_marker, replayable_set_cookies

MATCH_FIELDS = ("url", "method", "body", "headers")
DEFAULT_EXACT = ("url", "method", "body")
TOP_LEVEL_KEYS = {"request", "response", "match", "max_replays", "callbacks"}
DEFAULT_CALLBACK_DELAY = 0.5
FULL_RESCAN_SECONDS = 1.0
# An interaction file nests 5 levels (callbacks > entry > request > headers > values); some
# libyaml builds recurse once per level and crash the whole process at a few thousand.
MAX_NESTING = 100
# The original writes no aliases at all; a million nodes and characters of expansion leaves
# room for any hand-written reuse and refuses a "billion laughs" before it costs memory.
MAX_ALIAS_EXPANSION = 1_000_000
# NAME_MAX is 255 bytes on common file systems; half of it leaves room for the temporary
# names recording uses and for paths built from the name.
MAX_NAME_LENGTH = 128
# An hour: longer than any test waits, and short enough that shutdown is never stuck on it.
MAX_CALLBACK_DELAY = 3600.0

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.@+ -]*[A-Za-z0-9_.@+-])?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in header values
_URL = re.compile(r"[^\x00-\x20\x7f]+")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present: large bodies), plus the string tags PyYAML 3
    wrote under Python 2."""


# Parsing to events only: libyaml's event parser keeps its own stack, so depth costs it no
# recursion (it is composing nodes that recurses), and it reads a large body in C.
_EventLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


for _tag in ("tag:yaml.org,2002:python/unicode", "tag:yaml.org,2002:python/str"):
    _Loader.add_constructor(_tag, _as_string)


def check_name(name: str, what: str) -> str:
    """A scenario or service name that is one plain, portable path component.

    1 to 128 ASCII letters, digits, spaces and ``_ . @ + -``; it starts with a letter or a
    digit and does not end with a space (``a scenario`` is fine; ``..``, ``a/b``, a newline
    or NUL are not).
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or not _NAME.fullmatch(name)
        or ".." in name
    ):
        raise ValueError(
            f"{what} {name!r} is not allowed: use 1 to {MAX_NAME_LENGTH} ASCII letters, digits, "
            "spaces and _ . @ + -, starting with a letter or digit and not ending with a space"
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


class _FileProblem(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


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


# -- parsing untrusted YAML --------------------------------------------------------------


def _may_nest_too_deep(text: str) -> bool:
    """Whether ``text`` could nest deeper than MAX_NESTING, by an upper bound: every ``[`` and
    ``{`` (quoted or not) counts a flow level, and a block collection starts no further right
    than a line's indentation and indicators (``- ? :``), each column holding two levels at
    most (a mapping and the sequence that is its value)."""
    room = MAX_NESTING - text.count("[") - text.count("{")
    if room < 2:
        return True
    widest_allowed = room // 2 - 1
    only_newlines = not any(other in text for other in _BREAK[1:])  # then a faster pattern
    wide = _block_prefix_wider_than(widest_allowed, "\n" if only_newlines else _BREAK)
    first_line = "\n" + text[: widest_allowed + 8]
    return wide.match(first_line) is not None or wide.search(text) is not None


_BREAK = "\n\r\x85\u2028\u2029"  # libyaml's line breaks (YAML 1.1)


@functools.cache
def _block_prefix_wider_than(columns: int, breaks: str) -> re.Pattern[str]:
    """A line's indentation and block indicators reaching past ``columns`` (the pattern
    starts with the line break before the line, which the regex engine finds fast)."""
    after = rf"(?=[ \t{_BREAK}]|\Z)"
    indent = rf"(?:[ \t]|[-?:]{after})"
    return re.compile(rf"[{breaks}]\ufeff?(?:---{after})?{indent}{{{columns + 1}}}")


def _check_nesting(text: str) -> None:
    """Refuse ``text`` nested deeper than MAX_NESTING, without letting libyaml see it."""
    if not _may_nest_too_deep(text):
        return
    depth = 0
    try:  # libyaml's parser (not its composer) and the pure-Python one keep their own stacks
        for event in yaml.parse(text, Loader=_EventLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise _too_deep(event.start_mark.line + 1 if event.start_mark else None)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:  # refused here: libyaml might read on past this point
        if "maximum nesting depth" in str(exc):  # libyaml's own limit, met while scanning ahead
            mark = getattr(exc, "problem_mark", None)
            raise _too_deep(mark.line + 1 if mark else None) from exc
        raise _yaml_problem(exc, text) from exc


def _too_deep(line: int | None) -> _FileProblem:
    return _FileProblem(
        f"collections nested deeper than {MAX_NESTING} levels; an interaction file needs about 5",
        line,
    )


def _yaml_problem(exc: yaml.YAMLError, text: str) -> _FileProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return _FileProblem(
            f"not valid YAML: {exc.problem or exc}", mark.line + 1 if mark else None
        )
    if isinstance(exc, yaml.reader.ReaderError):  # a control character or similar, by position
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return _FileProblem(
            f"not valid YAML: {exc.reason} (found {character!r})",
            text.count("\n", 0, exc.position) + 1,
        )
    return _FileProblem(f"not valid YAML: {exc}", None)


def _may_hold_an_anchor(text: str) -> bool:
    """An anchor (``&name``) follows white space, a line start or a flow indicator: the
    ``&`` of ``a=1&b=2`` in a URL is none."""
    found = text.find("&")
    while found != -1:
        if found == 0 or text[found - 1] in " \t\r\n[{,:\ufeff":
            return True
        found = text.find("&", found + 1)
    return False


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse aliases that expand beyond MAX_ALIAS_EXPANSION, refer to themselves, or nest
    the expanded document deeper than MAX_NESTING. The composed graph shares aliased nodes,
    so this walks each node once, keeping its expanded size and height."""
    expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height) once expanded
    open_nodes: set[int] = set()  # the current path, to find an alias inside its own anchor
    alias_cost = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        line = int(node.start_mark.line) + 1
        if children_done:
            open_nodes.discard(key)
            sizes = [expanded[id(child)] for child in _children(node)]
            own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
            size = own + sum(size for size, _ in sizes)
            height = 1 + max((height for _, height in sizes), default=0)
            if height > MAX_NESTING:
                raise _FileProblem(
                    f"aliases nest the document deeper than {MAX_NESTING} levels", line
                )
            expanded[key] = (size, height)
        elif key in expanded:  # a second use of a node: an alias
            alias_cost += expanded[key][0]
            if alias_cost > MAX_ALIAS_EXPANSION:
                raise _FileProblem(
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes and characters "
                    f"(the node at line {line} is used again and again); write values out",
                    line,
                )
        elif key in open_nodes:
            raise _FileProblem("an alias refers to the node that contains it", line)
        else:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node)))


def _compose(text: str, *, untrusted: bool = True) -> tuple[yaml.Node | None, Any]:
    if untrusted:
        _check_nesting(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        if untrusted and _may_hold_an_anchor(text):  # no anchor, no alias: nothing expands
            _check_expansion(node)
        return node, loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text) from exc
    finally:
        loader.dispose()


def read_yaml(text: str, *, untrusted: bool = True) -> Any:
    """``text`` loaded as an interaction file is; ValueError if it cannot be. Recording reads
    what it just wrote from plain dicts back with ``untrusted=False``: depth and alias checks
    (which cost a pure-Python parse of bracket-heavy text) have nothing to find there."""
    try:
        return _compose(text, untrusted=untrusted)[1]
    except _FileProblem as problem:
        raise ValueError(f"line {problem.line}: {problem}") from problem


# -- the fields --------------------------------------------------------------------------


def _headers(value: Any, where: str, node: yaml.Node | None, *path: str | int) -> Headers:
    if value is None:
        return Headers()
    if not isinstance(value, Mapping):
        raise _FileProblem(
            f"{where} must be a mapping of name to a list of values", _line(node, *path)
        )
    headers = Headers()
    for name, values in value.items():
        line = _line(node, *path, str(name))
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise _FileProblem(
                f"{where}: {name!r} is not a valid header name (letters, digits, "
                "!#$%&'*+-.^_`|~ only)",
                line,
            )
        for item in values if isinstance(values, list) else [values]:
            if isinstance(item, (dict, list, bytes)) or item is None:
                raise _FileProblem(f"{where}: the value of {name} must be text", line)
            text = str(item)
            control = _CONTROL.search(text)
            if control:
                raise _FileProblem(
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
        raise _FileProblem("a body must be text or !!binary, not a mapping or a list", line)
    text = value if isinstance(value, str) else str(value)  # an unquoted number: '42'
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _FileProblem(
            f"a text body holds {text[exc.start]!r}, which UTF-8 cannot encode; use !!binary",
            line,
        ) from None
    return text


def body_bytes(body: str | bytes | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else body


def _method(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise _FileProblem(f"{where} method {value!r} is not an HTTP method (a token)", line)
    return value.upper()


def _url(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise _FileProblem(
            f"{where} url {value!r} must be text without spaces or control characters", line
        )
    return value


def _status(status: Any, node: yaml.Node | None) -> tuple[int, str]:
    line = _line(node, "response", "status")
    if not isinstance(status, dict) or "code" not in status:
        raise _FileProblem("response needs status: {code: ..., message: ...}", line)
    code = status["code"]
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise _FileProblem(
            f"status code {status['code']!r} is not an HTTP status: use 100 to 599",
            _line(node, "response", "status", "code"),
        )
    message = status.get("message")
    message = "" if message is None else str(message)
    if _CONTROL.search(message):
        raise _FileProblem(
            f"status message {message!r} holds a control character",
            _line(node, "response", "status", "message"),
        )
    return code, message


def _parse(path: Path, text: str) -> Interaction:
    node, data = _compose(text)
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
    if "method" not in request or "url" not in request:
        raise _FileProblem("request needs a method and a url", _line_of(node, "request"))
    code, message = _status(response.get("status"), node)
    exact, regex = _match_rules(data.get("match"), _line_of(node, "match"))
    max_replays = data.get("max_replays", -1)
    if max_replays is None:
        max_replays = -1
    if isinstance(max_replays, bool) or not isinstance(max_replays, int) or max_replays < -1:
        raise _FileProblem(
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
    except (re.error, RecursionError, OverflowError) as exc:
        raise _FileProblem(f"bad regular expression in match.regex: {exc}", line) from exc
    return tuple(exact), regex


def _callbacks(value: Any, path: Path, node: yaml.MappingNode) -> tuple[Callback, ...]:
    if not value:
        return ()
    if not isinstance(value, list):
        raise _FileProblem("callbacks must be a list", _line_of(node, "callbacks"))
    callbacks = []
    for number, entry in enumerate(value):
        line = _line(node, "callbacks", number)
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or "url" not in request:
            raise _FileProblem("each callback needs a request with a url", line)
        delay = entry.get("delay", DEFAULT_CALLBACK_DELAY)
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not math.isfinite(delay)
            or not 0 <= delay <= MAX_CALLBACK_DELAY
        ):
            raise _FileProblem(
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
    except _FileProblem as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ScenarioError(f"{where}: {problem}") from problem.__cause__
    except Exception as exc:  # untrusted input: whatever else breaks still names the file
        raise ScenarioError(f"{path}: cannot be loaded: {type(exc).__name__}: {exc}") from exc


@dataclass
class ServiceInteractions:
    """The interactions of one service in one scenario, in natural file order, indexed."""

    directory: Path
    interactions: list[Interaction]
    by_method_url: dict[tuple[str, str], list[Interaction]]
    scanned: list[Interaction]  # those the index cannot narrow down (no exact url or method,
    # or a redacted query parameter that matches any value)
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
            indexable = "url" in interaction.exact and "method" in interaction.exact
            if indexable and not holds_marker(interaction.request.url):
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
