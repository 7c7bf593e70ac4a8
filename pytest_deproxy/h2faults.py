"""HTTP/2 faults and gRPC's message framing, as data.

Rule kept here: pure. An :class:`H2Fault` is a :class:`~pytest_deproxy.faults.Fault` an
HTTP/2 stream carries out in frames (``h2serve``); on an HTTP/1 connection its ``plan`` says
what stands for it there (a reset or a close), so a handler shared by both kinds of
connection never fails. The public names are in :mod:`pytest_deproxy.handlers`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .faults import Close, Fault, Reset, Step
from .models import Response

ERROR_CODES = {
    "NO_ERROR": 0x0,
    "PROTOCOL_ERROR": 0x1,
    "INTERNAL_ERROR": 0x2,
    "FLOW_CONTROL_ERROR": 0x3,
    "SETTINGS_TIMEOUT": 0x4,
    "STREAM_CLOSED": 0x5,
    "FRAME_SIZE_ERROR": 0x6,
    "REFUSED_STREAM": 0x7,
    "CANCEL": 0x8,
    "COMPRESSION_ERROR": 0x9,
    "CONNECT_ERROR": 0xA,
    "ENHANCE_YOUR_CALM": 0xB,
    "INADEQUATE_SECURITY": 0xC,
    "HTTP_1_1_REQUIRED": 0xD,
}
SETTINGS = {
    "HEADER_TABLE_SIZE": 0x1,
    "ENABLE_PUSH": 0x2,
    "MAX_CONCURRENT_STREAMS": 0x3,
    "INITIAL_WINDOW_SIZE": 0x4,
    "MAX_FRAME_SIZE": 0x5,
    "MAX_HEADER_LIST_SIZE": 0x6,
}


def error_code(code: int | str) -> int:
    """``"CANCEL"`` or ``8`` -> ``8``; anything else is refused with the names allowed."""
    if isinstance(code, str):
        if code.upper() not in ERROR_CODES:
            raise ValueError(
                f"unknown HTTP/2 error code {code!r}: use one of {sorted(ERROR_CODES)}"
            )
        return ERROR_CODES[code.upper()]
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < 2**32:
        raise ValueError(f"an HTTP/2 error code is a name or an int in [0, 2**32), not {code!r}")
    return code


def _reset_plan(*_: object) -> list[Step]:
    return [Reset()]


def _close_plan(*_: object) -> list[Step]:
    return [Close()]


@dataclass(frozen=True)
class H2Fault(Fault):
    """A fault in HTTP/2's own terms: ``kind`` is ``"rst_stream"``, ``"goaway"``,
    ``"refuse_stream"``, ``"headers_only"``, ``"trailers_only"``, ``"stall_window"``,
    ``"settings"`` or ``"raw"``."""

    kind: str = "rst_stream"
    code: int = 0
    last_stream_id: int | None = None
    settings: dict[int, int] = field(default_factory=dict)
    data: bytes = b""


def rst_stream(code: int | str = "CANCEL", response: Response | None = None) -> H2Fault:
    """Reset the stream with ``code`` (after the head of ``response``, if given)."""
    number = error_code(code)
    return H2Fault(
        f"reset the stream (RST_STREAM {code})",
        response,
        _reset_plan,
        kind="rst_stream",
        code=number,
    )


def goaway(code: int | str = "NO_ERROR", last_stream_id: int | None = None) -> H2Fault:
    """Send GOAWAY with ``code`` and ``last_stream_id`` (default: this stream) and close."""
    number = error_code(code)
    return H2Fault(
        f"sent GOAWAY ({code}, last_stream_id={last_stream_id}) and closed",
        None,
        _close_plan,
        kind="goaway",
        code=number,
        last_stream_id=last_stream_id,
    )


refuse_stream = H2Fault(
    "refused the stream (RST_STREAM REFUSED_STREAM)",
    None,
    _reset_plan,
    kind="refuse_stream",
    code=ERROR_CODES["REFUSED_STREAM"],
)


def headers_only(response: Response) -> H2Fault:
    """Send the response's HEADERS (no END_STREAM) and then nothing until shutdown."""
    return H2Fault("sent the headers, then hung", response, _close_plan, kind="headers_only")


def trailers_only(response: Response) -> H2Fault:
    """Answer with one HEADERS frame holding the status, the headers and the trailers, and
    END_STREAM (a gRPC "trailers-only" response)."""
    return H2Fault("answered trailers-only", response, _close_plan, kind="trailers_only")


def stall_window(response: Response) -> H2Fault:
    """Give the client no flow-control credit back from now on, then answer."""
    return H2Fault(
        "stopped opening the flow-control window", response, _close_plan, kind="stall_window"
    )


def settings(values: dict[str, int], response: Response | None = None) -> H2Fault:
    """Send SETTINGS with ``values`` (by name: ``{"MAX_CONCURRENT_STREAMS": 1}``), then
    answer with ``response`` if given."""
    numbers: dict[int, int] = {}
    for name, value in values.items():
        if name.upper() not in SETTINGS:
            raise ValueError(f"unknown HTTP/2 setting {name!r}: use one of {sorted(SETTINGS)}")
        numbers[SETTINGS[name.upper()]] = value
    return H2Fault(
        f"sent SETTINGS {values}", response, _close_plan, kind="settings", settings=numbers
    )


def raw_frames(data: bytes) -> H2Fault:
    """Write ``data`` (frames made by hand) on the connection, outside h2's state machine."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"raw_frames sends bytes, not {type(data).__name__}")
    return H2Fault(f"sent {len(data)} raw bytes", None, _close_plan, kind="raw", data=bytes(data))


# -- gRPC ------------------------------------------------------------------------------------


def grpc_frame(message: bytes, *, compressed: bool = False) -> bytes:
    """One length-prefixed gRPC message: a compressed flag, a 4-byte length, the bytes."""
    return struct.pack(">?I", compressed, len(message)) + message


def grpc_messages(body: bytes) -> list[bytes]:
    """The messages of a gRPC body; a cut-off message raises ``ValueError``."""
    messages, offset = [], 0
    while offset < len(body):
        if len(body) - offset < 5:
            raise ValueError(f"a gRPC message prefix is 5 bytes; {len(body) - offset} left")
        _, length = struct.unpack(">?I", body[offset : offset + 5])
        end = offset + 5 + length
        if end > len(body):
            raise ValueError(f"a gRPC message says {length} bytes; {len(body) - offset - 5} came")
        messages.append(body[offset + 5 : end])
        offset = end
    return messages


def grpc_response(message: bytes, status: int = 0, text: str = "") -> Response:
    """The answer to a unary gRPC call: 200, ``content-type: application/grpc``, the message
    length-prefixed, and ``grpc-status``/``grpc-message`` trailers."""
    trailers = [("grpc-status", str(status))]
    if text:
        trailers.append(("grpc-message", text))
    return Response(
        200,
        headers=[("content-type", "application/grpc")],
        body=grpc_frame(message) if status == 0 else b"",
        trailers=trailers,
    )
