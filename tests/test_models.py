"""The message model: pure values, no sockets."""

from __future__ import annotations

import gzip
import zlib

import pytest

from pytest_deproxy import Headers, Request, Response
from pytest_deproxy.models import decode_body


class TestHeaders:
    def test_lookup_is_case_insensitive_and_first_value_wins(self) -> None:
        headers = Headers([("X-Thing", "one"), ("x-thing", "two"), ("Other", "3")])
        assert headers["x-THING"] == "one"
        assert headers.get_all("X-Thing") == ["one", "two"]
        assert "other" in headers
        assert "missing" not in headers
        assert len(headers) == 3

    def test_wire_order_and_spelling_are_kept(self) -> None:
        headers = Headers({"b": "1"})
        headers.add("A", "2")
        headers.add("b", "3")
        assert headers.items() == [("b", "1"), ("A", "2"), ("b", "3")]
        assert list(headers) == ["b", "A", "b"]

    def test_missing_name_raises_key_error_and_get_defaults(self) -> None:
        headers = Headers()
        with pytest.raises(KeyError):
            headers["Host"]
        assert headers.get("Host") is None
        assert headers.get("Host", "fallback") == "fallback"

    def test_delete_all_and_set(self) -> None:
        headers = Headers([("Via", "a"), ("Host", "h"), ("via", "b")])
        headers.set("VIA", "c")
        assert headers.items() == [("VIA", "c"), ("Host", "h")]
        headers.delete_all("host")
        assert headers.items() == [("VIA", "c")]
        headers.delete_all("absent")
        assert len(headers) == 1

    def test_copies_from_headers_and_coerces_bytes_and_ints(self) -> None:
        original = Headers([(b"X-Bytes", b"caf\xe9"), ("Content-Length", 12)])  # type: ignore[list-item]
        copy = Headers(original)
        copy.add("New", "1")
        assert original.items() == [("X-Bytes", "café"), ("Content-Length", "12")]
        assert len(copy) == 3

    def test_bad_items_are_refused_with_a_reason(self) -> None:
        with pytest.raises(TypeError, match="mapping or"):
            Headers(["just-a-name"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="header value"):
            Headers([("Name", 1.5)])  # type: ignore[list-item]

    def test_has_token_reads_comma_separated_lists(self) -> None:
        headers = Headers([("Connection", "Upgrade, close")])
        assert headers.has_token("connection", "CLOSE")
        assert not headers.has_token("connection", "keep-alive")


class TestResponse:
    def test_code_is_a_string_and_message_defaults_to_the_reason_phrase(self) -> None:
        assert Response(404).code == "404"
        assert Response(404).message == "Not Found"
        assert Response("201", "Made").message == "Made"
        assert Response(606).message == ""

    @pytest.mark.parametrize("code", [99.5, "20", "abc", 1000])
    def test_a_bad_code_is_refused(self, code: object) -> None:
        with pytest.raises(ValueError, match="three digits"):
            Response(code)  # type: ignore[arg-type]

    def test_str_body_is_encoded_with_the_declared_charset(self) -> None:
        response = Response(200, headers={"Content-Type": "text/plain; charset=latin-1"}, body="é")
        assert response.raw_body == b"\xe9"
        assert Response(200, body="é").raw_body == "é".encode()


class TestRequest:
    def test_defaults(self) -> None:
        request = Request("GET", "/")
        assert (request.body, request.raw_body, request.http_version) == ("", b"", "1.1")

    def test_empty_method_is_refused(self) -> None:
        with pytest.raises(ValueError, match="method"):
            Request("", "/")

    def test_received_bodies_are_decoded(self) -> None:
        request = Request.received(
            "POST", "/", Headers({"Content-Encoding": "gzip"}), gzip.compress(b"hello"), "1.1"
        )
        assert request.body == "hello"
        assert request.raw_body == gzip.compress(b"hello")


class TestDecodeBody:
    def test_text_without_content_type_is_str(self) -> None:
        assert decode_body(b"plain", Headers()) == "plain"

    def test_binary_content_type_stays_bytes(self) -> None:
        assert decode_body(b"\x00\x01", Headers({"Content-Type": "image/png"})) == b"\x00\x01"

    def test_undecodable_text_stays_bytes(self) -> None:
        assert (
            decode_body(b"\xff\xfe\xfa", Headers({"Content-Type": "text/plain"})) == b"\xff\xfe\xfa"
        )

    def test_json_and_declared_charset(self) -> None:
        headers = Headers({"Content-Type": "application/problem+json; charset=iso-8859-1"})
        assert decode_body(b'{"a": "\xe9"}', headers) == '{"a": "é"}'

    @pytest.mark.parametrize(
        "encode",
        [zlib.compress, lambda data: zlib.compress(data)[2:-4]],
        ids=["zlib-wrapped", "raw-deflate"],
    )
    def test_deflate_both_flavours(self, encode) -> None:  # type: ignore[no-untyped-def]
        assert (
            decode_body(encode(b"squeezed"), Headers({"Content-Encoding": "deflate"})) == "squeezed"
        )

    def test_corrupt_gzip_is_kept_as_raw_bytes(self) -> None:
        assert decode_body(b"not gzip", Headers({"Content-Encoding": "gzip"})) == b"not gzip"
