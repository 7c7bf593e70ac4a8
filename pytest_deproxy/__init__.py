"""pytest-deproxy: test HTTP proxies from both sides, and replay recorded HTTP(S) services.

Only public names live here; see ``shared/API.md`` for the contract they keep.
"""

__version__ = "0.1.0"

from . import handlers  # noqa: E402
from .client import ClientConnection  # noqa: E402
from .deproxy import Deproxy  # noqa: E402
from .endpoint import Endpoint  # noqa: E402
from .errors import (  # noqa: E402
    DeproxyError,
    DeproxyTimeout,
    HandlerError,
    NetworkError,
    ProtocolError,
    ScenarioError,
    TunnelRefused,
)
from .handlers import HandlerContext  # noqa: E402
from .models import TRACKING_HEADER, Handling, Headers, MessageChain, Request, Response  # noqa: E402
from .tls import CertificateAuthority  # noqa: E402

__all__ = [
    "TRACKING_HEADER",
    "CertificateAuthority",
    "ClientConnection",
    "Deproxy",
    "DeproxyError",
    "DeproxyTimeout",
    "Endpoint",
    "HandlerContext",
    "HandlerError",
    "Handling",
    "Headers",
    "MessageChain",
    "NetworkError",
    "ProtocolError",
    "Request",
    "Response",
    "ScenarioError",
    "TunnelRefused",
    "__version__",
    "handlers",
]
