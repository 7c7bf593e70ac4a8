"""The scenario-replaying MITM endpoint (INSPIRE-MITMProxy's features, file format and API)."""

from .proxy import MitmEndpoint, Miss

__all__ = ["MitmEndpoint", "Miss"]
