"""pytest-deproxy: test HTTP proxies from both sides, and replay recorded HTTP(S) services.

Only public names live here; see ``shared/API.md`` for the contract they keep. Some load on
first use (PEP 562 ``__getattr__``), as their libraries would be a cost of every pytest run
that loads the plugin, which only their users need: the MITM's (``MitmEndpoint``, ``Miss``:
the YAML parser), HTTP/2's (``H2StreamError``, ``H2StreamTimeout``: h2) and WebSocket's
(``WebSocketSession``: wsproto). ``Frame``, a record of a WebSocket frame, needs no wsproto.
"""

from typing import TYPE_CHECKING, Any

from . import handlers
from ._version import __version__
from .client import ClientConnection
from .deproxy import Deproxy
from .endpoint import Endpoint
from .errors import (
    DeproxyError,
    DeproxyTimeout,
    HandlerError,
    NetworkError,
    ProtocolError,
    ScenarioError,
    TunnelRefused,
)
from .handlers import HandlerContext
from .models import TRACKING_HEADER, Headers, Request, Response
from .proxyproto import ProxyHeader
from .record import Frame, Handling, MessageChain
from .report import to_har
from .tls import CertificateAuthority

if TYPE_CHECKING:
    from .h2client import H2StreamError, H2StreamTimeout
    from .mitm import Miss, MitmEndpoint
    from .websocket import WebSocketSession

__all__ = [
    "TRACKING_HEADER",
    "CertificateAuthority",
    "ClientConnection",
    "Deproxy",
    "DeproxyError",
    "DeproxyTimeout",
    "Endpoint",
    "Frame",
    "H2StreamError",
    "H2StreamTimeout",
    "HandlerContext",
    "HandlerError",
    "Handling",
    "Headers",
    "MessageChain",
    "Miss",
    "MitmEndpoint",
    "NetworkError",
    "ProtocolError",
    "ProxyHeader",
    "Request",
    "Response",
    "ScenarioError",
    "TunnelRefused",
    "WebSocketSession",
    "__version__",
    "handlers",
    "to_har",
]


# Hidden from type checkers, which see these names through the TYPE_CHECKING imports:
# with a module __getattr__ in sight, mypy would take any misspelt name for one.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in ("Miss", "MitmEndpoint"):
            from . import mitm

            return getattr(mitm, name)
        if name in ("H2StreamError", "H2StreamTimeout"):
            from . import h2client

            return getattr(h2client, name)
        if name == "WebSocketSession":
            from . import websocket

            return websocket.WebSocketSession
        raise AttributeError(f"module 'pytest_deproxy' has no attribute {name!r}")
