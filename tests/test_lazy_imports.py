"""Loading the plugin leaves out what only some suites need: trustme and cryptography (a CA,
for TLS) and the YAML parser (the MITM's scenarios) load when first used. Each check runs in a
new interpreter, since this one has loaded everything already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

OPTIONAL = ("trustme", "cryptography", "yaml", "pytest_deproxy.mitm")


def loaded_after(code: str) -> dict[str, bool]:
    """Which of ``OPTIONAL`` a new interpreter has loaded after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps({{name: name in sys.modules for name in {OPTIONAL!r}}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_loading_the_plugin_and_package_loads_none_of_them() -> None:
    loaded = loaded_after("import pytest_deproxy, pytest_deproxy.plugin")
    assert loaded == dict.fromkeys(OPTIONAL, False)


def test_a_plain_http_exchange_loads_none_of_them() -> None:
    loaded = loaded_after(
        """
        from pytest_deproxy import Deproxy
        with Deproxy() as deproxy:
            endpoint = deproxy.add_endpoint()
            assert deproxy.make_request(endpoint.url).received_response.code == "200"
        """
    )
    assert loaded == dict.fromkeys(OPTIONAL, False)


def test_a_tls_endpoint_loads_the_certificate_libraries_and_works() -> None:
    loaded = loaded_after(
        """
        from pytest_deproxy import Deproxy
        with Deproxy() as deproxy:
            endpoint = deproxy.add_endpoint(tls=True)
            chain = deproxy.make_request(endpoint.url)
            assert chain.received_response.code == "200"
        """
    )
    assert loaded["trustme"] and loaded["cryptography"]
    assert not loaded["yaml"]


def test_the_mitm_names_load_the_mitm_when_asked_for() -> None:
    loaded = loaded_after(
        """
        import pytest_deproxy
        from pytest_deproxy import Miss, MitmEndpoint
        assert MitmEndpoint.__module__ == "pytest_deproxy.mitm.proxy"
        assert Miss.__module__ == "pytest_deproxy.mitm.replay"
        """
    )
    assert loaded["yaml"] and loaded["pytest_deproxy.mitm"]


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import pytest_deproxy

    with pytest.raises(AttributeError, match="no attribute 'MitmEndpont'"):
        pytest_deproxy.MitmEndpont  # noqa: B018


def test_the_mitm_fixture_loads_it_for_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_plain(deproxy, endpoint):
            assert deproxy.make_request(endpoint().url).received_response.code == "200"
            assert "yaml" not in sys.modules

        def test_mitm(mitm):
            assert type(mitm).__name__ == "MitmEndpoint"
            assert "yaml" in sys.modules
        """
    )
    (pytester.path / "scenarios" / "default").mkdir(parents=True)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
