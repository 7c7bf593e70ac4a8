"""The conformance corpus and its classification: the corpus is large, stable and well
formed, and the classification decides, from bytes alone, rejected / normalised /
forwarded-ambiguous / dropped — never ambiguous for what a normalising proxy forwards."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_deproxy.conformance.classify import VERDICTS, Classification, classify
from pytest_deproxy.conformance.corpus import (
    MAX_SIZE,
    AmbiguousRequest,
    corpus,
    generate,
    smuggled,
)
from pytest_deproxy.framing import ChunkedBody, Unframeable, read_request_head, request_framing

HOST = "127.0.0.1:8080"
RID = "0123456789ab-00000001"  # the shape of client.new_request_id()
SMUGGLED = f"GET /smuggled-{RID}".encode()
CORPUS = corpus()
BY_ID = {request.id: request for request in CORPUS}
FAMILIES = sorted({request.family for request in CORPUS})
SMUGGLING = [request for request in CORPUS if b"/smuggled-{request_id}" in request.data]


def rendered(request: AmbiguousRequest) -> bytes:
    return request.render(HOST, RID)


def ids(requests: list[AmbiguousRequest]) -> list[str]:
    return [request.id for request in requests]


# ------------------------------------------------------------ a normalising proxy, in memory

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
               "transfer-encoding", "content-length", "host"}  # fmt: skip
_HOST_VALUE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::[0-9]*)?")
_URI_BYTE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _canonical_target(target: str) -> str:
    raw = target.encode("iso-8859-1")
    out = bytearray()
    for index, byte in enumerate(raw):
        escape = raw[index : index + 1] == b"%" and re.fullmatch(
            rb"[0-9A-Fa-f]{2}", raw[index + 1 : index + 3]
        )
        out += bytes([byte]) if _URI_BYTE.fullmatch(bytes([byte])) or escape else b"%%%02X" % byte
    return out.decode()


def normalising_proxy(data: bytes) -> tuple[int, list[bytes]]:
    """What a careful proxy does: frame the request with framing.py, refuse what it cannot
    frame or what RFC 9112 says to refuse (Host missing, repeated or invalid; a target in no
    form it forwards), else forward one request in canonical form and close the connection."""
    try:
        head = read_request_head(data, 64 * 1024)
        if head is None:
            return 400, []
        framing = request_framing(head)
        if framing.chunked:
            chunked = ChunkedBody()
            chunked.feed(data[head.size :])
            if not chunked.done:
                return 400, []
            body = bytes(chunked.data)
        else:
            body = data[head.size : head.size + framing.content_length]
            if len(body) < framing.content_length:
                return 400, []
    except Unframeable as exc:
        return exc.status, []
    hosts = [value for name, value in head.fields if name.lower() == "host"]
    target = head.target
    absolute = re.fullmatch(r"http://([^/?#]*)([^#]*)(?:#.*)?", target)
    if absolute:
        hosts, target = [absolute.group(1)], absolute.group(2) or "/"
    if not target.startswith("/") or len(hosts) != 1 or not _HOST_VALUE.fullmatch(hosts[0]):
        return 400, []
    lines = [f"{head.method} {_canonical_target(target)} HTTP/1.1", f"Host: {hosts[0]}"]
    for name, value in head.fields:
        if name.lower() not in _HOP_BY_HOP and "_" not in name:
            lines.append(f"{name}: {_CTL.sub(' ', value)}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return 200, ["".join(line + "\r\n" for line in lines).encode("iso-8859-1") + b"\r\n" + body]


# ------------------------------------------------------------------------------- the corpus


class TestCorpus:
    def test_it_holds_over_300_requests_in_every_family(self) -> None:
        families = Counter(request.family for request in CORPUS)
        assert len(CORPUS) >= 300, families
        assert set(families) == {"ws", "eol", "cl", "te", "chunk", "request-line", "host", "head"}
        assert min(families.values()) >= 4, families

    def test_ids_and_bytes_are_unique(self) -> None:
        assert len(BY_ID) == len(CORPUS)
        duplicates = [data for data, n in Counter(r.data for r in CORPUS).items() if n > 1]
        assert duplicates == []

    def test_two_generations_are_the_same(self) -> None:
        again = generate()
        assert again is not CORPUS
        assert [(r.id, r.data, r.odd, r.description) for r in again] == [
            (r.id, r.data, r.odd, r.description) for r in CORPUS
        ]
        assert [r.render(HOST, RID) for r in again] == [rendered(r) for r in CORPUS]

    @pytest.mark.parametrize(
        "request_id",
        ["te.obs-fold-value", "cl.plus-sign", "ws.before-colon.transfer-encoding.sp",
         "eol.bare-lf.request-line", "chunk.size.0x-prefix", "host.absolute-form.conflicting",
         "request-line.version.http-1-2", "head.many-fields", "cl.with-te.cl-first"],
    )  # fmt: skip
    def test_the_ids_are_readable_and_kept(self, request_id: str) -> None:
        assert BY_ID[request_id].family == request_id.split(".")[0]

    def test_every_request_carries_the_tracking_line(self) -> None:
        tracking = re.compile(rb"(?:^|[\r\n])Deproxy-Request-ID: \{request_id\}[\r\n]")
        assert [r.id for r in CORPUS if not tracking.search(r.data)] == []

    def test_every_request_not_about_host_carries_the_host_line(self) -> None:
        host_line = re.compile(rb"[\r\n]Host: \{host\}[\r\n]")
        about_host = re.compile(r"^host\.|\.host\.")
        missing = [r.id for r in CORPUS if not about_host.search(r.id) and not host_line.search(r.data)]  # fmt: skip
        assert missing == []
        assert [r.id for r in CORPUS if b"{host}" not in r.data] == ["host.missing", "host.empty"]

    def test_every_reference_names_an_rfc_section(self) -> None:
        section = re.compile(r"RFC 911[02] §[1-9][0-9]*(?:\.[0-9]+)*")
        assert [r.id for r in CORPUS if not section.fullmatch(r.reference)] == []

    def test_every_description_is_one_sentence(self) -> None:
        odd = [r.id for r in CORPUS if not r.description.endswith(".") or ". " in r.description]
        assert odd == []
        assert all(r.description[0].isupper() and len(r.description) > 30 for r in CORPUS)

    def test_every_request_is_under_16_kib_with_long_values(self) -> None:
        sizes = {r.id: len(r.render("h" * 100, "i" * 100)) for r in CORPUS}
        assert max(sizes.values()) < MAX_SIZE, max(sizes.items(), key=lambda item: item[1])

    def test_render_fills_the_placeholders_and_recounts_the_lengths(self) -> None:
        for request in CORPUS:
            for host, rid in ((HOST, RID), ("a.example:1", "x"), ("h" * 90, "r" * 90)):
                data = request.render(host, rid)
                assert b"{host}" not in data and b"{request_id}" not in data, request.id
        short, long = (BY_ID["cl.with-te.cl-first"].render(h, RID) for h in ("a", "b" * 80))
        for data in (short, long):
            head = read_request_head(data, 64 * 1024)
            assert head is not None
            length = int({k.lower(): v for k, v in head.fields}["content-length"])
            assert length == len(data) - head.size  # the CL covers the smuggled request exactly

    def test_the_framing_reads_the_same_for_any_length_of_values(self) -> None:
        for request in CORPUS:
            verdicts = {
                (c.verdict, len(c.reasons))
                for c in (
                    classify(request, 200, [request.render(host, rid)])
                    for host, rid in ((HOST, RID), ("a:1", "x"), ("h" * 90 + ":65535", "r" * 90))
                )
            }
            assert len(verdicts) == 1, (request.id, verdicts)

    @pytest.mark.parametrize(
        ("host", "rid"), [("a b", RID), (HOST, ""), (HOST, "x\r\n"), ("é", RID)]
    )
    def test_render_refuses_values_that_would_break_the_head(self, host: str, rid: str) -> None:
        with pytest.raises(ValueError, match="must be visible ASCII"):
            BY_ID["cl.plus-sign"].render(host, rid)

    def test_a_request_checks_its_id_and_reference(self) -> None:
        with pytest.raises(ValueError, match="lower-case words"):
            AmbiguousRequest("Bad Id", "x", "Odd.", "RFC 9112 §6.3", b"")
        with pytest.raises(ValueError, match=r"like 'RFC 9112 §6\.3'"):
            AmbiguousRequest("x.y", "x", "Odd.", "somewhere", b"")
        with pytest.raises(ValueError, match="odd must be a regular expression in bytes"):
            AmbiguousRequest("x.y", "x", "Odd.", "RFC 9112 §6.3", b"", odd=b"(unclosed")


# ---------------------------------------------------------------------------- classification

HAND_NORMALISED = {  # one per family: what a normalising proxy forwards, written by hand
    "ws.before-colon.content-length.sp": b"POST / HTTP/1.1\r\nHost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nContent-Length: %(n)d\r\n\r\n%(s)s",
    "eol.bare-lf.every-line": b"POST / HTTP/1.1\r\nHost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nX-Odd: 1\r\nContent-Length: %(n)d\r\n\r\n%(s)s",
    "cl.duplicate-equal": b"POST / HTTP/1.1\r\nhost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\ncontent-length: %(n)d\r\n\r\n%(s)s",
    "te.case-upper": b"POST / HTTP/1.1\r\nHost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk.line.bare-lf": b"POST / HTTP/1.1\r\nHost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nTransfer-Encoding: chunked\r\n\r\n%(x)x\r\n\r\n%(s)s\r\n0\r\n\r\n",
    "request-line.version.http-1-2": b"GET / HTTP/1.1\r\nHost: %(h)s\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nVia: 1.2 proxy\r\n\r\n",
    "host.absolute-form.conflicting": b"GET / HTTP/1.1\r\nDeproxy-Request-ID: %(r)s\r\n"
    b"Accept: */*\r\nHost: %(h)s\r\n\r\n",
    "head.many-fields": None,  # valid as it is: forwarded unchanged
}


def hand_normalised(request_id: str) -> bytes:
    template = HAND_NORMALISED[request_id]
    if template is None:
        return rendered(BY_ID[request_id])
    hidden = smuggled(HOST.encode(), RID.encode())
    values = {b"h": HOST.encode(), b"r": RID.encode(), b"s": hidden, b"n": len(hidden),
              b"x": len(hidden) + 2}  # fmt: skip
    return template % values


class TestClassification:
    def test_every_family_has_a_hand_written_normalised_forwarding(self) -> None:
        assert sorted({BY_ID[i].family for i in HAND_NORMALISED}) == FAMILIES

    @pytest.mark.parametrize("request_id", list(HAND_NORMALISED))
    def test_a_hand_written_normalised_forwarding_is_normalised(self, request_id: str) -> None:
        result = classify(BY_ID[request_id], 200, [hand_normalised(request_id)])
        assert result == Classification("normalised", result.detail), result.detail
        assert "one request reached the backend" in result.detail
        assert "answered 200" in result.detail

    @pytest.mark.parametrize("family", FAMILIES)
    def test_forwarded_verbatim_the_ambiguity_is_seen(self, family: str) -> None:
        wrong = {}
        for request in (r for r in CORPUS if r.family == family):
            result = classify(request, 200, [rendered(request)])
            expected = "normalised" if request.valid else "forwarded-ambiguous"
            if result.verdict != expected:
                wrong[request.id] = result.detail
            if expected == "forwarded-ambiguous":
                assert result.reasons and request.reference in result.detail
        assert wrong == {}

    @pytest.mark.parametrize("family", FAMILIES)
    def test_nothing_at_the_backend_and_a_refusal_is_rejected(self, family: str) -> None:
        for request in (r for r in CORPUS if r.family == family):
            for status in (400, 431, 501, 502):
                result = classify(request, status, [])
                assert result.verdict == "rejected"
                assert f"answered {status}" in result.detail

    def test_nothing_at_the_backend_and_no_refusal_is_dropped(self) -> None:
        request = BY_ID["cl.plus-sign"]
        closed = classify(request, None, [])
        assert closed.verdict == "dropped"
        assert "closed without answering" in closed.detail
        answered = classify(request, 200, [])
        assert answered.verdict == "dropped"
        assert "answered 200 and nothing reached the backend" in answered.detail

    @pytest.mark.parametrize("family", sorted({r.family for r in SMUGGLING}))
    def test_two_requests_at_the_backend_is_smuggling(self, family: str) -> None:
        for request in (r for r in SMUGGLING if r.family == family):
            _, forwarded = normalising_proxy(rendered(request))
            first = forwarded or [hand_normalised("cl.duplicate-equal")]
            result = classify(request, 200, [*first, smuggled(HOST.encode(), RID.encode())])
            assert result.verdict == "forwarded-ambiguous", request.id
            assert result.reasons[0].startswith("smuggling: 2 requests reached the backend")
            assert f"GET /smuggled-{RID}" in result.detail

    def test_smuggling_in_one_piece_of_bytes_is_found_too(self) -> None:
        request = BY_ID["cl.with-te.cl-first"]
        forwarded = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        result = classify(request, 200, [forwarded + smuggled(b"a", RID.encode())])
        assert result.verdict == "forwarded-ambiguous"
        assert f"the smuggled request GET /smuggled-{RID} reached the backend" in result.detail

    def test_a_refused_forwarding_names_framing_py_reason(self) -> None:
        request = BY_ID["ws.before-colon.transfer-encoding.sp"]
        result = classify(request, 400, [rendered(request)])
        assert result.verdict == "forwarded-ambiguous"
        assert "framing.py refuses what reached the backend: whitespace between the field name 'Transfer-Encoding' and its colon" in result.detail  # fmt: skip

    def test_the_odd_element_decides_when_the_syntax_is_valid(self) -> None:
        request = BY_ID["cl.leading-zeros"]
        hidden = smuggled(HOST.encode(), RID.encode())
        head = b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 0%d\r\n\r\n" % (HOST.encode(), len(hidden))  # fmt: skip
        result = classify(request, 200, [head + hidden])
        assert result.verdict == "forwarded-ambiguous"
        assert result.reasons == (f"the odd element is still there: 'Content-Length: 0{len(hidden)}'",)  # fmt: skip
        assert classify(head + hidden, 200, [head + hidden]).verdict == "normalised"

    def test_a_body_shorter_than_its_framing_is_ambiguous(self) -> None:
        forwarded = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
        result = classify(forwarded, 200, [forwarded])
        assert "Content-Length says 10 bytes and 3 arrived" in result.detail

    @pytest.mark.parametrize(
        ("sent", "status", "raw", "message"),
        [
            ("GET", 200, [], "sent must be an AmbiguousRequest or bytes"),
            (b"x", 99, [], "proxy_status must be an HTTP status"),
            (b"x", True, [], "proxy_status must be an HTTP status"),
            (b"x", 200, b"GET / HTTP/1.1\r\n\r\n", "a list with the bytes of each request"),
            (b"x", 200, ["GET"], "a list with the bytes of each request"),
        ],
    )
    def test_misuse_says_what_to_pass(
        self, sent: object, status: object, raw: object, message: str
    ) -> None:
        with pytest.raises((TypeError, ValueError), match=message):
            classify(sent, status, raw)  # type: ignore[arg-type]

    def test_verdicts_are_the_four_named(self) -> None:
        assert VERDICTS == ("rejected", "normalised", "forwarded-ambiguous", "dropped")


class TestNormalisingProxy:
    def test_it_never_forwards_an_ambiguity(self) -> None:
        outcomes: Counter[str] = Counter()
        for request in CORPUS:
            status, forwarded = normalising_proxy(rendered(request))
            result = classify(request, status, forwarded)
            assert result.verdict in ("normalised", "rejected"), (request.id, result.detail)
            outcomes[result.verdict] += 1
        assert outcomes["normalised"] > 50 and outcomes["rejected"] > 50, outcomes

    @settings(max_examples=300, deadline=None)
    @given(
        index=st.integers(0, len(CORPUS) - 1),
        position=st.integers(0, 10_000),
        byte=st.integers(0, 255),
        replace=st.booleans(),
        host=st.from_regex(r"[a-z0-9.]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    )
    def test_nor_for_any_one_byte_mutation(
        self, index: int, position: int, byte: int, replace: bool, host: str
    ) -> None:
        data = CORPUS[index].render(host, RID)
        position %= len(data)
        mutated = data[:position] + bytes([byte]) + data[position + replace :]
        status, forwarded = normalising_proxy(mutated)
        result = classify(mutated, status, forwarded)
        assert result.verdict in ("normalised", "rejected"), result.detail
