"""The head forms of the corpus: odd request lines, odd Host fields, and valid heads near
common size limits.

Rules kept here: pure, no socket, no thread. Each family is a table of forms read off the
grammar (RFC 9112 §2.2 and §3 for the request line, RFC 9112 §3.2 and RFC 9110 §7.2 for
Host) and one small function that turns a form into requests. A conflicting host is always
``evil.example``, so that finding it in what reached the backend is finding the ambiguity.
"""

from __future__ import annotations

from collections.abc import Iterator

from .ambiguous import AmbiguousRequest, entry, request_bytes, smuggled

_EVIL = rb"evil\.example"  # the odd element of every conflicting-host form


# slug: (the request line, reference, what is odd and why it matters)
_REQUEST_LINES: dict[str, tuple[bytes, str, str]] = {
    "version.missing": (b"GET /", "RFC 9112 §3",
        "A request line with no version, an HTTP/0.9 request to some readers and an invalid "
        "line to others, who then disagree on whether fields follow"),
    "version.http-1-2": (b"GET / HTTP/1.2", "RFC 9110 §2.5",
        "HTTP/1.2, a higher minor version that an intermediary must not forward as it is, "
        "sending its own version instead"),
    "version.two-digit-minor": (b"GET / HTTP/1.10", "RFC 9112 §2.3",
        "HTTP/1.10, a version with two minor digits, read as 1.1, as 1.10, or refused"),
    "version.leading-zero": (b"GET / HTTP/01.1", "RFC 9112 §2.3",
        "HTTP/01.1, a version with a leading zero, read as 1.1 by number parsers and refused "
        "by the grammar"),
    "version.http-2": (b"GET / HTTP/2.0", "RFC 9112 §2.3",
        "HTTP/2.0 in an HTTP/1 request line, a version this syntax cannot carry"),
    "version.http-0-9": (b"GET / HTTP/0.9", "RFC 9112 §2.3",
        "HTTP/0.9 written out, a version that has no fields, so readers disagree on whether "
        "the lines after it are fields"),
    "version.lower-case": (b"GET / http/1.1", "RFC 9112 §2.3",
        "A lower-case http/1.1, which the case-sensitive grammar refuses and lenient readers "
        "accept"),
    "version.space-inside": (b"GET / HTTP/ 1.1", "RFC 9112 §2.3",
        "A space inside the version, which makes four words of the request line"),
    "version.missing-minor": (b"GET / HTTP/1", "RFC 9112 §2.3",
        "HTTP/1 with no minor version, read as 1.0, 1.1 or refused"),
    "extra-word": (b"GET / HTTP/1.1 HTTP/1.0", "RFC 9112 §3",
        "A second version after the first, so that readers splitting from either end see "
        "different targets and versions"),
    "target.asterisk-for-get": (b"GET * HTTP/1.1", "RFC 9112 §3.2.4",
        "The asterisk-form target on a GET, a form meant only for OPTIONS"),
    "target.authority-form-for-get": (b"GET {host} HTTP/1.1", "RFC 9112 §3.2.3",
        "The authority-form target on a GET, a form meant only for CONNECT"),
    "target.no-leading-slash": (b"GET index.html HTTP/1.1", "RFC 9112 §3.2.1",
        "A target with no leading slash, which readers resolve to different paths"),
    "target.fragment": (b"GET /#fragment HTTP/1.1", "RFC 9112 §3.2",
        "A fragment in the target, which a client must not send and readers cut or keep"),
    "target.backslash": (b"GET /a\\..\\b HTTP/1.1", "RFC 9112 §3.2",
        "Backslashes in the target, path separators to some servers and plain bytes to "
        "others, so that access rules on paths disagree"),
    "target.bad-percent": (b"GET /%zz HTTP/1.1", "RFC 9112 §3.2",
        "A percent sign not followed by two hex digits, which readers decode in different "
        "ways or refuse"),
}  # fmt: skip
_LEADING = {
    "leading-empty-line": (b"\r\n", "An empty line before the request line, which a server "
                           "should skip and a client must not send"),
    "leading-empty-lines": (b"\r\n" * 4, "Four empty lines before the request line, more "
                            "than the one a server is asked to skip"),
    "leading-blank-line": (b" \r\n", "A line holding a space before the request line, which "
                           "is neither an empty line nor a request line"),
}  # fmt: skip


def request_lines() -> Iterator[AmbiguousRequest]:
    """Odd request lines (a byte at each position is the ws family's)."""
    for slug, (line, reference, said) in _REQUEST_LINES.items():

        def build(host: bytes, rid: bytes, line: bytes = line) -> bytes:
            return request_bytes(host, rid, [], line=line.replace(b"{host}", host))

        yield entry(f"request-line.{slug}", "request-line", said + ".", reference, build)
    for slug, (lead, said) in _LEADING.items():

        def lead_build(host: bytes, rid: bytes, lead: bytes = lead) -> bytes:
            return lead + request_bytes(host, rid, [])

        yield entry(f"request-line.{slug}", "request-line", said + ".", "RFC 9112 §2.2", lead_build)


