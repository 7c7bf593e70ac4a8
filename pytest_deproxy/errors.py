"""The exceptions pytest-deproxy raises or records.

One base, :class:`DeproxyError`, and a few families. Failures on the wire during a test are
recorded on the :class:`~pytest_deproxy.MessageChain` (``chain.error``) or on the endpoint,
not raised; misuse of the API raises ``ValueError`` or ``TypeError`` instead.
"""

from __future__ import annotations


class DeproxyError(Exception):
    """Base of every error pytest-deproxy defines."""


class NetworkError(DeproxyError):
    """A connection could not be made, or broke: refused, reset, closed early, TLS failed."""


class ConnectionReset(NetworkError):
    """The peer reset the connection (a TCP RST), or it broke while being written to."""


class DeproxyTimeout(NetworkError, TimeoutError):
    """A peer did not answer within the time allowed."""


class ProtocolError(DeproxyError):
    """A peer sent bytes that are not valid HTTP/1.x."""


class TunnelRefused(NetworkError):
    """A forward proxy answered a ``CONNECT`` with something other than 2xx.

    ``response`` is the proxy's answer (a :class:`~pytest_deproxy.Response`).
    """

    def __init__(self, message: str, response: object) -> None:
        super().__init__(message)
        self.response = response


class ScenarioError(DeproxyError):
    """A scenario file or directory could not be loaded."""


class HandlerError(DeproxyError, AssertionError):
    """A handler raised inside an endpoint thread.

    It is an ``AssertionError`` too, so pytest reports the test as failed, not errored.
    """

    def __init__(self, endpoint_name: str, original: BaseException) -> None:
        super().__init__(
            f"handler of endpoint {endpoint_name!r} raised {type(original).__name__}: {original}"
        )
        self.endpoint_name = endpoint_name
        self.original = original
