"""The PROXY protocol (haproxy's ``send-proxy`` and ``send-proxy-v2``): the header a proxy
sends before the first byte of a connection to say who its client really is.

Rules kept here: pure, no socket. Reading is incremental and strict: :func:`read` says "not
yet" (``None``) while the bytes so far could still begin a header, and raises
:class:`ProxyHeaderError` saying what is wrong as soon as they cannot; it never reads past the
header. Writing produces exactly what the specification allows (version 1 is text of at most
107 bytes, version 2 a binary block with optional TLVs).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from .errors import ProtocolError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_SIZE = 107  # the specification's bound, CRLF included
_V2_FIXED = len(V2_SIGNATURE) + 4  # signature, version and command, family, length
_V2_COMMANDS = {0: "LOCAL", 1: "PROXY"}
_V2_INET, _V2_INET6, _V2_UNIX = 0x1, 0x2, 0x3
_V2_ADDRESS_SIZES = {_V2_INET: 12, _V2_INET6: 36, _V2_UNIX: 216}


class ProxyHeaderError(ProtocolError):
    """Bytes that begin a connection are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """A PROXY protocol header: ``version`` 1 or 2, ``command`` ``"PROXY"`` or ``"LOCAL"``
    (version 2 only), ``source`` and ``destination`` as ``"host:port"`` (``None`` when the
    header names no addresses: v1 ``UNKNOWN``, v2 ``LOCAL`` or an unspecified family), and
    ``tlvs``, version 2's extensions by type number."""

    version: int = 1
    command: str = "PROXY"
    source: str | None = None
    destination: str | None = None
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"a PROXY header is version 1 or 2, not {self.version!r}")
        if self.command not in ("PROXY", "LOCAL") or (
            self.version == 1 and self.command != "PROXY"
        ):
            raise ValueError(f"command {self.command!r}: v1 has PROXY only, v2 PROXY or LOCAL")
        if (self.source is None) != (self.destination is None):
            raise ValueError("give both source and destination, or neither")
        if self.version == 1 and self.tlvs:
            raise ValueError("TLVs exist only in version 2 headers")
        for address in (self.source, self.destination):
            if address is not None:
                split_address(address)


