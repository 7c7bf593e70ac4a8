"""``deproxy conformance``: run the conformance checks against a packaged proxy started from
a shipped config (``--proxy NAME``) or against one already running (``--url URL
--origin-port PORT``), print the text report, and write the JSON and Markdown reports.

Rules kept here: the exit status is 1 when any check fails, else 0; a packaged proxy that is
not installed is skipped with the reason (status 0, and a JSON report that says so), a proxy
that will not start is status 2 with what it printed. Every report states the configuration
its verdicts were made with: the version and the whole config text for a packaged proxy.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..deproxy import Deproxy
from ..errors import DeproxyError
from .check import Check
from .proxies import PROXIES, NotInstalled, started
from .runner import Report, run, select, write_reports

ORIGIN_TIMEOUT = 5.0  # seconds the origin waits for the rest of a request the proxy began


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``deproxy conformance``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--proxy", choices=sorted(PROXIES), help="start this packaged proxy")
    which.add_argument("--url", help="test the running proxy at this http:// URL")
    parser.add_argument(
        "--origin-port", type=int, help="with --url: the port the proxy forwards to on 127.0.0.1"
    )
    parser.add_argument("--report-json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--report-md", metavar="FILE", help="write the results as a table")
    parser.add_argument("--only", metavar="PATTERN", help="run the checks whose id contains it")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)"
    )


def main(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if options.url and not options.origin_port:
        parser.error("--url needs --origin-port: the port on 127.0.0.1 the proxy forwards to")
    if options.proxy and options.origin_port:
        parser.error("--origin-port goes with --url; --proxy picks a free port itself")
    try:
        checks = select(options.only)
    except ValueError as exc:
        parser.error(str(exc))
    deproxy = Deproxy()  # not `with`: what goes wrong in endpoint threads is in the verdicts
    try:
        report = _checked(deproxy, checks, options)
    except NotInstalled as exc:
        print(f"deproxy conformance: skipped {options.proxy}: {exc}", file=sys.stderr)
        if options.report_json:
            with open(options.report_json, "w", encoding="utf-8") as out:
                json.dump({"proxy": options.proxy, "skipped": str(exc), "checks": []}, out)
        return 0
    except DeproxyError as exc:
        print(f"deproxy conformance: {exc}", file=sys.stderr)
        return 2
    finally:
        deproxy.shutdown()
    return _finish(report, options)


def _checked(deproxy: Deproxy, checks: list[Check], options: argparse.Namespace) -> Report:
    """Run ``checks`` against the proxy the options name, in front of an origin endpoint."""
    origin = deproxy.add_endpoint(
        options.origin_port or 0, name="origin", request_timeout=ORIGIN_TIMEOUT
    )
    if options.url:
        description = (
            f"an already running proxy at {options.url}, forwarding to "
            f"127.0.0.1:{origin.port} (its configuration is its operator's)"
        )
        report = run(
            checks,
            deproxy=deproxy,
            url=options.url,
            origin=origin,
            config=description,
            timeout=options.timeout,
        )
    else:
        with started(options.proxy, origin.port) as running:
            description = (
                f"{running.version}, the shipped {running.config_name} (the proxy's "
                f"defaults, forwarding to 127.0.0.1:{origin.port})"
            )
            report = run(
                checks,
                deproxy=deproxy,
                url=running.url,
                origin=origin,
                config=description,
                timeout=options.timeout,
            )
            report.proxy = running.version
            report.config |= {"file": running.config_name, "text": running.config}
    return report


def _finish(report: Report, options: argparse.Namespace) -> int:
    print(report.text())
    write_reports(report, options.report_json, options.report_md)
    return 1 if report.failed else 0
