"""The pytest side: fixtures, and handler failures that fail the test that caused them.

Rule kept here: this is the only module that imports pytest.
"""

from __future__ import annotations

import functools
import json
import re
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .deproxy import Deproxy
from .endpoint import Endpoint
from .handlers import Handler
from .pollthreads import PollThreads
from .record import MessageChain
from .redaction import DEFAULT as DEFAULT_REDACTION
from .redaction import Redaction
from .report import to_har
from .tls import CertificateAuthority

if TYPE_CHECKING:  # the mitm fixture loads it: its YAML parser is a cost only MITM users pay
    from .mitm import MitmEndpoint

# How many of each test's Deproxy's errors the test was told of (at its call, then teardown).
_errors_told: weakref.WeakKeyDictionary[Deproxy, int] = weakref.WeakKeyDictionary()
_har_all = pytest.StashKey[bool]()  # --deproxy-har DIR --deproxy-har-all: every test's HAR
_poll_threads = pytest.StashKey[PollThreads]()
# The poll threads the session keeps between tests (one per endpoint a test makes, up to this).
SESSION_POLL_THREADS = 8
SCENARIO_MARKER = "deproxy_scenario"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deproxy", "pytest-deproxy")
    group.addoption(
        "--deproxy-scenario",
        metavar="NAME",
        help="scenario the mitm fixture replays when a test has no deproxy_scenario marker",
    )
    group.addoption(
        "--deproxy-record",
        action="store_true",
        help="start the mitm fixture recording: unmatched requests go upstream and are saved",
    )
    group.addoption(
        "--deproxy-scenarios-path",
        metavar="DIR",
        help="directory of scenarios for the mitm fixture (default: ini deproxy_scenarios_path, "
        "else scenarios/ under the rootdir)",
    )
    group.addoption(
        "--deproxy-no-diagrams",
        action="store_true",
        help="leave the message-chain diagrams out of failed tests' reports",
    )
    group.addoption(
        "--deproxy-har",
        metavar="DIR",
        help="write a HAR 1.2 file of each failed test's message chains into DIR",
    )
    group.addoption(
        "--deproxy-har-all",
        action="store_true",
        help="with --deproxy-har: write a HAR file for every test that made requests",
    )
    parser.addini(
        "deproxy_scenarios_path",
        help="directory of scenarios for the mitm fixture, relative to the ini file",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_har_all] = bool(
        config.getoption("--deproxy-har") and config.getoption("--deproxy-har-all")
    )
    config.addinivalue_line(
        "markers", f"{SCENARIO_MARKER}(name): the scenario the mitm fixture replays for this test"
    )
    # Kept in the config, not in a session fixture: a session fixture that the deproxy
    # fixture requested would cost pytest work on every test.
    config.stash[_poll_threads] = PollThreads(keep_idle=SESSION_POLL_THREADS)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _poll_threads in config.stash:
        config.stash[_poll_threads].shutdown()


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    # pytester's in-process runs take the modules imported during them out of sys.modules
    # when they end. A compiled module cannot be loaded again: the next import gives new
    # Python classes to the old extension, which holds the first ones (cryptography then
    # refuses its own curve: "curve must be an EllipticCurve instance"). So where pytester
    # may run, the lazily loaded packages with compiled parts are loaded before it does.
    if manager.get_name(plugin) == "pytester":
        _load_compiled_dependencies()


def _load_compiled_dependencies() -> None:
    import trustme  # noqa: F401  (and cryptography, which trustme imports)
    import yaml  # noqa: F401  (and its C parser, yaml._yaml, where installed)


def _scenarios_path(config: pytest.Config) -> Path:
    option = config.getoption("--deproxy-scenarios-path")
    if option:
        return Path(option).resolve()
    ini = config.getini("deproxy_scenarios_path")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / str(ini)).resolve()
    return config.rootpath / "scenarios"


def _scenario_for(item: pytest.Item) -> str:
    marker = item.get_closest_marker(SCENARIO_MARKER)
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], str):
            pytest.fail(
                f"@pytest.mark.{SCENARIO_MARKER} takes one scenario name, like "
                f'@pytest.mark.{SCENARIO_MARKER}("scenario_name"); got {marker.args!r}',
                pytrace=False,
            )
        return str(marker.args[0])
    return str(item.config.getoption("--deproxy-scenario") or "default")


def _new_errors(deproxy: Deproxy) -> list[BaseException]:
    """The handler errors of ``deproxy`` that its test has not been told about yet."""
    errors = deproxy.errors
    told = _errors_told.get(deproxy, 0)
    if len(errors) == told:
        return []
    _errors_told[deproxy] = len(errors)
    return errors[told:]


def _raise_new_errors(deproxy: Deproxy) -> None:
    fresh = _new_errors(deproxy)
    if len(fresh) == 1:
        raise fresh[0]
    if fresh:
        raise ExceptionGroup(f"{len(fresh)} handlers raised in endpoint threads", fresh)  # type: ignore[type-var]


