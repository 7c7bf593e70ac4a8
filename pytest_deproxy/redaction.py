"""Secrets out of recordings and HAR files: headers, query parameters and JSON/form bodies.

Rule kept here: pure functions over values, no I/O. A secret is found by its *name* (a header
name, a query parameter or a JSON/form key), compared case-insensitively with shell-style
patterns (``*-token``), and its value is replaced by :data:`REDACTED`. Everything else is kept
byte for byte: a URL or a form body is rewritten only where a value is hidden, and a JSON body
is written again only when it held a secret. Matching treats the marker as "any value"
(:func:`wildcard_equal` and friends), so a redacted recording still replays.

Cookies keep their names and attributes (``session=<redacted>; Path=/; HttpOnly``). When a
recording is replayed, a redacted ``Set-Cookie`` value becomes ``deproxy-redacted-N``
(:func:`replayable_set_cookies`): a client stores a cookie it can send back, never the marker.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from .models import Headers

REDACTED = "<redacted>"
REPLAYED_COOKIE_VALUE = "deproxy-redacted-{number}"

DEFAULT_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "*-token",  # X-Auth-Token, PRIVATE-TOKEN, X-Amz-Security-Token, X-CSRF-Token
    "*-key",  # X-Api-Key, X-Functions-Key
    "*api-key*",
    "*apikey*",
    "*secret*",
    "*password*",
    "*session*",
    "*signature*",
    "*credential*",
)
DEFAULT_QUERY_KEYS = (
    "token",
    "*_token",  # access_token, refresh_token, id_token
    "*-token",  # X-Amz-Security-Token
    "*accesstoken",
    "api_key",
    "api-key",
    "apikey",
    "key",  # Google's ?key=AIza...
    "sig",
    "signature",
    "*_signature",
    "*-signature",  # X-Amz-Signature
    "*-credential",  # X-Amz-Credential
    "secret",
    "*_secret",  # client_secret
    "clientsecret",
    "password",
    "passwd",
    "*_password",
    "session",
    "sessionid",
)
# As for query parameters, but not a bare "key": JSON documents use it for plain data.
DEFAULT_BODY_KEYS = (
    *(key for key in DEFAULT_QUERY_KEYS if key != "key"),
    "access_key",
    "secret_key",
    "private_key",
    "refreshtoken",
    "idtoken",
)

_COOKIE_PAIR = re.compile(r"(?P<name>[^=;,\s]+)\s*=\s*(?P<value>[^;]*)")
_FORM_TYPE = "application/x-www-form-urlencoded"
_ENCODED_MARKER = "%3credacted%3e"


def _names(names: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)):
        raise TypeError(f"{what} takes a list of names, not one string: [{names!r}]")
    listed = tuple(names)
    for name in listed:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what} takes non-empty strings (name patterns), not {name!r}")
    return tuple(name.lower() for name in listed)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in patterns)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _is_form(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == _FORM_TYPE


@dataclass(frozen=True)
class Redaction:
    """Which names hide their values. The defaults cover the usual credentials::

    >>> r = Redaction().adding(headers=["X-Tenant"])
    >>> r.url("https://h/p?api_key=k&page=2")
    'https://h/p?api_key=<redacted>&page=2'
    >>> r.headers(Headers({"X-Tenant": "t", "Accept": "*/*"})).items()
    [('X-Tenant', '<redacted>'), ('Accept', '*/*')]
    """

    header_names: tuple[str, ...] = DEFAULT_HEADERS
    query_keys: tuple[str, ...] = DEFAULT_QUERY_KEYS
    body_keys: tuple[str, ...] = DEFAULT_BODY_KEYS

    def adding(
        self,
        headers: Iterable[str] = (),
        query: Iterable[str] = (),
        body_keys: Iterable[str] = (),
    ) -> Redaction:
        """These defaults plus more names (patterns such as ``X-*-Auth`` are allowed)."""
        return Redaction(
            (*self.header_names, *_names(headers, "redact_headers")),
            (*self.query_keys, *_names(query, "redact_query")),
            (*self.body_keys, *_names(body_keys, "redact_body_keys")),
        )

    def hides_header(self, name: str) -> bool:
        return _matches(name, self.header_names)

    def headers(self, headers: Headers) -> Headers:
        """``headers`` with secret values replaced; cookies keep their names and attributes."""
        redacted = Headers()
        for name, value in headers.items():
            if self.hides_header(name):
                value = _hidden_value(name, value)
            redacted.add(name, value)
        return redacted

    def url(self, url: str) -> str:
        """``url`` with the values of secret query parameters replaced, the rest unchanged."""
        base, mark, query = url.partition("?")
        if not mark:
            return url
        query, hash_mark, fragment = query.partition("#")
        pieces = []
        for piece in query.split("&"):
            key, equals, _ = piece.partition("=")
            if equals and _matches(unquote_plus(key), self.query_keys):
                piece = f"{key}={REDACTED}"
            pieces.append(piece)
        return f"{base}?{'&'.join(pieces)}{hash_mark}{fragment}"

    def body(self, raw: bytes, headers: Headers) -> bytes:
        """A JSON or form body without its secrets; other bodies, and encoded ones, unchanged."""
        coding = headers.get("Content-Encoding") or "identity"
        if not raw or coding.strip().lower() != "identity":
            return raw
        content_type = headers.get("Content-Type") or ""
        if _is_json(content_type):
            try:
                document = json.loads(raw)
            except (ValueError, RecursionError):
                return raw
            hidden, changed = self._json(document)
            return json.dumps(hidden, ensure_ascii=False).encode("utf-8") if changed else raw
        if _is_form(content_type):
            return self._form(raw)
        return raw

    def text(self, text: str, content_type: str) -> str:
        """As :meth:`body`, for a body already decoded to text (HAR shows decoded bodies)."""
        if _is_json(content_type):
            try:
                document = json.loads(text)
            except (ValueError, RecursionError):
                return text
            hidden, changed = self._json(document)
            return json.dumps(hidden, ensure_ascii=False) if changed else text
        if _is_form(content_type):
            return self._form(text.encode("utf-8", "surrogateescape")).decode(
                "utf-8", "surrogateescape"
            )
        return text

    def _json(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, dict):
            changed = False
            result: dict[str, Any] = {}
            for key, item in value.items():
                if _matches(key, self.body_keys):
                    result[key], changed = REDACTED, True
                else:
                    result[key], inner = self._json(item)
                    changed = changed or inner
            return result, changed
        if isinstance(value, list):
            items = [self._json(item) for item in value]
            return [item for item, _ in items], any(inner for _, inner in items)
        return value, False

    def _form(self, raw: bytes) -> bytes:
        pieces = []
        for piece in raw.split(b"&"):
            key, equals, _ = piece.partition(b"=")
            if equals and _matches(unquote_plus(key.decode("latin-1")), self.body_keys):
                piece = key + b"=" + REDACTED.encode("ascii")
            pieces.append(piece)
        return b"&".join(pieces)


DEFAULT = Redaction()


def _hidden_value(name: str, value: str) -> str:
    """The marker, or for cookies each value hidden and names and attributes kept."""
    lowered = name.lower()
    if lowered not in ("cookie", "set-cookie"):
        return REDACTED
    count = 0 if lowered == "cookie" else 1  # Set-Cookie: only name=value, not Path=/...
    hidden, found = _COOKIE_PAIR.subn(lambda m: f"{m['name']}={REDACTED}", value, count=count)
    return hidden if found else REDACTED


# -- replaying what was redacted ----------------------------------------------------------


def replayable_set_cookies(headers: Headers) -> Headers:
    """``Set-Cookie: name=<redacted>; ...`` replayed as ``name=deproxy-redacted-N; ...``."""
    if not any(REDACTED in value for value in headers.get_all("Set-Cookie")):
        return headers
    replayed = Headers()
    number = 0
    for name, value in headers.items():
        if name.lower() == "set-cookie" and REDACTED in value:
            number += 1
            value = value.replace(REDACTED, REPLAYED_COOKIE_VALUE.format(number=number))
        replayed.add(name, value)
    return replayed


def wildcard_equal(recorded: str, received: str) -> bool:
    """``received`` equals ``recorded``, where each marker in ``recorded`` stands for any text."""
    if REDACTED not in recorded:
        return recorded == received
    pattern = "(?s:.*)".join(re.escape(part) for part in recorded.split(REDACTED))
    return re.fullmatch(pattern, received) is not None


def _pairs_equal(recorded: list[tuple[str, str]], received: list[tuple[str, str]]) -> bool:
    return len(recorded) == len(received) and all(
        mine[0] == theirs[0] and (mine[1] == REDACTED or mine[1] == theirs[1])
        for mine, theirs in zip(recorded, received, strict=True)
    )


def holds_marker(url: str) -> bool:
    """Whether a recorded URL has a redacted query parameter (written plain or %-encoded)."""
    return REDACTED in url or _ENCODED_MARKER in url.lower()


def url_equal(recorded: str, received: str) -> bool:
    """Equal URLs, a query parameter recorded as the marker matching any value."""
    if recorded == received:
        return True
    if not holds_marker(recorded):
        return False
    base, _, query = recorded.partition("?")
    their_base, _, their_query = received.partition("?")
    if base != their_base:
        return False
    mine = [_query_pair(piece) for piece in query.split("&")]
    theirs = [_query_pair(piece) for piece in their_query.split("&")]
    return len(mine) == len(theirs) and all(
        a[0] == b[0] and (a[2] == REDACTED or a[1] == b[1])
        for a, b in zip(mine, theirs, strict=True)
    )


def _query_pair(piece: str) -> tuple[str, str, str]:
    """The raw key, the raw value and the value decoded (to spot the marker however written)."""
    key, _, value = piece.partition("=")
    return key, value, unquote_plus(value)


def _json_equal(recorded: Any, received: Any) -> bool:
    if recorded == REDACTED:
        return True
    if isinstance(recorded, dict):
        return (
            isinstance(received, dict)
            and recorded.keys() == received.keys()
            and all(_json_equal(recorded[key], received[key]) for key in recorded)
        )
    if isinstance(recorded, list):
        return (
            isinstance(received, list)
            and len(recorded) == len(received)
            and all(_json_equal(a, b) for a, b in zip(recorded, received, strict=True))
        )
    return bool(recorded == received) and type(recorded) is type(received)


def body_equal(recorded: bytes, received: bytes) -> bool:
    """Equal bodies; in a JSON or form body, a value recorded as the marker matches any value."""
    if recorded == received:
        return True
    if REDACTED.encode("ascii") not in recorded:
        return False
    try:
        return _json_equal(json.loads(recorded), json.loads(received))
    except (ValueError, RecursionError):
        pass
    try:
        mine = parse_qsl(recorded.decode("utf-8"), keep_blank_values=True)
        theirs = parse_qsl(received.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return _pairs_equal(mine, theirs)
