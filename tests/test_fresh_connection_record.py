"""The record a fresh connection leaves holds few objects for the garbage collector to walk
(a transcript's list of blocks and the list of HTTP/2 frames are made when first needed), and
a reader gets exactly what an eager record gave: every byte in order, every frame, the
facts a handling refers to seeing the frames that came after it was made."""

from __future__ import annotations

import gc
import threading
from collections import Counter

from pytest_deproxy import Deproxy
from pytest_deproxy.connections import ConnectionRecord, Facts, FrameEvent, Transcript


def test_a_fresh_connection_leaves_few_tracked_objects_in_its_record(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint()
    for _ in range(20):
        deproxy.make_request(endpoint.url)

    def census() -> Counter[str]:
        gc.collect()
        return Counter(
            type(o).__qualname__
            for o in gc.get_objects()
            if type(o) is list or type(o).__module__ == "pytest_deproxy.connections"
        )

    before = census()
    count = 300
    for _ in range(count):
        assert deproxy.make_request(endpoint.url).received_response is not None
    grown = census() - before
    # A ConnectionRecord, its two Transcripts and its Facts (an eager record also had a list
    # per transcript and one for HTTP/2 frames: 7, plus a list per request elsewhere).
    assert grown["ConnectionRecord"] == count
    assert grown["Transcript"] == 2 * count
    assert grown["list"] <= 1.2 * count, grown
    records = endpoint.connections[-count:]
    assert all(r.received.startswith(b"GET / HTTP/1.1\r\n") for r in records)
    assert all(r.sent.startswith(b"HTTP/1.1 200 OK\r\n") for r in records)
    assert all(r.events == [] and r.facts.events == [] for r in records)


def test_a_transcript_read_while_written_is_always_a_prefix_in_order() -> None:
    whole = bytes(range(256)) * 1200  # 300 KiB: several 64 KiB blocks frozen on the way
    transcript = Transcript()
    write = transcript.tap()
    done = threading.Event()
    seen: list[tuple[bytes, int]] = []

    def read() -> None:
        while not done.is_set():
            seen.append((bytes(transcript), len(transcript)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for start in range(0, len(whole), 977):
            write(whole[start : start + 977])
    finally:
        done.set()
        reader.join(10)
    assert bytes(transcript) == whole and len(transcript) == len(whole)
    assert seen  # the reader ran
    for data, size in seen:
        assert whole.startswith(data)
        assert size >= 0


def test_a_transcript_under_its_limit_keeps_the_first_bytes_and_counts_the_rest() -> None:
    for limit in (10, 64 * 1024, 64 * 1024 + 5, 200_000):
        transcript = Transcript(limit)
        write = transcript.tap()
        data = bytes(range(256)) * 1000
        for start in range(0, len(data), 4096):
            write(data[start : start + 4096])
        kept = min(limit, len(data))
        assert bytes(transcript) == data[:kept]
        assert len(transcript) == kept
        assert transcript.dropped == len(data) - kept


def test_facts_made_before_the_first_frame_see_the_frames() -> None:
    record = ConnectionRecord("c1", "127.0.0.1:1")
    facts = record.facts  # a handling made now refers to this object
    assert facts.events == [] and record.events == []
    settings = FrameEvent("received", "SETTINGS", values={"MAX_CONCURRENT_STREAMS": 100})
    ping = FrameEvent("sent", "PING", data=b"12345678")
    record.add_event(settings)
    record.add_event(ping)
    assert facts.events == [settings, ping]
    assert record.facts is facts and record.events == [settings, ping]
    later = ConnectionRecord("c2", "127.0.0.1:2")
    later.add_event(settings)
    assert later.facts.events == [settings]
    later.add_event(ping)
    assert later.facts.events == [settings, ping]


def test_first_frames_from_many_threads_at_once_are_all_kept() -> None:
    def add(record: ConnectionRecord, start: threading.Barrier, number: int) -> None:
        start.wait()
        record.add_event(FrameEvent("received", "PING", stream_id=number))

    def look(record: ConnectionRecord, start: threading.Barrier, seen: list[Facts]) -> None:
        start.wait()
        seen.append(record.facts)

    for _ in range(50):
        record = ConnectionRecord("c", "127.0.0.1:1")
        facts_seen: list[Facts] = []
        start = threading.Barrier(5)
        threads = [threading.Thread(target=add, args=(record, start, n)) for n in range(4)]
        threads.append(threading.Thread(target=look, args=(record, start, facts_seen)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(e.stream_id for e in record.events) == [0, 1, 2, 3]
        assert facts_seen[0].events == record.events


def test_an_h2c_handling_facts_show_the_connection_frames(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    chain = deproxy.make_request(endpoint.url, http2="h2c")
    assert chain.received_response is not None and chain.received_response.code == "200"
    (handling,) = chain.handlings
    assert isinstance(handling.facts, Facts)
    kinds = {event.type for event in handling.facts.events}
    assert "SETTINGS" in kinds
    (record,) = endpoint.connections
    assert record.events and handling.facts.events == record.events[: len(handling.facts.events)]
