"""Handlers that accept an upgrade with ``101 Switching Protocols`` and then own the
connection: a WebSocket session (:mod:`~pytest_deproxy.ws_endpoint`), one that misbehaves
on purpose, or any other protocol as raw bytes. Re-exported by :mod:`~pytest_deproxy.handlers`
(``handlers.websocket``, ``handlers.upgrade``, ...), where users find them.

Rule kept here: each returns a :class:`~pytest_deproxy.faults.Takeover` (or a refusal), and
touches no socket itself; the endpoint records and writes the 101, then runs the takeover.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import faults, ws, ws_endpoint
from .models import Request, Response
from .ws_endpoint import Message, OnMessage, OnOpen, ServerSession, Subprotocol


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} is a function or None, not {type(value).__name__}")


def websocket(
    on_message: OnMessage | None = None,
    *,
    subprotocol: Subprotocol = None,
    on_open: OnOpen | None = None,
    answer_pings: bool = True,
) -> Callable[[Request], Any]:
    """Accept a WebSocket upgrade and answer each message: ``on_message(message, session)``
    returns the reply (``str``: a text message, ``bytes``: binary) or ``None`` for none;
    without ``on_message`` every message is echoed. The handshake is recorded as a
    Handling whose ``frames`` fill, both ways, as they cross::

        endpoint.default_handler = handlers.websocket(lambda message, session: message.upper())

    ``subprotocol``: the name to choose when the client offers it, or a function from the
    offered names to the one chosen (``None``: none). ``on_open(session)`` runs once the 101
    is sent (to send first, or commit a fault; see :class:`ServerSession`).
    ``answer_pings=False`` never answers a ping. A request that is not a WebSocket handshake
    (no ``Upgrade: websocket``, as when a proxy drops it) is answered 400, saying what was
    missing, on the handling's ``action``; a wrong ``Sec-WebSocket-Version``, 426.
    """
    _check_callable("on_message", on_message)
    _check_callable("on_open", on_open)
    if subprotocol is not None and not (isinstance(subprotocol, str) or callable(subprotocol)):
        raise TypeError(f"subprotocol is a name, a function or None, not {subprotocol!r}")

    def accept_websocket(request: Request) -> Any:
        return ws_endpoint.accept(
            request,
            on_message=on_message,
            on_open=on_open,
            subprotocol=subprotocol,
            answer_pings=answer_pings,
        )

    return accept_websocket


def websocket_close(code: int, reason: str = "") -> Callable[[Request], Any]:
    """Accept a WebSocket upgrade, then close it at once with ``code`` and ``reason``."""
    ws.check_close(code, reason)

    def accept_then_close(request: Request) -> Any:
        return ws_endpoint.accept(
            request,
            on_message=lambda message, session: None,
            on_open=lambda session: session.close(code, reason),
            description=f"accepted the WebSocket, then closed it with {code}",
        )

    return accept_then_close


def websocket_drop(
    *, after: int = 0, mid_message: bool = False, reset: bool = False
) -> Callable[[Request], Any]:
    """Accept a WebSocket upgrade, echo ``after`` messages, and on the next one drop the
    connection without a close frame: at once, or with ``mid_message`` halfway through the
    frame that echoes it; with a FIN, or with ``reset`` a TCP RST."""
    if not isinstance(after, int) or after < 0:
        raise ValueError(f"after is a number of messages >= 0, not {after!r}")
    how = "reset" if reset else "closed"
    where = " halfway through a frame" if mid_message else ""
    description = f"accepted the WebSocket; after {after} echoes, {how} it{where}"

    def accept_then_drop(request: Request) -> Any:
        echoed = 0

        def on_message(message: Message, session: ServerSession) -> Message | None:
            nonlocal echoed
            if echoed < after:
                echoed += 1
                return message
            if mid_message:
                payload = message.encode() if isinstance(message, str) else message
                kind = "text" if isinstance(message, str) else "binary"
                session.send_truncated(
                    payload + b"." * (2 - len(payload)), opcode=kind, reset=reset
                )
            else:
                session.drop(reset=reset)
            return None

        return ws_endpoint.accept(request, on_message=on_message, description=description)

    return accept_then_drop


def websocket_fragments(pieces: int = 3) -> Callable[[Request], Any]:
    """Accept a WebSocket upgrade and echo each message in ``pieces`` frames (a text message
    split between characters), as a server that fragments does."""
    if not isinstance(pieces, int) or pieces < 2:
        raise ValueError(f"a fragmented message has 2 or more pieces, not {pieces!r}")

    def echo_in_pieces(message: Message, session: ServerSession) -> None:
        size = max(1, -(-len(message) // pieces))
        parts = [message[start : start + size] for start in range(0, len(message), size)]
        parts += [message[:0]] * (pieces - len(parts))  # a short message: empty frames follow
        session.send_fragments(parts)

    def accept_fragmenting(request: Request) -> Any:
        return ws_endpoint.accept(
            request,
            on_message=echo_in_pieces,
            description=f"accepted the WebSocket; echoes each message in {pieces} frames",
        )

    return accept_fragmenting


def upgrade(
    run: Callable[[faults.Upgraded], None] | None = None, *, protocol: str | None = None
) -> Callable[[Request], Any]:
    """Accept any upgrade (``Connection: Upgrade`` and an ``Upgrade`` header: a protocol
    other than WebSocket, say) with ``101 Switching Protocols``, then hand the raw connection
    to ``run(upgraded)`` (a :class:`~pytest_deproxy.faults.Upgraded`: ``stream`` to read
    and write, the ``early`` bytes that came with the request, the ``handling``, the
    ``stopping`` event) until it returns. Without ``run`` every byte is echoed until the
    client closes. ``protocol`` is the ``Upgrade`` answered (default: the first offered)::

        endpoint.default_handler = handlers.upgrade(protocol="my-protocol")
    """
    _check_callable("run", run)
    take = ws_endpoint.echo_bytes if run is None else run

    def accept_upgrade(request: Request) -> Any:
        refusal = ws_endpoint.upgrade_refusal(request)
        if refusal is not None:
            return refusal
        offered = request.headers["Upgrade"].split(",")[0].strip()
        answer = Response(
            101, headers=[("Upgrade", protocol or offered), ("Connection", "Upgrade")]
        )
        return faults.Takeover(answer, take)

    return accept_upgrade
