"""The poll thread's lean path records what the general one does: a transcript kept in blocks
is byte-exact, in order and bounded, also while read from another thread; a handling and a
request made in one call equal those the constructors make; answers written together after
a wake-up reach each client whole; a canned handler replaced between requests is honoured."""

from __future__ import annotations

import dataclasses
import gc
import random
import socket
import sys
import threading
import time
import weakref
from typing import cast

import pytest

from pytest_deproxy import Deproxy, Response, handlers
from pytest_deproxy.connections import Repeats, Transcript
from pytest_deproxy.models import Headers, Request
from pytest_deproxy.record import Handling

GET = b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _chunks(count: int) -> list[bytes]:
    return [bytes([n % 251]) * (1 + n % 300) for n in range(count)]


def test_a_transcript_in_blocks_is_every_byte_in_order() -> None:
    chunks = _chunks(2_000)  # ~300 KiB: several blocks
    transcript = Transcript()
    write = transcript.tap()
    for chunk in chunks:
        write(chunk)
    assert bytes(transcript) == b"".join(chunks)
    assert len(transcript) == len(b"".join(chunks)) and transcript.dropped == 0


def test_a_transcript_keeps_its_first_limit_bytes_and_counts_the_rest() -> None:
    chunks = _chunks(2_000)
    whole = b"".join(chunks)
    for limit in (0, 1, Transcript.BLOCK - 1, Transcript.BLOCK, Transcript.BLOCK + 7, 200_000):
        transcript = Transcript(limit)
        write = transcript.tap()
        for chunk in chunks:
            write(chunk)
        assert bytes(transcript) == whole[:limit], limit
        assert transcript.dropped == len(whole) - limit
        assert len(transcript) == limit


def test_a_chunk_larger_than_a_block_is_kept_whole() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB in one chunk
    transcript = Transcript(3 * Transcript.BLOCK + 5)
    write = transcript.tap()
    write(b"a")
    write(big)
    write(b"b")
    assert bytes(transcript) == (b"a" + big + b"b")[: 3 * Transcript.BLOCK + 5]


