"""The intermediary conformance suite: ambiguous requests sent through a proxy, each decided
from the bytes that reached the backend.

Rule kept here: pure, no socket, no thread. ``corpus`` generates the ambiguous requests from
the RFC 9110 / RFC 9112 grammar; ``classify`` decides, from the proxy's answer and the raw
bytes the backend received, whether the proxy rejected a request, normalised it, forwarded
the ambiguity, or dropped it. Nothing here sends a byte: a runner does that.
"""
