"""pytest-deproxy: test HTTP proxies from both sides, and replay recorded HTTP(S) services.

Only public names live here; see ``shared/API.md`` for the contract they keep. The MITM's
(``MitmEndpoint``, ``Miss``) load on first use: their YAML parser is a cost of every pytest
run that loads the plugin, and only MITM users need it.
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
from .h2client import H2StreamError, H2StreamTimeout
from .handlers import HandlerContext
from .models import TRACKING_HEADER, Headers, Request, Response
from .proxyproto import ProxyHeader
from .record import Handling, MessageChain
from .report import to_har
from .tls import CertificateAuthority
from .websocket import WebSocketSession
from .ws import Frame

if TYPE_CHECKING:
    from .mitm import Miss, MitmEndpoint

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


def __getattr__(name: str) -> Any:
    if name in ("Miss", "MitmEndpoint"):
        from . import mitm

        return getattr(mitm, name)
    raise AttributeError(f"module 'pytest_deproxy' has no attribute {name!r}")
