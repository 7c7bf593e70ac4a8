"""The chunk family of the corpus: chunked bodies whose size lines, extensions, data ends,
last chunk or trailer section stray from RFC 9112 §7.1.

Rules kept here: pure, no socket, no thread. Every request is ``Transfer-Encoding: chunked``
with no ``Content-Length``, and its first chunk's data is an empty line and the smuggled
request: a reader that misreads that chunk's size as 0 (a size written ``0x..``, a size that
overflows to 0) ends the body there and finds the smuggled request next, while a reader that
reads the size as written keeps it in the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .ambiguous import AmbiguousRequest, entry, request_bytes, smuggled

_LAST = b"0\r\n\r\n"


def _body(
    hidden: bytes,
    *,
    size: bytes | None = None,
    ext: bytes = b"",
    eol: bytes = b"\r\n",
    after: bytes = b"\r\n",
    last: bytes = _LAST,
    delta: int = 0,
) -> bytes:
    """One chunk holding an empty line and ``hidden``, then the last chunk; ``size`` (by
    default the data's length in hex, plus ``delta``) and the other parts as given."""
    data = b"\r\n" + hidden
    size = b"%x" % (len(data) + delta) if size is None else size
    return size + ext + eol + data + after + last


def _hex(hidden: bytes) -> bytes:
    return b"%x" % (len(hidden) + 2)


_SIZE = "RFC 9112 §7.1"
_EXT = "RFC 9112 §7.1.1"
_TRAILER = "RFC 9112 §7.1.2"
# slug: (the body for the smuggled request, reference, what is odd and why it matters)
_FORMS: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "size.many-leading-zeros": (lambda s: _body(s, size=b"0" * 20 + _hex(s)), _SIZE,
        "A chunk size with twenty leading zeros, valid hex that a reader with a digit limit "
        "refuses or cuts short"),
    "size.0x-prefix": (lambda s: _body(s, size=b"0x" + _hex(s)), _SIZE,
        "A chunk size written 0x.., which a strtol-style reader reads as 0, the last chunk, "
        "and then reads the smuggled request"),
    "size.plus-sign": (lambda s: _body(s, size=b"+" + _hex(s)), _SIZE,
        "A chunk size with a plus sign, which strtol-style readers accept and strict ones "
        "refuse"),
    "size.minus-sign": (lambda s: _body(s, size=b"-" + _hex(s)), _SIZE,
        "A negative chunk size, which readers refuse, read as 0, or wrap to a huge size"),
    "size.int64-wraps-to-length": (lambda s: _body(s, size=b"1%016x" % (len(s) + 2)), _SIZE,
        "A chunk size of 2**64 plus the data's length, which an overflowing 64-bit reader "
        "frames exactly while a correct reader waits for exabytes"),
    "size.int64-wraps-to-zero": (lambda s: _body(s, size=b"1" + b"0" * 16), _SIZE,
        "A chunk size of 2**64, which an overflowing 64-bit reader takes for the last chunk "
        "and then reads the smuggled request"),
    "size.leading-space": (lambda s: _body(s, size=b" " + _hex(s)), _SIZE,
        "A space before a chunk size, which trimming readers skip and strict ones refuse"),
    "size.trailing-space": (lambda s: _body(s, size=_hex(s) + b" "), _EXT,
        "A space after a chunk size with no extension after it, which the grammar allows "
        "only before a semicolon"),
    "size.trailing-tab": (lambda s: _body(s, size=_hex(s) + b"\t"), _EXT,
        "A tab after a chunk size with no extension after it, which the grammar allows only "
        "before a semicolon"),
    "size.trailing-vt": (lambda s: _body(s, size=_hex(s) + b"\x0b"), _SIZE,
        "A vertical tab after a chunk size, whitespace to C's isspace and nothing to the "
        "grammar"),
    "size.trailing-nul": (lambda s: _body(s, size=_hex(s) + b"\x00"), _SIZE,
        "A NUL after a chunk size, where a C-string reader stops and a strict one refuses"),
    "size.empty": (lambda s: _body(s, size=b""), _SIZE,
        "An empty chunk-size line, which readers read as 0, skip, or refuse"),
    "size.non-hex-suffix": (lambda s: _body(s, size=_hex(s) + b"g"), _SIZE,
        "A chunk size followed by a letter that is no hex digit, where strtol-style readers "
        "stop and strict ones refuse"),
    "size.underscore": (lambda s: _body(s, size=_hex(s)[:1] + b"_" + _hex(s)[1:]), _SIZE,
        "A chunk size with an underscore between its digits, which Python's int(x, 16) "
        "accepts and strict readers refuse"),
    "ext.quoted": (lambda s: _body(s, ext=b';a="b;c"'), _EXT,
        "A chunk extension whose quoted value holds a semicolon, valid syntax that a reader "
        "splitting on semicolons misreads"),
    "ext.quoted-lf": (lambda s: _body(s, ext=b';a="b\nc"'), _EXT,
        "A bare LF inside a quoted chunk extension, which a line reader takes for the end of "
        "the size line and so starts the data too early"),
    "ext.quoted-cr": (lambda s: _body(s, ext=b';a="b\rc"'), _EXT,
        "A bare CR inside a quoted chunk extension, invalid in a quoted string and a line "
        "end to some readers"),
    "ext.unterminated-quote": (lambda s: _body(s, ext=b';a="b'), _EXT,
        "A chunk extension with an unterminated quoted string, which a quote-aware reader "
        "runs on past the line end"),
    "ext.nul": (lambda s: _body(s, ext=b";a=b\x00"), _EXT,
        "A NUL in a chunk extension, where a C-string reader stops reading the line"),
    "ext.del": (lambda s: _body(s, ext=b";a=\x7f"), _EXT,
        "A DEL byte as a chunk extension's value, which is no token"),
    "ext.space-in-value": (lambda s: _body(s, ext=b";a=b c"), _EXT,
        "A space inside an unquoted chunk extension value, which is no token"),
    "ext.no-name": (lambda s: _body(s, ext=b";"), _EXT,
        "A semicolon with no extension name after it"),
    "ext.empty-value": (lambda s: _body(s, ext=b";a="), _EXT,
        "A chunk extension with an equals sign and no value"),
    "ext.obs-text": (lambda s: _body(s, ext=b";a=\xff"), _EXT,
        "A chunk extension value of the byte 0xFF, which is no token"),
    "ext.long": (lambda s: _body(s, ext=b";a=" + b"b" * 2000), _EXT,
        "A 2 KiB chunk extension, valid syntax over the line limits of many readers"),
    "data.missing-crlf": (lambda s: _body(s, after=b""), _SIZE,
        "Chunk data not followed by CRLF, so that a reader that does not check reads the last "
        "chunk right after it"),
    "data.bare-lf": (lambda s: _body(s, after=b"\n"), _SIZE,
        "Chunk data followed by a bare LF instead of CRLF"),
    "data.bare-cr": (lambda s: _body(s, after=b"\r"), _SIZE,
        "Chunk data followed by a bare CR instead of CRLF"),
    "data.longer-than-size": (lambda s: _body(s, delta=-1), _SIZE,
        "Chunk data one byte longer than its size, so that readers disagree on where the "
        "next size line begins"),
    "data.shorter-than-size": (lambda s: _body(s, delta=2), _SIZE,
        "Chunk data two bytes shorter than its size, so that the chunk swallows its CRLF"),
    "line.bare-lf": (lambda s: _body(s, eol=b"\n"), _SIZE,
        "A chunk-size line ended by a bare LF"),
    "line.bare-cr": (lambda s: _body(s, eol=b"\r"), _SIZE,
        "A chunk-size line ended by a bare CR, which readers take as a line end or as part "
        "of the size"),
    "last.bare-lf": (lambda s: _body(s, last=b"0\n\n"), _SIZE,
        "A last chunk and an empty trailer section ended by bare LFs"),
    "last.bare-cr": (lambda s: _body(s, last=b"0\r\r"), _SIZE,
        "A last chunk and an empty trailer section ended by bare CRs, an end that only "
        "CR-tolerant readers see"),
    "last.missing-empty-line": (lambda s: _body(s, last=b"0\r\n"), _TRAILER,
        "A last chunk with no empty line after it, so that a reader that skips the trailer "
        "section is done and one that reads it waits"),
    "trailer.content-length": (lambda s: _body(s, last=b"0\r\nContent-Length: 0\r\n\r\n"),
        "RFC 9110 §6.5.1", "Content-Length in the trailer section, a framing field a sender "
        "must not put there and a reader merging trailers into the head may obey"),
    "trailer.transfer-encoding": (
        lambda s: _body(s, last=b"0\r\nTransfer-Encoding: chunked\r\n\r\n"), "RFC 9110 §6.5.1",
        "Transfer-Encoding in the trailer section, a framing field a sender must not put there"),
    "trailer.host": (lambda s: _body(s, last=b"0\r\nHost: evil.example\r\n\r\n"),
        "RFC 9110 §6.5.1", "Host in the trailer section, a routing field that a reader "
        "merging trailers into the head may route by"),
    "trailer.obs-fold": (lambda s: _body(s, last=b"0\r\nX-Trailer: 1\r\n 2\r\n\r\n"), _TRAILER,
        "An obsolete line fold in the trailer section"),
    "trailer.before-colon": (lambda s: _body(s, last=b"0\r\nX-Trailer : 1\r\n\r\n"), _TRAILER,
        "Whitespace between a trailer field's name and its colon, which a server must refuse"),
    "trailer.bare-lf": (lambda s: _body(s, last=b"0\r\nX-Trailer: 1\n\r\n"), _TRAILER,
        "A trailer field line ended by a bare LF"),
    "trailer.nul": (lambda s: _body(s, last=b"0\r\nX-Trailer: a\x00b\r\n\r\n"), _TRAILER,
        "A NUL inside a trailer field value"),
    "trailer.request-line": (lambda s: b"5\r\nhello\r\n0\r\n" + s, _TRAILER,
        "The smuggled request where the trailer section belongs, so that a reader that stops "
        "at the last chunk without reading trailers takes it for the next request"),
}  # fmt: skip
_VALID = {"ext.quoted", "ext.long"}


def chunks() -> Iterator[AmbiguousRequest]:
    """The chunk family, one request per form."""
    for slug, (body_of, reference, said) in _FORMS.items():

        def build(host: bytes, rid: bytes, body_of: Callable[[bytes], bytes] = body_of) -> bytes:
            body = body_of(smuggled(host, rid))
            return request_bytes(host, rid, [b"Transfer-Encoding: chunked"], body)

        odd = rb"evil\.example" if slug == "trailer.host" else b""
        valid = slug in _VALID
        yield entry(f"chunk.{slug}", "chunk", said + ".", reference, build, odd, valid)
