"""The pytest side: fixtures, and handler failures that fail the test that caused them.

Rule kept here: this is the only module that imports pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .deproxy import Deproxy
from .endpoint import Endpoint
from .handlers import Handler
from .tls import CertificateAuthority

_errors_raised = pytest.StashKey[int]()


def _raise_new_errors(item: pytest.Item, deproxy: Deproxy) -> None:
    """Raise the handler errors of ``deproxy`` that this test has not been failed for yet."""
    errors = deproxy.errors
    already = item.stash.get(_errors_raised, 0)
    fresh = errors[already:]
    if not fresh:
        return
    item.stash[_errors_raised] = len(errors)
    if len(fresh) == 1:
        raise fresh[0]
    raise ExceptionGroup(f"{len(fresh)} handlers raised in endpoint threads", fresh)  # type: ignore[type-var]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    deproxy = getattr(item, "funcargs", {}).get("deproxy")
    if isinstance(deproxy, Deproxy):
        _raise_new_errors(item, deproxy)
    return result


@pytest.fixture(scope="session")
def deproxy_ca() -> Iterator[CertificateAuthority]:
    """The session's certificate authority: every TLS endpoint of every test is signed by it."""
    ca = CertificateAuthority()
    yield ca
    ca.close()


@pytest.fixture
def deproxy(request: pytest.FixtureRequest, deproxy_ca: CertificateAuthority) -> Iterator[Deproxy]:
    """A :class:`Deproxy` for one test, shut down after it.

    An exception raised by a handler in an endpoint thread fails the test.
    """
    instance = Deproxy(ca=deproxy_ca)
    try:
        yield instance
    finally:
        instance.shutdown()
    _raise_new_errors(request.node, instance)


@pytest.fixture
def endpoint(deproxy: Deproxy) -> Callable[..., Endpoint]:
    """A factory of endpoints on the test's ``deproxy``::

    def test_proxy(endpoint, deproxy):
        server = endpoint("backend", handlers.echo)
    """

    def make_endpoint(
        name: str | None = None,
        handler: Handler | None = None,
        *,
        tls: bool = False,
        port: int = 0,
        hostname: str = "127.0.0.1",
        **options: Any,
    ) -> Endpoint:
        return deproxy.add_endpoint(
            port=port, name=name, hostname=hostname, default_handler=handler, tls=tls, **options
        )

    return make_endpoint
