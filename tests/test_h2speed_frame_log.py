"""The frame log reads each direction's bytes once, whatever pieces they come in."""

from __future__ import annotations

import struct

import pytest

from pytest_deproxy.connections import FrameEvent
from pytest_deproxy.h2frames import PREFACE, FrameLog, frame, goaway_frame, rst_stream_frame


def _stream() -> bytes:
    settings = frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100) + struct.pack(">HI", 0x4, 65535))
    return (
        PREFACE
        + settings
        + frame(0x1, 0x5, 1, b"\x82\x86\x84")  # HEADERS: counted, not logged
        + frame(0x0, 0x1, 1, b"d" * 40_000)  # DATA larger than any piece below
        + frame(0x8, 0, 0, struct.pack(">I", 1000))
        + frame(0x6, 0, 0, b"deproxy!")
        + rst_stream_frame(3, 0x8)
        + frame(0x4, 0, 0, b"\x00" * 5)  # malformed SETTINGS (not a multiple of 6)
        + frame(0x0, 0, 5, b"")
        + goaway_frame(0x0, 3)
    )


def _events(pieces: list[bytes]) -> list[tuple[object, ...]]:
    seen: list[FrameEvent] = []
    log = FrameLog("received", seen.append, preface=True)
    for piece in pieces:
        log.feed(piece)
    assert len(log._buffer) < 9  # nothing held but the start of a frame header
    return [(e.type, e.stream_id, e.flags, tuple(e.values.items()), e.code, e.data) for e in seen]


@pytest.mark.parametrize("size", [1, 2, 7, 9, 10, 100, 4096, 65536])
def test_the_same_frames_whatever_the_pieces(size: int) -> None:
    data = _stream()
    whole = _events([data])
    assert [kind for kind, *_ in whole] == [
        "SETTINGS",
        "WINDOW_UPDATE",
        "PING",
        "RST_STREAM",
        "SETTINGS",
        "GOAWAY",
    ]
    assert whole[4][2] == ("MALFORMED",)
    assert _events([data[at : at + size] for at in range(0, len(data), size)]) == whole


def test_a_long_run_of_unlogged_frames_holds_nothing() -> None:
    """4 MB of small DATA frames in 64 KB reads, one PING at the end: the PING is logged and
    nothing but a frame header's start is held between reads."""
    small = frame(0x0, 0, 1, b"x" * 7)
    data = small * (4 * 1024 * 1024 // len(small)) + frame(0x6, 0, 0, b"deproxy!")
    seen: list[FrameEvent] = []
    log = FrameLog("sent", seen.append, preface=False)
    held = 0
    for at in range(0, len(data), 65536):
        log.feed(data[at : at + 65536])
        held = max(held, len(log._buffer))
    assert [e.type for e in seen] == ["PING"]
    assert held < 9
