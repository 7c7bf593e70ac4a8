"""The fields of an interaction file, checked one by one, and where in the file each one is.

Rules kept here: every value replay needs is checked when the file is loaded (a header name
is a token and its values hold no control character, a method is a token, a url holds no
space, a status code is 100 to 599, a text body can be sent in its declared charset), and
each problem is a :class:`~.safe_yaml.YamlProblem` with the line of the field. A status with
no message gets the code's standard reason phrase, as INSPIRE-MITMProxy sends it. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from ..models import Headers, reason_phrase
from .bodies import charset
from .safe_yaml import YamlProblem

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in header values
_URL = re.compile(r"[^\x00-\x20\x7f]+")


def find_nodes(node: yaml.Node | None, *path: str | int) -> list[yaml.Node]:
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


def line_at(node: yaml.Node | None, *path: str | int) -> int | None:
    """The line of the deepest node along ``path`` that exists."""
    found = find_nodes(node, *path)
    if found:
        return int(found[-1].start_mark.line) + 1
    return int(node.start_mark.line) + 1 if node is not None else None


def line_of(node: yaml.MappingNode, key: str) -> int | None:
    """The line of ``key`` in the mapping ``node``."""
    for key_node, _ in node.value:
        if key_node.value == key:
            return int(key_node.start_mark.line) + 1
    return None


# -- the fields --------------------------------------------------------------------------


def check_headers(value: Any, where: str, node: yaml.Node | None, *path: str | int) -> Headers:
    if value is None:
        return Headers()
    if not isinstance(value, Mapping):
        raise YamlProblem(
            f"{where} must be a mapping of name to a list of values", line_at(node, *path)
        )
    headers = Headers()
    for name, values in value.items():
        line = line_at(node, *path, str(name))
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


def check_body(value: Any, line: int | None, headers: Headers) -> str | bytes | None:
    """A body as the file gives it: None, bytes (``!!binary``) or text that can be sent in
    the charset ``headers`` declare."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list)):
        raise YamlProblem("a body must be text or !!binary, not a mapping or a list", line)
    text = value if isinstance(value, str) else str(value)  # an unquoted number: '42'
    codec = charset(headers)
    try:
        text.encode(codec)
    except UnicodeEncodeError as exc:
        raise YamlProblem(
            f"a text body holds {text[exc.start]!r}, which {codec} (the charset its "
            "Content-Type declares, else UTF-8) cannot encode; declare another charset or "
            "use !!binary",
            line,
        ) from None
    return text


def check_method(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise YamlProblem(f"{where} method {value!r} is not an HTTP method (a token)", line)
    return value.upper()


def check_url(value: Any, where: str, line: int | None) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise YamlProblem(
            f"{where} url {value!r} must be text without spaces or control characters", line
        )
    return value


def check_status(status: Any, node: yaml.Node | None) -> tuple[int, str]:
    line = line_at(node, "response", "status")
    if not isinstance(status, dict) or "code" not in status:
        raise YamlProblem("response needs status: {code: ..., message: ...}", line)
    code = status["code"]
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise YamlProblem(
            f"status code {status['code']!r} is not an HTTP status: use 100 to 599",
            line_at(node, "response", "status", "code"),
        )
    message = status.get("message")
    # No message, or an empty one: the standard phrase, as INSPIRE-MITMProxy sends it.
    message = str(message) if message not in (None, "") else reason_phrase(code)
    if _CONTROL.search(message):
        raise YamlProblem(
            f"status message {message!r} holds a control character",
            line_at(node, "response", "status", "message"),
        )
    return code, message
