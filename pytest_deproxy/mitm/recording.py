"""Recording: what a recorded exchange looks like on disk, and how it gets there.

Rules kept here: a recording is written to a temporary file and linked into place, so no
reader ever sees half a file and two recorders (threads, or pytest-xdist workers) never take
the same ``interaction_N``; secrets are redacted before anything is written; text bodies are
stored readable (gzip/deflate undone) and encoded again when replayed.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ScenarioError
from ..models import TRACKING_HEADER, Headers, Request, Response
from .scenarios import check_name, natural_key

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def write_interaction(root: Path, scenario: str, service: str, document: dict[str, Any]) -> Path:
    """Write the next ``interaction_N.yaml`` of a service, atomically and exclusively."""
    directory = root / check_name(scenario, "scenario") / check_name(service, "service")
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".recording-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            return _link_next_free(directory, Path(temporary))
        finally:
            os.unlink(temporary)
    except OSError as exc:
        raise ScenarioError(f"cannot write a recording into {directory}: {exc}") from exc


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


REDACTED = "<redacted>"
DEFAULT_REDACTED_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie")


def readable_body(raw: bytes, headers: Headers) -> str | bytes | None:
    """How a body is stored: text (gzip/deflate undone) when it is text, else ``!!binary`` bytes."""
    if not raw:
        return None
    data = raw
    codings = [c.strip().lower() for v in headers.get_all("Content-Encoding") for c in v.split(",")]
    try:
        for coding in reversed([c for c in codings if c and c != "identity"]):
            if coding in ("gzip", "x-gzip"):
                data = gzip.decompress(data)
            elif coding == "deflate":
                data = zlib.decompress(data)
            else:
                return raw
    except (OSError, EOFError, zlib.error):
        return raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return text if _CONTROL_CHARACTERS.search(text) is None else raw


def encoded_body(body: str | bytes | None, headers: Headers) -> bytes:
    """The bytes to replay: a stored text body is encoded again as its Content-Encoding says."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body  # recorded bytes are replayed as they were, whatever the headers claim
    data = body.encode("utf-8")
    codings = [c.strip().lower() for v in headers.get_all("Content-Encoding") for c in v.split(",")]
    for coding in codings:
        if coding in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif coding == "deflate":
            data = zlib.compress(data)
    return data


def headers_document(headers: Headers, redact: Iterable[str]) -> dict[str, list[str]]:
    hidden = {name.lower() for name in redact}
    document: dict[str, list[str]] = {}
    for name, value in headers.items():
        document.setdefault(name, []).append(REDACTED if name.lower() in hidden else value)
    return document


def interaction_document(
    request: Request, url: str, response: Response, redact: Iterable[str]
) -> dict[str, Any]:
    """An exchange in INSPIRE-MITMProxy's format, secrets redacted, bodies readable."""
    request_headers = Headers(
        (n, v) for n, v in request.headers.items() if n.lower() != TRACKING_HEADER.lower()
    )
    return {
        "request": {
            "method": request.method,
            "url": url,
            "headers": headers_document(request_headers, redact),
            "body": readable_body(request.raw_body, request.headers),
        },
        "response": {
            "status": {"code": int(response.code), "message": response.message},
            "headers": headers_document(response.headers, redact),
            "body": readable_body(response.raw_body, response.headers),
        },
    }
