"""YAML from untrusted files, loaded so that no file can crash or exhaust the process.

Rules kept here: YAML is loaded with a safe loader (PyYAML 3's ``!!python/unicode`` tags are
read as plain strings, nothing else of Python's); libyaml never composes a document nested
deeper than :data:`MAX_NESTING` (a cheap upper bound first, an exact count from the parser's
events when the bound is too high); aliases may not expand beyond
:data:`MAX_ALIAS_EXPANSION`. Every problem is a :class:`YamlProblem` carrying the line, where
there is one. Pure: text in, nodes and data out, no I/O.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

# An interaction file nests 5 levels (callbacks > entry > request > headers > values); some
# libyaml builds recurse once per level and crash the whole process at a few thousand.
MAX_NESTING = 100
# The original writes no aliases at all; a million nodes and characters of expansion leaves
# room for any hand-written reuse and refuses a "billion laughs" before it costs memory.
MAX_ALIAS_EXPANSION = 1_000_000


class YamlProblem(Exception):
    """What is wrong with a file, and the line (1-based) where, when there is one."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


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


# -- depth -------------------------------------------------------------------------------


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


def _too_deep(line: int | None) -> YamlProblem:
    return YamlProblem(
        f"collections nested deeper than {MAX_NESTING} levels; an interaction file needs about 5",
        line,
    )


def _yaml_problem(exc: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return YamlProblem(f"not valid YAML: {exc.problem or exc}", mark.line + 1 if mark else None)
    if isinstance(exc, yaml.reader.ReaderError):  # a control character or similar, by position
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return YamlProblem(
            f"not valid YAML: {exc.reason} (found {character!r})",
            text.count("\n", 0, exc.position) + 1,
        )
    return YamlProblem(f"not valid YAML: {exc}", None)


# -- aliases -----------------------------------------------------------------------------


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
                raise YamlProblem(
                    f"aliases nest the document deeper than {MAX_NESTING} levels", line
                )
            expanded[key] = (size, height)
        elif key in expanded:  # a second use of a node: an alias
            alias_cost += expanded[key][0]
            if alias_cost > MAX_ALIAS_EXPANSION:
                raise YamlProblem(
                    f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes and characters "
                    f"(the node at line {line} is used again and again); write values out",
                    line,
                )
        elif key in open_nodes:
            raise YamlProblem("an alias refers to the node that contains it", line)
        else:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node)))


# -- loading -----------------------------------------------------------------------------


def compose(text: str, *, untrusted: bool = True) -> tuple[yaml.Node | None, Any]:
    """The document's node graph (for line numbers) and its data; raises YamlProblem."""
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
        return compose(text, untrusted=untrusted)[1]
    except YamlProblem as problem:
        raise ValueError(f"line {problem.line}: {problem}") from problem
