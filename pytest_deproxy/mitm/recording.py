"""Recording: what a recorded exchange looks like on disk, and how it gets there.

Rules kept here: a recording replays byte for byte. A body is stored as text only when it is
text in its declared charset, carries no Content-Encoding, and reads back from the written
YAML as the very same bytes (YAML folds NEL, LS/PS and CR, drops a BOM...); anything else is
``!!binary``, gzip bodies included, as INSPIRE-MITMProxy does. Secrets are redacted before
anything is written (:mod:`pytest_deproxy.redaction`). A recording is written to a temporary
file, created as any file a user asks for (``0666`` less the umask), and linked into place, so
no reader ever sees half a file and two recorders (threads, or pytest-xdist workers) never
take the same ``interaction_N``. Files keep INSPIRE-MITMProxy's names, ``interaction_N``
with N one more than the highest taken; the files of a service are tried in plain sorted
order, as the original tries them (see :mod:`.scenarios`). libyaml writes the YAML when
PyYAML has it (a 10 MB body in well under a second).
"""

from __future__ import annotations

import copy
import os
import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from .. import forwarding
from ..errors import ScenarioError
from ..models import TRACKING_KEY, Headers, Request, Response
from ..redaction import DEFAULT, Redaction
from .bodies import encode_text, encoded_body, stored_body
from .safe_yaml import read_yaml
from .scenarios import check_name, natural_key

# Characters plain and single-quoted YAML scalars fold, drop or cannot hold: such a string
# is written double-quoted, with escapes, which reads back exactly.
_NEEDS_ESCAPES = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")


__all__ = ["encoded_body", "record_exchange", "stored_body", "write_interaction"]

# libyaml's emitter when PyYAML was built with it: the pure-Python one takes about 5 s to
# write a 10 MB body, libyaml's a few tenths of a second.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """The safe dumper, writing strings that need escapes double-quoted, and no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if _NEEDS_ESCAPES.search(value.replace("\n", "")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def dump_interaction(document: dict[str, Any]) -> str:
    """The YAML text of ``document``; a text body that would not read back identical is
    written as ``!!binary`` instead. ValueError if anything else would not read back."""
    document = copy.deepcopy(document)
    text = _dump(document)
    loaded = _read_back(text)
    bodies_changed = False
    for part in ("request", "response"):
        body = document.get(part, {}).get("body")
        if isinstance(body, str) and loaded.get(part, {}).get("body") != body:
            document[part]["body"] = encode_text(body, _headers(document[part].get("headers")))
            bodies_changed = True
    if bodies_changed:
        text = _dump(document)
        loaded = _read_back(text)
    if loaded != document:
        raise ValueError(
            "the exchange cannot be written so that it reads back the same: "
            f"{_first_difference(document, loaded)}"
        )
    return text


def _headers(document: Any) -> Headers:
    if not isinstance(document, dict):
        return Headers()
    return Headers((name, value) for name, values in document.items() for value in values)


def _read_back(text: str) -> dict[str, Any]:
    try:
        loaded = read_yaml(text, untrusted=False)  # our own dump: no aliases, 4 levels
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _first_difference(mine: Any, theirs: Any, where: str = "") -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in mine:
            if mine[key] != theirs.get(key):
                return _first_difference(mine[key], theirs.get(key), f"{where}.{key}")
    return f"{where.lstrip('.') or 'the document'}: {mine!r} read back as {theirs!r}"


def write_interaction(root: Path, scenario: str, service: str, document: dict[str, Any]) -> Path:
    """Write the next ``interaction_N.yaml`` of a service, atomically and exclusively."""
    directory = root / check_name(scenario, "scenario") / check_name(service, "service")
    try:
        text = dump_interaction(document)
    except ValueError as exc:
        raise ScenarioError(f"cannot write a recording into {directory}: {exc}") from exc
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = _create_temporary(directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            return _link_next_free(directory, temporary)
        finally:
            os.unlink(temporary)
    except OSError as exc:
        raise ScenarioError(f"cannot write a recording into {directory}: {exc}") from exc


def _create_temporary(directory: Path) -> tuple[int, Path]:
    """A new, empty file with mode 0666 less the umask (mkstemp's would be 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temporary = directory / f".recording-{secrets.token_hex(8)}.tmp"
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def _link_next_free(directory: Path, temporary: Path) -> Path:
    """Give ``temporary`` the first free ``interaction_N.yaml`` name; ``link`` fails if taken."""
    taken = [natural_key(p.stem) for p in directory.glob("interaction_*.yaml")]
    number = 1 + max(
        (key[1] for key in taken if len(key) >= 2 and isinstance(key[1], int)), default=-1
    )
    while True:
        target = directory / f"interaction_{number}.yaml"
        try:
            os.link(temporary, target)
            return target
        except FileExistsError:
            number += 1


def headers_document(headers: Headers) -> dict[str, list[str]]:
    document: dict[str, list[str]] = {}
    for name, value in headers.items():
        document.setdefault(name, []).append(value)
    return document


def interaction_document(
    request: Request, url: str, response: Response, redaction: Redaction = DEFAULT
) -> dict[str, Any]:
    """An exchange in INSPIRE-MITMProxy's format, secrets redacted, bodies byte-exact."""
    request_headers = Headers(
        (n, v) for n, v in request.headers.items() if n.lower() != TRACKING_KEY
    )
    return {
        "request": {
            "method": request.method,
            "url": redaction.url(url),
            "headers": headers_document(redaction.headers(request_headers)),
            "body": stored_body(redaction.body(request.raw_body, request_headers), request_headers),
        },
        "response": {
            "status": {"code": int(response.code), "message": response.message},
            "headers": headers_document(redaction.headers(response.headers)),
            "body": stored_body(
                redaction.body(response.raw_body, response.headers), response.headers
            ),
        },
    }


def record_exchange(
    root: Path,
    scenario: str,
    service: str,
    request: Request,
    url: str,
    response: Response,
    redaction: Redaction = DEFAULT,
) -> Path:
    """Write ``request`` (for ``url``, as it was forwarded: hop-by-hop fields dropped) and its
    upstream's ``response`` as the service's next interaction; the file written. Raises
    ScenarioError when it cannot be written."""
    sent = Request(
        request.method, request.path, forwarding.end_to_end(request.headers), request.raw_body
    )
    document = interaction_document(sent, url, response, redaction)
    return write_interaction(root, scenario, service, document)
