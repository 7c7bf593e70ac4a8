"""Bodies of recorded exchanges: text in its declared charset, or bytes as they were.

Rules kept here, INSPIRE-MITMProxy's: a text body is text in the charset its ``Content-Type``
declares (UTF-8 when none is declared, or when Python knows no such charset). It is encoded
in that charset to be sent, then compressed again as its ``Content-Encoding`` says (the
original wrote gzip bodies decoded); a received body is compared with recorded text after its
own ``Content-Encoding`` is undone and it is decoded in its own declared charset. A body
stored as bytes (``!!binary``) is sent and compared byte for byte. A body is recorded as text
only when it is text in its declared charset, with no Content-Encoding, and encodes back to
the very bytes received; anything else is recorded as bytes. Pure: no I/O.
"""

from __future__ import annotations

import codecs
import gzip
import re
import zlib

from ..models import Headers, charset_of

# Control characters make a body binary data, not text, however it decodes.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A decompressed body larger than this is not decoded for matching (a "zip bomb" is refused).
MAX_DECODED_BODY = 64 * 1024 * 1024


def codings(headers: Headers) -> list[str]:
    """The content codings ``headers`` declare, in the order they were applied."""
    return [
        coding
        for value in headers.get_all("Content-Encoding")
        for coding in (part.strip().lower() for part in value.split(","))
        if coding and coding != "identity"
    ]


def charset(headers: Headers) -> str:
    """The codec of the declared charset; UTF-8 when none is declared or it is unknown."""
    try:
        return codecs.lookup(charset_of(headers)).name
    except LookupError:
        return "utf-8"


def encode_text(text: str, headers: Headers) -> bytes:
    """``text`` in the charset ``headers`` declare; UnicodeEncodeError if it cannot be."""
    return text.encode(charset(headers))


def stored_body(raw: bytes, headers: Headers) -> str | bytes | None:
    """How a body is recorded: text when it is plain text in its declared charset with no
    Content-Encoding (and encodes back to ``raw``), else the bytes (``!!binary``)."""
    if not raw:
        return None
    if codings(headers):
        return raw
    codec = charset(headers)
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return raw
    if _CONTROL_CHARACTERS.search(text) is not None or text.encode(codec) != raw:
        return raw
    return text


def encoded_body(body: str | bytes | None, headers: Headers) -> bytes:
    """The bytes to replay. Recorded bytes go out as they were; a text body is encoded in its
    declared charset, then as its Content-Encoding says (INSPIRE-MITMProxy's files store gzip
    bodies decoded)."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body  # recorded bytes are replayed as they were, whatever the headers claim
    data = encode_text(body, headers)
    for coding in codings(headers):
        if coding in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif coding == "deflate":
            data = zlib.compress(data)
    return data


def _decompressed(raw: bytes, headers: Headers) -> bytes | None:
    """``raw`` with its content codings undone; None if one is unknown or does not decode."""
    data = raw
    for coding in reversed(codings(headers)):
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS
        else:
            return None
        try:
            inflater = zlib.decompressobj(wbits)
            data = inflater.decompress(data, MAX_DECODED_BODY)
        except zlib.error:
            return None
        if inflater.unconsumed_tail:
            return None
    return data


def received_text(raw: bytes, headers: Headers) -> str | None:
    """A received body as text, to compare with recorded text: its Content-Encoding undone,
    decoded in its declared charset. None when it is not text that way."""
    data = _decompressed(raw, headers) if codings(headers) else raw
    if data is None:
        return None
    try:
        return data.decode(charset(headers))
    except UnicodeDecodeError:
        return None