# slug: (request line, Host lines, reference, what is odd and why it matters)
_HOSTS: dict[str, tuple[bytes, list[bytes], str, str]] = {
    "missing": (b"GET / HTTP/1.1", [], "RFC 9112 §3.2",
        "An HTTP/1.1 request with no Host, which a server must refuse with 400 and a proxy "
        "may fill in from its own idea of the target"),
    "duplicate-equal": (b"GET / HTTP/1.1", [b"Host: {host}", b"Host: {host}"], "RFC 9112 §3.2",
        "Two equal Host lines, which a server must refuse with 400 even though they agree"),
    "duplicate-different.evil-first": (b"GET / HTTP/1.1",
        [b"Host: evil.example", b"Host: {host}"], "RFC 9112 §3.2",
        "Two different Host lines, evil.example first, so that a reader taking the first "
        "routes or caches the request under another host"),
    "duplicate-different.evil-last": (b"GET / HTTP/1.1",
        [b"Host: {host}", b"Host: evil.example"], "RFC 9112 §3.2",
        "Two different Host lines, evil.example last, so that a reader taking the last "
        "routes or caches the request under another host"),
    "duplicate-different.name-case": (b"GET / HTTP/1.1",
        [b"host: evil.example", b"Host: {host}"], "RFC 9110 §5.1",
        "Two Host lines in different case, so that a case-sensitive reader sees only one"),
    "list": (b"GET / HTTP/1.1", [b"Host: {host}, evil.example"], "RFC 9112 §3.2",
        "A Host value listing two hosts, which is no valid host and is read as either"),
    "empty": (b"GET / HTTP/1.1", [b"Host: "], "RFC 9112 §3.2",
        "An empty Host for a target that has an authority, which a server must refuse"),
    "userinfo": (b"GET / HTTP/1.1", [b"Host: evil.example@{host}"], "RFC 9110 §7.2",
        "Userinfo in Host, where readers take the host before or after the @ sign"),
    "with-path": (b"GET / HTTP/1.1", [b"Host: {host}/evil.example"], "RFC 9110 §7.2",
        "A path in the Host value, which a reader building a URL from it resolves elsewhere"),
    "absolute-form.conflicting": (b"GET http://{host}/ HTTP/1.1", [b"Host: evil.example"],
        "RFC 9112 §3.2.2", "An absolute-form target and a different Host, where a proxy must "
        "take the target's host and replace Host with it"),
    "absolute-form.userinfo": (b"GET http://evil.example@{host}/ HTTP/1.1", [b"Host: {host}"],
        "RFC 9110 §4.2.4", "Userinfo in an absolute-form target, which a recipient should "
        "treat as an error and a careless one takes for the host"),
    "absolute-form.no-host-field": (b"GET http://{host}/ HTTP/1.1", [], "RFC 9112 §3.2.2",
        "An absolute-form target with no Host field, which a proxy must forward with a Host "
        "made from the target"),
}  # fmt: skip


def hosts() -> Iterator[AmbiguousRequest]:
    """Host missing, repeated, conflicting with the target, or holding more than a host."""
    for slug, (line, lines, reference, said) in _HOSTS.items():

        def build(host: bytes, rid: bytes, line: bytes = line, lines: list[bytes] = lines) -> bytes:
            fill = [each.replace(b"{host}", host) for each in lines]
            line = line.replace(b"{host}", host)
            return request_bytes(host, rid, fill, line=line, with_host=False)

        odd = _EVIL if b"evil.example" in line + b"".join(lines) else b""
        yield entry(f"host.{slug}", "host", said + ".", reference, build, odd)


def sizes() -> Iterator[AmbiguousRequest]:
    """Valid heads near the 8 KiB limit many readers have, each framing its body after the
    long part: a reader that cuts the head there loses the framing and finds the smuggled
    request next."""
    forms = {
        "long-field-value": ([b"X-Long: " + b"a" * 8000], b"/", "A field value of 8,000 bytes"),
        "many-fields": ([b"X-Field-%03d: %d" % (i, i) for i in range(400)], b"/",
                        "Four hundred fields, over the field count many readers allow"),
        "long-field-name": ([b"X-" + b"n" * 8000 + b": 1"], b"/", "A field name of 8,000 bytes"),
        "long-target": ([], b"/" + b"a" * 8000, "A target of 8,000 bytes"),
    }  # fmt: skip
    for slug, (lines, target, said) in forms.items():

        def build(
            host: bytes, rid: bytes, lines: list[bytes] = lines, target: bytes = target
        ) -> bytes:
            body = smuggled(host, rid)
            line = b"POST " + target + b" HTTP/1.1"
            return request_bytes(
                host, rid, [*lines, b"Content-Length: %d" % len(body)], body, line=line
            )

        yield entry(
            f"head.{slug}",
            "head",
            f"{said} before Content-Length, valid HTTP/1.1 that a reader cutting the head at "
            "its limit frames with no body, reading the smuggled request as the next one.",
            "RFC 9110 §5.4",
            build,
            valid=True,
        )
