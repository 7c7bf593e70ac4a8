"""The PROXY protocol header, read and written with no socket."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_deproxy.proxyproto import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    could_begin,
    encode,
    read,
)

SPEC_V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"  # the specification's example


def test_the_specifications_v1_example_reads_as_written() -> None:
    header, size = read(SPEC_V1 + b"GET / HTTP/1.1\r\n") or pytest.fail("not read")

    assert size == len(SPEC_V1)
    assert (header.version, header.command) == (1, "PROXY")
    assert (header.source, header.destination) == ("192.168.0.1:56324", "192.168.0.11:443")
    assert encode(header) == SPEC_V1


def test_v2_by_hand_ipv4_with_a_tlv() -> None:
    # signature, v2 PROXY, INET over STREAM, 12 address bytes + one TLV (type 0x01, "h2")
    data = (
        V2_SIGNATURE
        + bytes([0x21, 0x11, 0x00, 12 + 5])
        + bytes([10, 0, 0, 1, 10, 0, 0, 2])
        + (1234).to_bytes(2, "big")
        + (80).to_bytes(2, "big")
        + bytes([0x01, 0x00, 0x02])
        + b"h2"
    )
    header, size = read(data + b"rest") or pytest.fail("not read")

    assert size == len(data)
    assert header == ProxyHeader(2, "PROXY", "10.0.0.1:1234", "10.0.0.2:80", {1: b"h2"})
    assert encode(header) == data


@pytest.mark.parametrize(
    "header",
    [
        ProxyHeader(1, source="[2001:db8::1]:1", destination="[::1]:65535"),
        ProxyHeader(1),
        ProxyHeader(2, "LOCAL"),
        ProxyHeader(2, source="[::1]:5", destination="[::2]:6", tlvs={0x20: b"\x00" * 300}),
    ],
    ids=["v1-ipv6", "v1-unknown", "v2-local", "v2-ipv6-big-tlv"],
)
def test_headers_round_trip(header: ProxyHeader) -> None:
    data = encode(header)
    assert read(data) == (header, len(data))


@pytest.mark.parametrize(
    "header", [SPEC_V1, encode(ProxyHeader(2, source="1.2.3.4:5", destination="6.7.8.9:10"))]
)
def test_an_incomplete_header_is_not_yet_read(header: bytes) -> None:
    for end in range(1, len(header)):
        assert read(header[:end]) is None, f"read from {end} bytes"
        assert could_begin(header[:end])
    assert read(header) is not None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "did not begin with a PROXY header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "not b'PROXY TCP4"),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "not a TCP4 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF-ended line"),
        (b"PROXY " + b"x" * 120, "at most 107 bytes"),
        (V2_SIGNATURE + bytes([0x31, 0x11, 0, 0]), "version/command"),
        (V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + b"\x00" * 4, "needs 12 address bytes"),
        (V2_SIGNATURE + bytes([0x21, 0x00, 0, 2]) + b"\x01\x00", "inside a TLV"),
        (V2_SIGNATURE + bytes([0x21, 0x00, 0, 4]) + b"\x01\x00\x05x", "cut short"),
    ],
)
def test_a_bad_header_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError, match=reason.replace("(", r"\(")):
        read(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": 3},
        {"version": 1, "command": "LOCAL"},
        {"source": "1.2.3.4:5"},
        {"source": "example.org:5", "destination": "1.2.3.4:5"},
        {"version": 1, "tlvs": {1: b""}},
    ],
)
def test_a_header_that_cannot_exist_is_refused_when_made(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        ProxyHeader(**kwargs)  # type: ignore[arg-type]


addresses_v4 = st.builds(
    lambda ip, port: f"{ipaddress.IPv4Address(ip)}:{port}",
    st.integers(0, 2**32 - 1),
    st.integers(0, 65535),
)
addresses_v6 = st.builds(
    lambda ip, port: f"[{ipaddress.IPv6Address(ip)}]:{port}",
    st.integers(0, 2**128 - 1),
    st.integers(0, 65535),
)


@given(
    st.one_of(st.tuples(addresses_v4, addresses_v4), st.tuples(addresses_v6, addresses_v6)),
    st.dictionaries(st.integers(0, 255), st.binary(max_size=40), max_size=4),
    st.integers(1, 2),
)
def test_any_header_round_trips(
    pair: tuple[str, str], tlvs: dict[int, bytes], version: int
) -> None:
    header = ProxyHeader(version, "PROXY", *pair, tlvs=tlvs if version == 2 else {})
    data = encode(header)
    assert read(data + b"GET /") == (header, len(data))