def _deproxy_of(item: pytest.Item) -> Deproxy | None:
    deproxy = getattr(item, "funcargs", {}).get("deproxy")
    return deproxy if isinstance(deproxy, Deproxy) else None


def _mitm_of(item: pytest.Item) -> MitmEndpoint | None:
    mitm = getattr(item, "funcargs", {}).get("mitm")
    if mitm is None:
        return None
    from .mitm import MitmEndpoint

    return mitm if isinstance(mitm, MitmEndpoint) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        result = yield
    except BaseException as failure:
        # The test failed on its own: tell of the handler errors on that failure, not as a
        # second outcome of the same test.
        deproxy = _deproxy_of(item)
        for error in _new_errors(deproxy) if deproxy else []:
            failure.add_note(f"meanwhile, in an endpoint thread: {error}")
        raise
    deproxy = _deproxy_of(item)
    if deproxy is not None:
        _raise_new_errors(deproxy)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    # Every test's three reports pass here: a passed one, unless every test's HAR is asked
    # for, needs nothing (the options are read once, at configure).
    if report.when != "call" or not (report.failed or item.config.stash.get(_har_all, True)):
        return report
    config = item.config
    deproxy = _deproxy_of(item)
    chains = deproxy.chains if deproxy is not None else []
    if report.failed and chains and not config.getoption("--deproxy-no-diagrams"):
        text = "\n\n".join(chain.diagram() for chain in chains)
        report.sections.append(("deproxy: message chains", text))
    mitm = _mitm_of(item)
    if report.failed and mitm is not None and mitm.misses:
        text = "\n\n".join(miss.explanation for miss in mitm.misses)
        report.sections.append(("deproxy: requests no recorded interaction matched", text))
    har_directory = config.getoption("--deproxy-har")
    if har_directory and chains and (report.failed or config.getoption("--deproxy-har-all")):
        redaction = mitm.redaction if mitm is not None else DEFAULT_REDACTION
        _write_har(Path(har_directory), item.nodeid, chains, report.outcome, redaction)
    return report


def _write_har(
    directory: Path,
    nodeid: str,
    chains: list[MessageChain],
    outcome: str,
    redaction: Redaction,
) -> None:
    """Secrets redacted: the defaults plus the names the test's ``mitm`` was told to hide."""
    directory.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    document = to_har(chains, comment=f"{nodeid}: {outcome}", redaction=redaction)
    (directory / f"{name}.har").write_text(json.dumps(document, indent=1), encoding="utf-8")


@pytest.fixture(scope="session")
def deproxy_ca() -> Iterator[CertificateAuthority]:
    """The session's certificate authority: every TLS endpoint of every test is signed by it."""
    ca = CertificateAuthority()
    yield ca
    ca.close()


def _deproxy_for_a_test() -> Iterator[Deproxy]:
    """A :class:`Deproxy` for one test, shut down after it.

    An exception raised by a handler in an endpoint thread fails the test. Its CA is the
    session's ``deproxy_ca`` (or the fixture that overrides it), set up when the test first
    needs a CA, not before: a test with no TLS never asks for it.
    """
    # No `request` argument: pytest makes a fixture definition for it on every test (~45 us
    # a test in a whole run, issue 18). What the request is needed for, the setup hook below
    # gives the instance as the fixture returns it.
    instance = Deproxy()
    try:
        yield instance
    finally:
        instance.shutdown()
    _raise_new_errors(instance)


deproxy = pytest.fixture(name="deproxy")(_deproxy_for_a_test)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    value = yield
    if fixturedef.func is _deproxy_for_a_test and isinstance(value, Deproxy):
        # Before any endpoint is made: the fixtures that use this one are not set up yet.
        value._ca_source = functools.partial(request.getfixturevalue, "deproxy_ca")
        value._poll_threads = request.config.stash[_poll_threads]
    return value


@pytest.fixture
def mitm(request: pytest.FixtureRequest, deproxy: Deproxy) -> MitmEndpoint:
    """A scenario-replaying MITM forward proxy on the test's ``deproxy``.

    Scenario: the test's ``@pytest.mark.deproxy_scenario("name")``, else ``--deproxy-scenario``,
    else ``default``. Scenarios path: ``--deproxy-scenarios-path``, else the ini option
    ``deproxy_scenarios_path``, else ``scenarios/`` under the rootdir. ``--deproxy-record``
    starts it recording. Point clients at it with ``mitm.proxy_env()``.
    """
    config = request.config
    return deproxy.add_mitm_endpoint(
        scenarios_path=_scenarios_path(config),
        active_scenario=_scenario_for(request.node),
        record=bool(config.getoption("--deproxy-record")),
    )


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