def _snapshots_while_writing(chunks: list[bytes]) -> tuple[Transcript, list[tuple[bytes, int]]]:
    """A transcript written with ``chunks``, and what another thread read of it meanwhile
    (its bytes, then its length): the GIL handed over often, so that reads land between any
    two writes, and at eight points on the way the writer waits for a read."""
    transcript = Transcript()
    write = transcript.tap()
    seen: list[tuple[bytes, int]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append((bytes(transcript), len(transcript)))

    reader = threading.Thread(target=read)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    reader.start()
    try:
        for n, chunk in enumerate(chunks):
            write(chunk)
            if n % (len(chunks) // 8) == 0:  # (a big transcript takes a while to read whole)
                reads = len(seen)
                deadline = time.monotonic() + 10
                while len(seen) == reads and time.monotonic() < deadline:
                    time.sleep(0.001)
    finally:
        done.set()
        reader.join(10)
        sys.setswitchinterval(interval)
    return transcript, seen


@pytest.mark.parametrize(
    "chunks",
    [
        _chunks(5_000),  # ~750 KB: a dozen blocks
        [b"x" * 30 if (n // 50) % 2 else b"y" * 30 for n in range(40_000)],  # runs of repeats
    ],
    ids=["blocks", "runs"],
)
def test_a_transcript_read_while_it_grows_is_always_a_prefix(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    transcript, seen = _snapshots_while_writing(chunks)
    assert len(seen) >= 8
    for data, size in seen:
        assert whole.startswith(data)
        assert 0 <= size <= len(whole)
    assert bytes(transcript) == whole


def test_a_long_runs_transcript_is_a_few_blocks_for_the_collector() -> None:
    transcript = Transcript(4 * 1024 * 1024)
    write = transcript.tap()
    for _ in range(40_000):  # 4.4 MB of 110-byte chunks, past the limit
        write(b"x" * 110)
    assert transcript._parts is not None
    assert len(transcript._parts) <= 4 * 1024 * 1024 // Transcript.BLOCK + 1
    assert transcript.dropped == 40_000 * 110 - 4 * 1024 * 1024


def test_a_transcript_has_one_writer() -> None:
    transcript = Transcript()
    write = transcript.tap()
    write(b"GET / HTTP/1.1\r\n")
    with pytest.raises(RuntimeError, match="has its writer already"):
        transcript.tap()
    assert bytes(transcript) == b"GET / HTTP/1.1\r\n"


# Chunks as a load generator and a proxy send them: runs of one chunk, broken by another, and
# runs that cross the block size and the limit.
PATTERNS = {
    "one chunk again and again": [b"GET / HTTP/1.1\r\n\r\n"] * 5_000,
    "pairs": [b"a" * 40, b"a" * 40, b"b" * 41, b"b" * 41] * 2_000,
    "a run broken now and then": [b"x" * 150 if n % 97 else b"y" * 150 for n in range(6_000)],
    "one chunk twice, then others": [b"q" * 10, b"q" * 10, *_chunks(500)],
    "equal lengths, other bytes": [bytes([n % 3]) * 64 for n in range(5_000)],
    "big repeats": [bytes(range(256)) * 100] * 20,
}


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("limit", [None, 0, 1, 1000, Transcript.BLOCK, 300_000])
def test_repeated_chunks_are_every_byte_in_order_and_bounded(
    pattern: str, limit: int | None
) -> None:
    chunks = PATTERNS[pattern]
    whole = b"".join(chunks)
    transcript = Transcript(limit)
    write = transcript.tap()
    for chunk in chunks:
        write(chunk)
    kept = len(whole) if limit is None else min(limit, len(whole))
    assert bytes(transcript) == whole[:kept]
    assert len(transcript) == kept
    assert transcript.dropped == len(whole) - kept


def test_a_run_of_one_chunk_is_kept_once() -> None:
    transcript = Transcript()
    write = transcript.tap()
    request = b"GET / HTTP/1.1\r\n\r\n"
    for _ in range(100_000):  # 1.8 MB of one request, as a load generator sends it
        write(request)
    assert transcript._parts is not None
    assert (
        sum(
            len(part.chunk) if isinstance(part, Repeats) else len(part)
            for part in transcript._parts
        )
        < 100
    )
    assert len(transcript) == 100_000 * len(request)
    assert bytes(transcript) == request * 100_000


def test_a_reused_buffer_is_recorded_as_it_was_each_time() -> None:
    transcript = Transcript()
    write = transcript.tap()
    buffer = bytearray(b"AAAA")
    for letter in b"AABBBC":
        buffer[:] = bytes([letter]) * 4
        write(cast(bytes, buffer))  # the same object, changed between writes
    assert bytes(transcript) == b"AAAA" * 2 + b"BBBB" * 3 + b"CCCC"


def test_a_reused_buffer_equal_to_a_long_run_is_recorded_as_it_was() -> None:
    transcript = Transcript()
    write = transcript.tap()
    write(b"X" * 100)
    write(b"X" * 100)  # a run begins
    buffer = bytearray(b"X" * 100)
    for _ in range(1_000):  # 100 KB of repeats, past a block: the long way taken on the way
        write(cast(bytes, buffer))
    buffer[:] = b"Y" * 100
    write(cast(bytes, buffer))
    assert bytes(transcript) == b"X" * 100 * 1_002 + b"Y" * 100


@pytest.mark.parametrize("seed", range(20))
def test_any_mix_of_chunks_and_reused_buffers_is_every_byte_in_order(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = [b"", b"a", b"GET / HTTP/1.1\r\n\r\n", b"x" * 5_000, bytes(range(256)) * 100]
    buffer = bytearray()
    limit = rng.choice([None, 0, 17, 10_000, Transcript.BLOCK, 3 * Transcript.BLOCK + 1])
    transcript = Transcript(limit)
    write = transcript.tap()
    sent: list[bytes] = []
    for _ in range(rng.randrange(1, 1_500)):
        chunk = rng.choice(alphabet[1:] if rng.random() < 0.9 else alphabet)
        for _ in range(rng.choice([1, 1, 2, 40])):
            if not chunk:
                continue  # a stream never hands on an empty read
            if rng.random() < 0.3:  # the caller's own buffer, changed in place
                buffer[:] = chunk
                write(cast(bytes, buffer))
            else:
                write(chunk)
            sent.append(chunk)
    whole = b"".join(sent)
    kept = len(whole) if limit is None else min(limit, len(whole))
    assert bytes(transcript) == whole[:kept]
    assert len(transcript) == kept and transcript.dropped == len(whole) - kept


def test_a_tap_keeps_its_transcript_alive_and_nothing_else() -> None:
    transcript = Transcript()
    write = transcript.tap()
    write(b"x" * (Transcript.BLOCK + 1))  # a block frozen: the tap's state moved on
    gone = weakref.ref(transcript)
    del transcript
    assert gone() is not None  # the stream's tap still writes to it
    gc.disable()
    try:
        del write
        assert gone() is None  # freed by reference counting: no cycle left for the collector
    finally:
        gc.enable()


def test_handling_arrived_is_what_the_constructor_makes() -> None:
    request = Request("GET", "/x")
    made = Handling.arrived("ep", request, "conn-1", 12.5, b"raw", None, 3)  # type: ignore[arg-type]
    built = Handling(
        "ep",  # type: ignore[arg-type]
        request,
        "conn-1",
        received_at=12.5,
        raw_head=b"raw",
        facts=None,
        stream_id=3,
    )
    for field in dataclasses.fields(Handling):
        assert getattr(made, field.name) == getattr(built, field.name), field.name
    assert made.interim_responses == [] and made.frames == []


def test_request_from_head_is_what_received_makes() -> None:
    items = [("Host", "a"), ("Content-Type", "text/plain")]
    keys = ["host", "content-type"]
    for body in (b"", b"hello"):
        made = Request.from_head("POST", "/p", items, keys, body, "1.1")
        built = Request.received("POST", "/p", Headers.from_wire(items, keys), body, "1.1")
        assert vars(made) == vars(built)


def test_answers_written_together_reach_every_client_whole() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        socks = [
            socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) for _ in range(8)
        ]
        try:
            for round_ in range(20):
                for number, sock in enumerate(socks):  # all sent before any is read
                    sock.sendall(GET % (round_ * 100 + number))
                for sock in socks:
                    answer = b""
                    while not answer.endswith(b"\r\n\r\n"):
                        chunk = sock.recv(65536)
                        assert chunk
                        answer += chunk
                    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.count(b"HTTP/") == 1
        finally:
            for sock in socks:
                sock.close()
        records = endpoint.connections
        handlings = endpoint.handlings
    assert len(handlings) == 160 and all(h.done for h in handlings)
    for record in records:
        assert record.sent.count(b"HTTP/1.1 200 OK") == 20 and record.received.count(b"GET /") == 20


def test_a_load_generators_identical_requests_are_on_the_record_byte_for_byte() -> None:
    """The same request again and again on one connection, as wrk sends it: the connection's
    record holds every byte both ways, though each repeat is only counted."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=Response(200, body="same"))
        read = b""
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            for number in range(2_000):
                sock.sendall(request)
                while read.count(b"same") <= number:
                    chunk = sock.recv(65536)
                    assert chunk
                    read += chunk
        [record] = endpoint.connections
        handlings = endpoint.handlings
    assert len(handlings) == 2_000
    assert record.received == request * 2_000
    assert record.sent == read and read.count(b"HTTP/1.1 200 OK\r\n") == 2_000


def test_a_canned_handler_replaced_between_requests_is_honoured() -> None:
    with Deproxy() as deproxy:
        first, second = Response(201, body="one"), Response(202, body="two")
        endpoint = deproxy.add_endpoint(default_handler=first)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            answers = []
            sequence: list[handlers.Handler] = [first, first, second, handlers.simple, first]
            for number, handler in enumerate(sequence):
                endpoint.default_handler = handler
                sock.sendall(GET % number)
                answer = b""
                while not answer.endswith((b"one", b"two", b"\r\n\r\n")):
                    answer += sock.recv(65536)
                answers.append(answer.split(b" ")[1])
        codes = [h.response.code for h in endpoint.handlings if h.response is not None]
    assert answers == [b"201", b"201", b"202", b"200", b"201"]
    assert codes == ["201", "201", "202", "200", "201"]
