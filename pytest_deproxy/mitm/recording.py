"""Recording: what a recorded exchange looks like on disk, and how it gets there.

Rules kept here: a recording replays byte for byte. A body is stored as text only when it is
text in its declared charset, carries no Content-Encoding, and reads back from the written
YAML as the very same bytes (YAML folds NEL, LS/PS and CR, drops a BOM...); anything else is
``!!binary``, gzip bodies included, as INSPIRE-MITMProxy does. Secrets are redacted before
anything is written (:mod:`pytest_deproxy.redaction`). A recording is written to a temporary
file, created as any file a user asks for (``0666`` less the umask), and linked into place, so
no reader ever sees half a file and two recorders (threads, or pytest-xdist workers) never
take the same ``interaction_N``.
"""

from __future__ import annotations

import codecs
import copy
import gzip
import os
import re
import secrets
import zlib
from pathlib import Path
from typing import Any

import yaml

from .. import client
from ..errors import ScenarioError
from ..models import TRACKING_HEADER, Headers, Request, Response, charset_of
from ..redaction import DEFAULT, Redaction
from .safe_yaml import read_yaml
from .scenarios import check_name, natural_key

# Control characters make a body binary data, not text, however it decodes.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Characters plain and single-quoted YAML scalars fold, drop or cannot hold: such a string
# is written double-quoted, with escapes, which reads back exactly.
_NEEDS_ESCAPES = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")


class _Dumper(yaml.SafeDumper):
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
            document[part]["body"] = body.encode("utf-8")
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


def _codings(headers: Headers) -> list[str]:
    return [
        coding
        for value in headers.get_all("Content-Encoding")
        for coding in (part.strip().lower() for part in value.split(","))
        if coding and coding != "identity"
    ]


def _is_utf8(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name == "utf-8"
    except LookupError:
        return False


def stored_body(raw: bytes, headers: Headers) -> str | bytes | None:
    """How a body is stored: text when it is plain text in its declared charset (UTF-8, or
    ASCII in any charset) with no Content-Encoding, else the bytes (``!!binary``)."""
    if not raw:
        return None
    if _codings(headers) or not (raw.isascii() or _is_utf8(charset_of(headers))):
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return text if _CONTROL_CHARACTERS.search(text) is None else raw


def encoded_body(body: str | bytes | None, headers: Headers) -> bytes:
    """The bytes to replay. Recorded bytes go out as they were; a text body is encoded again
    as its Content-Encoding says (INSPIRE-MITMProxy's files store gzip bodies decoded)."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body  # recorded bytes are replayed as they were, whatever the headers claim
    data = body.encode("utf-8")
    for coding in _codings(headers):
        if coding in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif coding == "deflate":
            data = zlib.compress(data)
    return data


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
        (n, v) for n, v in request.headers.items() if n.lower() != TRACKING_HEADER.lower()
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
        request.method, request.path, client.end_to_end(request.headers), request.raw_body
    )
    document = interaction_document(sent, url, response, redaction)
    return write_interaction(root, scenario, service, document)