def split_address(address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``"1.2.3.4:80"`` or ``"[::1]:80"`` as an IP address and a port."""
    host, colon, port = address.rpartition(":")
    try:
        if not colon or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"no port from 0 to 65535 in {address!r}")
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")), int(port)
    except ValueError as exc:
        raise ValueError(
            f"a PROXY header address is 'ip:port' or '[ipv6]:port', not {address!r} ({exc})"
        ) from None


def _join(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def encode(header: ProxyHeader) -> bytes:
    """The bytes of ``header``, as a proxy sends them."""
    if header.version == 1:
        return _encode_v1(header)
    return _encode_v2(header)


def _encode_v1(header: ProxyHeader) -> bytes:
    if header.source is None or header.destination is None:
        return b"PROXY UNKNOWN\r\n"
    (source, source_port), (destination, destination_port) = (
        split_address(header.source),
        split_address(header.destination),
    )
    if source.version != destination.version:
        raise ValueError("a v1 PROXY header's two addresses are of one IP version")
    family = "TCP4" if source.version == 4 else "TCP6"
    line = f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n"
    return line.encode("ascii")


def _encode_v2(header: ProxyHeader) -> bytes:
    command = 0x20 | (1 if header.command == "PROXY" else 0)
    if header.source is None or header.destination is None:
        family, addresses = 0x00, b""
    else:
        (source, source_port), (destination, destination_port) = (
            split_address(header.source),
            split_address(header.destination),
        )
        if source.version != destination.version:
            raise ValueError("a v2 PROXY header's two addresses are of one IP version")
        family = (_V2_INET if source.version == 4 else _V2_INET6) << 4 | 0x1  # over TCP
        addresses = source.packed + destination.packed
        addresses += struct.pack("!HH", source_port, destination_port)
    tlvs = b"".join(
        struct.pack("!BH", kind, len(value)) + value for kind, value in header.tlvs.items()
    )
    body = addresses + tlvs
    if len(body) > 0xFFFF:
        raise ValueError(f"a v2 PROXY header holds at most 65535 bytes, not {len(body)}")
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(body)) + body


def v2_size(data: bytes) -> int:
    """The whole size of the v2 header whose fixed part ``data`` begins with."""
    (length,) = struct.unpack_from("!H", data, len(V2_SIGNATURE) + 2)
    return _V2_FIXED + int(length)


def could_begin(data: bytes) -> bool:
    """Whether ``data`` is, or may grow into, the start of a PROXY header."""
    return any(data[: len(prefix)] == prefix[: len(data)] for prefix in (V1_PREFIX, V2_SIGNATURE))


def read(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` and its size; ``None`` while it is incomplete.

    Raises :class:`ProxyHeaderError` when ``data`` cannot begin a valid header.
    """
    if not could_begin(data):
        raise ProxyHeaderError(f"the connection did not begin with a PROXY header: {data[:16]!r}")
    if data.startswith(V1_PREFIX):
        return _read_v1(data)
    if len(data) < _V2_FIXED:
        return None
    return _read_v2(data)


def _read_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX_SIZE)
    if end < 0:
        if len(data) >= V1_MAX_SIZE or b"\n" in data[:V1_MAX_SIZE]:
            raise ProxyHeaderError(
                f"a v1 PROXY header is one CRLF-ended line of at most {V1_MAX_SIZE} bytes"
            )
        return None
    fields = data[:end].decode("ascii", "replace").split(" ")
    size = end + 2
    if fields[1:2] == ["UNKNOWN"]:
        return ProxyHeader(1), size
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(
            "a v1 PROXY header is 'PROXY TCP4|TCP6 source destination sport dport' or "
            f"'PROXY UNKNOWN', not {data[:end]!r}"
        )
    _, family, source, destination, source_port, destination_port = fields
    try:
        header = ProxyHeader(
            1,
            source=_v1_address(source, source_port, family),
            destination=_v1_address(destination, destination_port, family),
        )
    except ValueError as exc:
        raise ProxyHeaderError(f"bad v1 PROXY header {data[:end]!r}: {exc}") from None
    return header, size


def _v1_address(host: str, port: str, family: str) -> str:
    address = ipaddress.ip_address(host)
    if (address.version == 4) != (family == "TCP4"):
        raise ValueError(f"{host} is not a {family} address")
    if not port.isdigit() or port != str(int(port)) or int(port) > 65535:
        raise ValueError(f"{port!r} is not a port")
    return _join(address, int(port))


def _read_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    version_command, family, length = struct.unpack_from("!BBH", data, len(V2_SIGNATURE))
    if version_command >> 4 != 2 or version_command & 0xF not in _V2_COMMANDS:
        raise ProxyHeaderError(f"bad v2 PROXY header version/command byte 0x{version_command:02x}")
    size = _V2_FIXED + length
    if len(data) < size:
        return None
    body = data[_V2_FIXED:size]
    command = _V2_COMMANDS[version_command & 0xF]
    address_family = family >> 4
    address_size = _V2_ADDRESS_SIZES.get(address_family, 0)
    if len(body) < address_size:
        raise ProxyHeaderError(
            f"a v2 PROXY header of family 0x{family:02x} needs {address_size} address bytes, "
            f"has {len(body)}"
        )
    source = destination = None
    if command == "PROXY" and address_family in (_V2_INET, _V2_INET6):
        width = 4 if address_family == _V2_INET else 16
        source_ip = ipaddress.ip_address(body[:width])
        destination_ip = ipaddress.ip_address(body[width : 2 * width])
        source_port, destination_port = struct.unpack_from("!HH", body, 2 * width)
        source, destination = _join(source_ip, source_port), _join(destination_ip, destination_port)
    return ProxyHeader(2, command, source, destination, _read_tlvs(body[address_size:])), size


def _read_tlvs(data: bytes) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyHeaderError("a v2 PROXY header ends inside a TLV's type and length")
        kind, length = struct.unpack_from("!BH", data, offset)
        value = data[offset + 3 : offset + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError(f"a v2 PROXY TLV of type 0x{kind:02x} is cut short")
        tlvs[kind] = value
        offset += 3 + length
    return tlvs
