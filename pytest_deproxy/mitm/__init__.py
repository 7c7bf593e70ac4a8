"""The scenario-replaying MITM endpoint (INSPIRE-MITMProxy's features, file format and API)."""

from .proxy import MitmEndpoint
from .replay import Miss

__all__ = ["Miss", "MitmEndpoint"]
