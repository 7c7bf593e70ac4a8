"""The ``deproxy`` command: ``deproxy mitm`` runs the MITM endpoint as a standalone server,
for systems under test that run in other processes or containers; ``deproxy conformance``
runs the conformance checks against a proxy (see :mod:`pytest_deproxy.conformance.command`).

Rule kept here: it prints exactly two lines on standard output once it listens
(``proxy: URL`` and ``ca: PATH``), logs each request and its decision on standard error, and
exits 0 on SIGINT or SIGTERM, 2 when it cannot start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .conformance import command as conformance_command
from .deproxy import Deproxy
from .errors import DeproxyError
from .tls import CertificateAuthority


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deproxy", description="pytest-deproxy's servers, standalone."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    mitm = commands.add_parser(
        "mitm",
        help="run the scenario-replaying MITM forward proxy",
        description="Run the MITM endpoint: point HTTP_PROXY/HTTPS_PROXY at it and trust its CA.",
    )
    mitm.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    mitm.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 takes a free one"
    )
    mitm.add_argument(
        "--scenarios-path", required=True, metavar="DIR", help="directory of scenarios"
    )
    mitm.add_argument("--scenario", default="default", help="active scenario (default: default)")
    mitm.add_argument("--record", action="store_true", help="start recording unmatched requests")
    mitm.add_argument(
        "--ca-cert", metavar="PEM", help="CA certificate to sign with (with --ca-key)"
    )
    mitm.add_argument("--ca-key", metavar="PEM", help="the CA's private key")
    mitm.add_argument(
        "--insecure-upstream",
        action="store_true",
        help="do not verify upstream TLS certificates (INSPIRE-MITMProxy's --ssl-insecure)",
    )
    mitm.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST=URL",
        help="send HOST's upstream traffic to URL instead (repeatable)",
    )
    conformance = commands.add_parser(
        "conformance",
        help="run the intermediary conformance checks against a proxy",
        description="Hold a proxy to RFC 9110/9112 from both sides: a packaged one started "
        "from a shipped config (--proxy), or one already running (--url, --origin-port).",
    )
    conformance_command.add_arguments(conformance)
    conformance.set_defaults(conformance_parser=conformance)
    return parser


def _upstreams(values: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    upstreams = {}
    for value in values:
        host, separator, url = value.partition("=")
        if not separator or not host or not url:
            parser.error(f"--upstream takes HOST=URL, got {value!r}")
        upstreams[host] = url
    return upstreams


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command == "conformance":
        return conformance_command.main(options, options.conformance_parser)
    if bool(options.ca_cert) != bool(options.ca_key):
        parser.error("--ca-cert and --ca-key go together")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    try:
        ca = (
            CertificateAuthority.from_files(options.ca_cert, options.ca_key)
            if options.ca_cert
            else CertificateAuthority()
        )
    except ValueError as exc:
        print(f"deproxy mitm: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # Not `with`: leaving a `with Deproxy()` raises what went wrong in endpoint threads, which
    # suits a test; a server reports it (below) and still stops cleanly.
    deproxy = Deproxy(ca=ca)
    try:
        try:
            mitm = deproxy.add_mitm_endpoint(
                options.port,
                hostname=options.host,
                scenarios_path=options.scenarios_path,
                active_scenario=options.scenario,
                record=options.record,
                upstreams=_upstreams(options.upstream, parser),
                verify_upstream=not options.insecure_upstream,
            )
        except (DeproxyError, ValueError) as exc:
            print(f"deproxy mitm: {exc}", file=sys.stderr)
            return 2
        print(f"proxy: {mitm.url}", flush=True)
        print(f"ca: {options.ca_cert or ca.cert_pem_path}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        deproxy.shutdown()
    for error in deproxy.errors:
        print(f"deproxy mitm: during the run: {error}", file=sys.stderr)
    ca.close()
    logging.getLogger("pytest_deproxy.mitm").info("stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
