"""The servers a load generator measures, each started in a process of its own.

    python benchmarks/servers.py KIND [--tree DIR] [--scenarios DIR]

It prints the port, serves until a line (or end of file) arrives on standard input, then
prints the CPU seconds the process used since it started serving and shuts down. ``--tree``
puts another checkout of the package first on ``sys.path`` (benchmarks/against_commit.py
measures an earlier commit that way), so only the API every commit has is used here.

Rule kept here: every kind runs at the settings a user gets without asking (``Deproxy()``,
``add_endpoint()``), except ``endpoint-capped``, which exists to be compared with them. The
kinds (``KINDS``): the endpoint with its stock handler; capped; a custom function handler
(marked non-blocking when the package has a way to say so); over TLS; the MITM replaying one
recorded interaction; the endpoint with raw transcripts not captured; the bare selector loop
(floor_selector.py); pytest-httpserver.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MITM_HOST = "api.example.org"
MITM_PATH = "/item"
MITM_BODY = "replayed"


def custom_handler() -> tuple[Callable[..., Any], str]:
    """A user's own handler that never waits, marked so if this package has a mark for it
    (``non_blocking``, looked up with a fallback so the row works before and after there is
    one); the second value says which."""
    import pytest_deproxy
    from pytest_deproxy import Response, handlers

    def custom(request: Any) -> Any:
        return Response(200)

    mark = getattr(handlers, "non_blocking", None) or getattr(pytest_deproxy, "non_blocking", None)
    if callable(mark):
        marked = mark(custom)
        return (marked if marked is not None else custom), "marked with non_blocking"
    return custom, "a plain function (this version has no non_blocking mark)"


def add_endpoint_kwargs(deproxy: Any) -> dict[str, Any]:
    """``non_blocking=True`` when ``add_endpoint`` takes it (a mark on the endpoint, not on
    the handler), else nothing."""
    if "non_blocking" in inspect.signature(deproxy.add_endpoint).parameters:
        return {"non_blocking": True}
    return {}


def write_scenario(root: Path) -> list[dict[str, Any]]:
    """One recorded interaction for ``GET http://api.example.org/item``; the services list."""
    directory = root / "default" / "Api"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "interaction_0.yaml").write_text(
        f"request: {{method: GET, url: 'http://{MITM_HOST}{MITM_PATH}', headers: {{}}, body: null}}\n"
        f"response: {{status: {{code: 200, message: OK}}, headers: {{}}, body: '{MITM_BODY}'}}\n"
    )
    return [{"type": "BaseService", "name": "Api", "hosts_list": [MITM_HOST]}]


def start(kind: str, scenarios: Path) -> tuple[int, Callable[[], None], str]:
    """Start ``kind``; its port, a function that stops it, and a note on what it is."""
    if kind == "floor-selector":
        sys.path.insert(1, str(HERE))
        import floor_selector

        (_, port), stop = floor_selector.start_floor_selector()
        return port, stop, "selector loop, heads.glance_request_head, canned reply"
    if kind == "httpserver":
        from pytest_httpserver import HTTPServer

        # werkzeug logs every request; unread, that log blocks the server on a full pipe,
        # and read, it is work the endpoint does not do: off, the baseline's best case.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        httpserver = HTTPServer(host="127.0.0.1", port=0)
        httpserver.expect_request("/").respond_with_data("")
        httpserver.start()
        return (
            httpserver.port,
            httpserver.stop,
            "pytest-httpserver, one expect_request, request log off",
        )

    from pytest_deproxy import Deproxy

    if kind == "endpoint-capped":
        deproxy = Deproxy(keep_chains=1000)
        deproxy.add_endpoint(keep_handlings=1000)
        note = "Deproxy(keep_chains=1000), add_endpoint(keep_handlings=1000)"
    else:
        deproxy = Deproxy()
        note = "defaults"
        if kind == "endpoint":
            deproxy.add_endpoint()
        elif kind == "no-transcript":
            from pytest_deproxy import connections

            # no tap: the streams then hand their bytes to nobody
            connections.Transcript.tap = lambda self: None  # type: ignore[assignment,method-assign,return-value]
            deproxy.add_endpoint()
            note = "defaults, no Transcript.tap (streams with no on_read, on_write)"
        elif kind == "custom":
            handler, note = custom_handler()
            deproxy.add_endpoint(default_handler=handler, **add_endpoint_kwargs(deproxy))
        elif kind == "endpoint-tls":
            deproxy.add_endpoint(tls=True)
        elif kind == "mitm":
            services = write_scenario(scenarios)
            mitm = deproxy.add_mitm_endpoint(scenarios_path=scenarios, services=services)
            mitm.set_scenario("default")
        else:
            raise SystemExit(f"unknown server kind {kind!r}; choose one of {', '.join(KINDS)}")
    return deproxy.endpoints[0].port, deproxy.shutdown, note


KINDS = (
    "endpoint",
    "endpoint-capped",
    "custom",
    "endpoint-tls",
    "mitm",
    "no-transcript",
    "floor-selector",
    "httpserver",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--tree", help="a checkout of the package to import instead of this one")
    options = parser.parse_args()
    if options.tree:
        sys.path.insert(0, options.tree)
    with tempfile.TemporaryDirectory(prefix="deproxy-bench-") as scratch:
        port, stop, note = start(options.kind, Path(scratch))
        import pytest_deproxy

        print(port, note, sep="\t", flush=True)
        print(pytest_deproxy.__file__, flush=True)
        started = os.times()
        sys.stdin.readline()
        ended = os.times()
        print(ended.user + ended.system - started.user - started.system, flush=True)
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
