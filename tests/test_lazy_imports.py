"""Loading the plugin leaves out what only some suites need: trustme and cryptography (a CA,
for TLS), the YAML parser (the MITM's scenarios), h2 with hpack and hyperframe (HTTP/2) and
wsproto (WebSocket) load when first used. Each check runs in a new interpreter, since this one
has loaded everything already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

OPTIONAL = (
    "trustme",
    "cryptography",
    "yaml",
    "pytest_deproxy.mitm",
    "h2",
    "hpack",
    "hyperframe",
    "wsproto",
)
H2 = ("h2", "hpack", "hyperframe")


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
    assert not any(loaded[name] for name in (*H2, "wsproto"))


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
        pytest_deproxy.MitmEndpont  # type: ignore[attr-defined]  # noqa: B018


def test_the_mitm_fixture_loads_it_for_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_plain(deproxy, endpoint):
            assert deproxy.make_request(endpoint().url).received_response.code == "200"
            assert "yaml" not in sys.modules
            assert "h2" not in sys.modules and "wsproto" not in sys.modules

        def test_mitm(mitm):
            assert type(mitm).__name__ == "MitmEndpoint"
            assert "yaml" in sys.modules
        """
    )
    (pytester.path / "scenarios" / "default").mkdir(parents=True)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_kept_connection_and_the_stock_handlers_load_neither_h2_nor_wsproto() -> None:
    loaded = loaded_after(
        """
        from pytest_deproxy import Deproxy, handlers
        with Deproxy() as deproxy:
            endpoint = deproxy.add_endpoint(default_handler=handlers.echo)
            with deproxy.connect(endpoint.url) as connection:
                for _ in range(2):
                    chain = deproxy.make_request(endpoint.url, connection=connection)
                    assert chain.received_response.code == "200"
            closing = deproxy.add_endpoint(default_handler=handlers.goaway())
            assert deproxy.make_request(closing.url).received_response is None
        """
    )
    assert not any(loaded[name] for name in (*H2, "wsproto"))


def test_http2_loads_h2_when_used_and_works() -> None:
    loaded = loaded_after(
        """
        import sys
        from pytest_deproxy import Deproxy
        with Deproxy() as deproxy:
            assert "h2" not in sys.modules
            over_tls = deproxy.add_endpoint(tls=True, http2=True)
            chain = deproxy.make_request(over_tls.url, http2=True)
            assert chain.received_response.code == "200"
            assert chain.handlings[0].request.http_version == "2"
            cleartext = deproxy.add_endpoint(http2="h2c")
            with deproxy.connect(cleartext.url, http2="h2c") as connection:
                assert type(connection).__name__ == "H2ClientConnection"
                chain = deproxy.make_request(cleartext.url, connection=connection)
                assert chain.received_response.code == "200"
        """
    )
    assert all(loaded[name] for name in H2)
    assert not loaded["wsproto"]


def test_an_h2c_endpoint_loads_h2_as_it_is_made() -> None:
    loaded = loaded_after(
        """
        from pytest_deproxy import Deproxy
        with Deproxy() as deproxy:
            deproxy.add_endpoint(http2="h2c")
        """
    )
    assert all(loaded[name] for name in H2)


def test_a_websocket_loads_wsproto_when_used_and_works() -> None:
    loaded = loaded_after(
        """
        import sys
        from pytest_deproxy import Deproxy, handlers
        with Deproxy() as deproxy:
            assert "wsproto" not in sys.modules
            endpoint = deproxy.add_endpoint(
                default_handler=handlers.websocket(lambda message, session: message.upper())
            )
            with deproxy.websocket(endpoint.url) as session:
                session.send("hi")
                assert session.receive() == "HI"
        """
    )
    assert loaded["wsproto"]
    assert not any(loaded[name] for name in H2)


def test_each_lazy_name_is_its_home_modules_own() -> None:
    loaded = loaded_after(
        """
        import pytest_deproxy
        from pytest_deproxy import handlers
        from pytest_deproxy.handlers import websocket
        import pytest_deproxy.h2client as h2client
        import pytest_deproxy.upgrade_handlers as upgrade_handlers
        import pytest_deproxy.websocket as websocket_module
        import pytest_deproxy.ws as ws
        import pytest_deproxy.ws_endpoint as ws_endpoint

        assert pytest_deproxy.H2StreamError is h2client.H2StreamError
        assert pytest_deproxy.H2StreamTimeout is h2client.H2StreamTimeout
        assert pytest_deproxy.WebSocketSession is websocket_module.WebSocketSession
        assert pytest_deproxy.Frame is ws.Frame
        assert websocket is upgrade_handlers.websocket
        for name in ("websocket_close", "websocket_drop", "websocket_fragments", "upgrade"):
            assert getattr(handlers, name) is getattr(upgrade_handlers, name), name
        assert handlers.ServerSession is ws_endpoint.ServerSession
        for name in pytest_deproxy.__all__:
            getattr(pytest_deproxy, name)
        """
    )
    assert loaded["wsproto"] and all(loaded[name] for name in H2)


def test_the_lazy_names_are_what_loads_them() -> None:
    """Asking for one lazy name loads its library, and only that one."""
    h2_names = loaded_after("from pytest_deproxy import H2StreamError, H2StreamTimeout")
    assert all(h2_names[name] for name in H2) and not h2_names["wsproto"]
    ws_names = loaded_after(
        "from pytest_deproxy import WebSocketSession\nfrom pytest_deproxy.handlers import upgrade"
    )
    assert ws_names["wsproto"] and not any(ws_names[name] for name in H2)
    frame = loaded_after("from pytest_deproxy import Frame")
    assert not frame["wsproto"]


def test_an_unknown_handler_is_still_an_attribute_error() -> None:
    from pytest_deproxy import handlers

    with pytest.raises(AttributeError, match=r"'pytest_deproxy\.handlers' has no attribute"):
        handlers.websockt  # type: ignore[attr-defined]  # noqa: B018


def test_an_h2c_upgrade_request_to_an_http1_endpoint_is_answered_without_h2() -> None:
    loaded = loaded_after(
        """
        from pytest_deproxy import Deproxy
        asks = {
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAAQCAAAA",
        }
        with Deproxy() as deproxy:
            endpoint = deproxy.add_endpoint()
            chain = deproxy.make_request(endpoint.url, headers=asks)
            assert chain.received_response.code == "200"
            assert chain.handlings[0].request.http_version == "1.1"
        """
    )
    assert not any(loaded[name] for name in H2)
