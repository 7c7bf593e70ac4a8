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

_errors_told = pytest.StashKey[int]()


def _new_errors(item: pytest.Item, deproxy: Deproxy) -> list[BaseException]:
    """The handler errors of ``deproxy`` that this test has not been told about yet."""
    errors = deproxy.errors
    fresh = errors[item.stash.get(_errors_told, 0) :]
    item.stash[_errors_told] = len(errors)
    return fresh


def _raise_new_errors(item: pytest.Item, deproxy: Deproxy) -> None:
    fresh = _new_errors(item, deproxy)
    if len(fresh) == 1:
        raise fresh[0]
    if fresh:
        raise ExceptionGroup(f"{len(fresh)} handlers raised in endpoint threads", fresh)  # type: ignore[type-var]


def _deproxy_of(item: pytest.Item) -> Deproxy | None:
    deproxy = getattr(item, "funcargs", {}).get("deproxy")
    return deproxy if isinstance(deproxy, Deproxy) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        result = yield
    except BaseException as failure:
        # The test failed on its own: tell of the handler errors on that failure, not as a
        # second outcome of the same test.
        deproxy = _deproxy_of(item)
        for error in _new_errors(item, deproxy) if deproxy else []:
            failure.add_note(f"meanwhile, in an endpoint thread: {error}")
        raise
    deproxy = _deproxy_of(item)
    if deproxy is not None:
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
