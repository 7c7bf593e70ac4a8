"""Forwarding a request as an intermediary does: the one forwarding path of the project
(``handlers.route`` and the MITM's pass-through and recording use it).

Rule kept here: one hop-by-hop set, RFC 9110 §7.6.1's, plus whatever ``Connection``
nominates, dropped both ways; the body is framed anew by its length.
"""

from __future__ import annotations

from .client import Verify, exchange
from .crafting import Target
from .models import Headers, Request, Response
from .tls import CertificateAuthority

FORWARD_TIMEOUT = 30.0  # an intermediary waits longer for its upstream than a test's client

# RFC 9110 §7.6.1: fields that describe one connection, never forwarded by an intermediary
# (with those ``Connection`` nominates); Proxy-Authorization/-Authenticate are the proxy's own.
# Content-Length goes too: whoever forwards frames the body anew.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def end_to_end(headers: Headers) -> Headers:
    """``headers`` without the hop-by-hop fields, nor those ``Connection`` nominates."""
    nominated = {
        part.strip().lower()
        for value in headers.get_all("Connection")
        for part in value.split(",")
        if part.strip()
    }
    dropped = HOP_BY_HOP | nominated
    return Headers([(n, v) for n, v in headers.items() if n.lower() not in dropped])


def forward(
    request: Request,
    target: Target,
    *,
    path: str,
    host: str | None = None,
    timeout: float | None = FORWARD_TIMEOUT,
    verify: Verify = None,
    ca: CertificateAuthority | None = None,
) -> Response:
    """Forward ``request`` to ``target`` as an intermediary does, and return the answer.

    Hop-by-hop fields are dropped both ways (a Content-Length stays on the answer to a HEAD
    and on a 304, which carry no body), the body is framed anew by its length, ``path``
    is the request target upstream, and ``host`` (when given) replaces ``Host``. The answer's
    body is left for whoever sends it on to frame. Raises ``DeproxyError`` when no answer came.
    """
    headers = end_to_end(request.headers)
    if host is not None:
        headers.set("Host", host)
    if request.raw_body or request.method in ("POST", "PUT", "PATCH"):
        headers.add("Content-Length", str(len(request.raw_body)))
    upstream = Request(request.method, path, headers, request.raw_body)  # in our own HTTP/1.1
    answer = exchange(target, upstream, timeout=timeout, verify=verify, ca=ca)
    headers = end_to_end(answer.headers)
    if request.method == "HEAD" or answer.code == "304":  # no body: the length is information
        for value in answer.headers.get_all("Content-Length"):
            headers.add("Content-Length", value)
    return Response(answer.code, answer.message, headers, answer.raw_body, answer.http_version)
