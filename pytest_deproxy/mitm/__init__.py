"""The scenario-replaying MITM endpoint (INSPIRE-MITMProxy's features, file format and API)."""

from .proxy import Miss, MitmEndpoint

__all__ = ["Miss", "MitmEndpoint"]
