"""Message bodies: the bytes a body is sent as, and the readable view of the bytes that came
(``Content-Encoding`` undone, text decoded in its charset).

Rule kept here: nothing is lost in the readable view: a body that cannot be decoded is given
as the bytes it came as.
"""

from __future__ import annotations

import gzip
import re
import zlib

from .fields import Headers

Body = str | bytes | None

_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)
_TEXT_TYPES = re.compile(
    r"^(text/|application/([\w.-]+\+)?(json|xml|javascript|ecmascript|x-www-form-urlencoded"
    r"|yaml|x-yaml|graphql|problem\+json)\b)",
    re.IGNORECASE,
)


def charset_of(headers: Headers) -> str:
    """The charset the ``Content-Type`` declares, else UTF-8."""
    match = _CHARSET.search(headers.get("Content-Type") or "")
    return match.group(1) if match else "utf-8"


def encode_body(body: Body, headers: Headers) -> bytes:
    """The bytes a body is sent as: ``str`` in the declared charset (UTF-8 by default)."""
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode(charset_of(headers))
        except LookupError:
            return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a body must be str, bytes or None, not {type(body).__name__}")


def _decode_content(raw: bytes, headers: Headers) -> bytes | None:
    """Undo ``Content-Encoding`` (gzip, deflate); ``None`` when it cannot be undone."""
    if "content-encoding" not in headers._keys:
        return raw
    codings = [
        part.strip().lower()
        for value in headers.get_all("Content-Encoding")
        for part in value.split(",")
        if part.strip()
    ]
    data = raw
    for coding in reversed(codings):
        try:
            if coding in ("gzip", "x-gzip"):
                data = gzip.decompress(data)
            elif coding == "deflate":
                try:
                    data = zlib.decompress(data)
                except zlib.error:  # servers often send raw deflate without the zlib wrapper
                    data = zlib.decompress(data, -zlib.MAX_WBITS)
            elif coding != "identity":
                return None
        except (OSError, EOFError, zlib.error):
            return None
    return data


def decode_body(raw: bytes, headers: Headers) -> str | bytes:
    """The body as a test wants to read it.

    Content-Encoding is undone; the result is ``str`` when the content is text (no
    ``Content-Type``, or a textual one) and decodes with its charset, else ``bytes``.
    """
    if not raw:
        return ""
    data = _decode_content(raw, headers)
    if data is None:
        return raw
    content_type = headers.get("Content-Type")
    if content_type is not None and not _TEXT_TYPES.match(content_type.strip()):
        return data
    try:
        return data.decode(charset_of(headers))
    except (UnicodeDecodeError, LookupError):
        return data
