"""Where a request to the MITM goes: its target, tunnel and Host header, and ``upstreams``.

Rule kept here: every host a request names (its absolute-form URL, the CONNECT tunnel it came
through, its ``Host`` header) must be the same one, because that host picks the service and is
the only host the request may reach, or that host's ``upstreams`` entry (:class:`Upstreams`):
otherwise the MITM would be an open proxy. A target that is malformed or names two hosts
raises :class:`BadTarget`, whose message says what was wrong. Pure: no I/O; :func:`located`
remembers the answers for the targets a replay names again and again (a pure function's
results, bounded in number and size, so it changes no answer).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from .. import client

_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class BadTarget(ValueError):
    """A request target or ``Host`` header the MITM will not act on; the message says why."""


def split_authority(text: str, what: str, *, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` or ``[IPv6][:port]`` as (lower-case host, port); raises BadTarget.

    ``what`` names where the text came from, for the message; ``default_port=None`` means the
    port is required (a CONNECT target).
    """
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise BadTarget(f"{what} {text!r} has no closing ']' after its IPv6 address")
        if rest and not rest.startswith(":"):
            raise BadTarget(f"{what} {text!r} has {rest!r} after its IPv6 address")
        try:
            host = str(ipaddress.IPv6Address(address))
        except ValueError:
            raise BadTarget(f"{what} {text!r}: {address!r} is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise BadTarget(
                f"{what} {text!r} has more than one ':'; write an IPv6 address in brackets, "
                "like [::1]:8080"
            )
        if not host:
            raise BadTarget(f"{what} {text!r} names no host")
        if not _HOST_NAME.fullmatch(host):
            raise BadTarget(
                f"{what} {text!r}: {host!r} is not a host name (letters, digits, '-', '.', '_')"
            )
    if not port_text:  # "host:" means the default port (RFC 3986)
        if default_port is None:
            raise BadTarget(f"{what} {text!r} needs a port, like {host}:443")
        return host.lower(), default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise BadTarget(f"{what} {text!r}: port {port_text!r} is not a number from 1 to 65535")
    return host.lower(), int(port_text)


def locate(path: str, host_header: str | None, tunnel: str | None) -> client.Target:
    """Where a request goes: from its target, the tunnel it came through, its ``Host`` header.

    Every host these name must be the same one, since that host picks the service and is the
    only one the request may reach. Raises BadTarget saying what was malformed or differed.
    """
    named: list[tuple[str, str]] = []  # (where, host), each host the request names
    header = None
    if host_header is not None:
        header = split_authority(host_header, "the Host header", default_port=80)
    if tunnel is not None:
        tunnel_host, tunnel_port = split_authority(tunnel, "the CONNECT target", default_port=None)
        named.append(("the CONNECT target", tunnel_host))
    if path.startswith("/"):
        if tunnel is not None:
            target = client.Target("https", tunnel_host, tunnel_port, path)
        elif header is not None:
            target = client.Target("http", *header, path)
        else:
            raise BadTarget(
                f"the request {path!r} names no host: send a Host header, or the whole URL "
                "(http://host/path) as its target"
            )
    else:
        scheme, separator, rest = path.partition("://")
        scheme = scheme.lower()
        if not separator or scheme not in client.DEFAULT_PORTS:
            raise BadTarget(
                f"the request target {path[:200]!r} is neither a path (/...) nor an http:// "
                "or https:// URL"
            )
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        if end == 0:
            raise BadTarget(f"the URL {path[:200]!r} names no host; write it like http://host/path")
        host, port = split_authority(
            rest[:end], "the URL's host", default_port=client.DEFAULT_PORTS[scheme]
        )
        named.append(("the URL", host))
        remainder = rest[end:]
        target = client.Target(
            scheme, host, port, remainder if remainder.startswith("/") else "/" + remainder
        )
    if header is not None:
        named.append(("the Host header", header[0]))
    (first, host), *others = named
    for where, other in others:
        if other != host:
            raise BadTarget(
                f"{first} names {host!r} but {where} names {other!r}. The MITM sends a request "
                "only to the host that picks its service: name the same host in both."
            )
    return target


# located()'s memory: at most this many targets, each of at most _LOCATED_KEY_SIZE characters.
_LOCATED_LIMIT = 1024
_LOCATED_KEY_SIZE = 1024
_located: dict[tuple[str, str | None, str | None], tuple[client.Target, str]] = {}


def located(path: str, host_header: str | None, tunnel: str | None) -> tuple[client.Target, str]:
    """:func:`locate`'s target and its whole URL (``origin + request_target``), remembered:
    under a replay the same few targets come again and again. A target that raises is not
    remembered (it raises again); nor is a long one, so the memory stays small."""
    key = (path, host_header, tunnel)
    found = _located.get(key)
    if found is None:
        target = locate(path, host_header, tunnel)
        found = (target, target.origin + target.request_target)
        if len(path) + len(host_header or "") + len(tunnel or "") <= _LOCATED_KEY_SIZE:
            if len(_located) >= _LOCATED_LIMIT:
                _located.clear()  # a flood of new targets starts it afresh
            _located[key] = found
    return found


class Upstreams:
    """``upstreams=``: hosts whose traffic goes to another server, as ``{host: url}``.

    ``{"api.example.org": "http://127.0.0.1:8080/base"}`` sends ``GET /v1`` for
    api.example.org to 127.0.0.1:8080 as ``GET /base/v1``. The ``Host`` header is not
    rewritten: the MITM stands in for the real service, so the upstream sees what it would.
    """

    def __init__(self, upstreams: Mapping[str, str] | None) -> None:
        if upstreams is not None and not isinstance(upstreams, Mapping):
            raise TypeError(
                'upstreams is a mapping of host to URL, like {"api.example.org": '
                f'"http://127.0.0.1:8080"}}, not {type(upstreams).__name__}'
            )
        self._by_host = {
            host.lower(): client.Target.parse(url) for host, url in (upstreams or {}).items()
        }

    def destination(self, target: client.Target) -> tuple[client.Target, str]:
        """Where a request for ``target`` goes (its host's entry, or itself), and the
        request target to send there."""
        mapped = self._by_host.get(target.host)
        if mapped is None:
            return target, target.request_target
        return mapped, mapped.base_path + target.request_target
