"""The rows measured under a load generator, each server in a process of its own
(benchmarks/load.py, servers.py): the endpoint against the bare selector loop and against
pytest-httpserver, a custom handler against the stock one, TLS and the MITM against the pinned
commit, raw transcripts on and off, and a burst of 1,000 connects.

Rule kept here: every server runs at default settings, a fresh process for every round;
wrk's socket errors and non-2xx answers are noted on the row, never folded into a rate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version

import connects
import load
from against_commit import checkout
from harness import (
    SETTINGS,
    ClockAndCpu,
    Row,
    Spread,
    Target,
    alternate,
    rate_spread,
    ratios,
    scaled,
    unavailable,
)
from servers import MITM_HOST, MITM_PATH

# -- the endpoint under wrk -----------------------------------------------------------------


def wrk_rates(
    kinds: dict[str, tuple[str, dict[str, object]]], connections: int, notes: list[str]
) -> dict[str, list[float]]:
    """Requests per second per round for each labelled (kind, measure() options), by the
    clock or (``--cpu``) per second of the server's CPU; the other kind's ratio, what each
    server is, wrk's errors and non-2xx answers go into ``notes``."""
    troubles: dict[str, list[int]] = {label: [0, 0] for label in kinds}
    what: dict[str, str] = {}  # what each server says it is
    figures = ClockAndCpu()

    def one(label: str) -> Callable[[], float]:
        kind, options = kinds[label]

        def measure() -> float:
            result = load.measure(kind, connections, SETTINGS.seconds, **options)  # type: ignore[arg-type]
            troubles[label][0] += result.errors
            troubles[label][1] += result.non_2xx
            what[label] = result.note
            return figures.add(label, result.rate, result.per_cpu_second)

        return measure

    alternate({label: one(label) for label in kinds}, SETTINGS.rounds)
    for label, note in what.items():
        if note != "defaults":
            notes.append(f"{label}: {note}")
    for label, (errors, non_2xx) in troubles.items():
        if errors or non_2xx:
            notes.append(f"{label}: {errors} socket errors, {non_2xx} non-2xx answers from wrk")
    labels = list(kinds)
    if len(labels) == 2:
        notes.append(figures.other_note(labels[0], labels[1]))
    return figures.judged()


def wrk_spread(values: list[float]) -> str:
    return rate_spread(values, " req/CPU-s" if SETTINGS.cpu else " req/s")


def need_wrk(name: str, what: str) -> Row | None:
    if shutil.which("wrk") is None:
        return unavailable(name, what, "wrk is not installed (apt-get install wrk)")
    return None


def bench_endpoint() -> Iterator[Row]:
    what = "endpoint, stock handler, under wrk"
    if (missing := need_wrk("endpoint", what)) is not None:
        yield missing
        return
    # The third case: each request says "Connection: keep-alive", as python-requests' and
    # browsers' do (wrk's say nothing); the floor reads the same heads.
    said = ("Connection: keep-alive",)
    for connections, headers in ((10, ()), (100, ()), (10, said)):
        notes: list[str] = []
        options = {"headers": headers} if headers else {}
        rates = wrk_rates(
            {"endpoint": ("endpoint", options), "floor": ("floor-selector", options)},
            connections,
            notes,
        )
        saying = ", each request saying Connection: keep-alive" if headers else ""
        yield Row(
            "endpoint",
            f"{what}, {connections} keep-alive connections{saying}",
            wrk_spread(rates["endpoint"]),
            "bare selector loop + heads reader " + wrk_spread(rates["floor"]),
            ratios(rates["endpoint"], rates["floor"]),
            Target(">=", 0.7),
            notes=notes,
        )


def bench_httpserver() -> Iterator[Row]:
    what = "endpoint vs pytest-httpserver under wrk, 10 connections"
    if (missing := need_wrk("httpserver", what)) is not None:
        yield missing
        return
    try:
        version("pytest-httpserver")
    except PackageNotFoundError:
        yield unavailable(
            "httpserver", what, "pytest-httpserver is not installed (the bench extra)"
        )
        return
    notes = ["pytest-httpserver answers HTTP/1.0 and closes: wrk reconnects for each request"]
    rates = wrk_rates({"endpoint": ("endpoint", {}), "httpserver": ("httpserver", {})}, 10, notes)
    yield Row(
        "httpserver",
        what,
        wrk_spread(rates["endpoint"]),
        "pytest-httpserver " + wrk_spread(rates["httpserver"]),
        ratios(rates["endpoint"], rates["httpserver"]),
        Target(">=", 10),
        notes=notes,
    )


def bench_custom() -> Iterator[Row]:
    what = "custom handler (a plain function returning a Response) vs the stock handler"
    if (missing := need_wrk("custom", what)) is not None:
        yield missing
        return
    notes: list[str] = []
    rates = wrk_rates({"custom": ("custom", {}), "stock": ("endpoint", {})}, 10, notes)
    yield Row(
        "custom",
        f"{what}, wrk, 10 connections",
        wrk_spread(rates["custom"]),
        "stock handler " + wrk_spread(rates["stock"]),
        ratios(rates["custom"], rates["stock"]),
        Target(">=", 0.7),
        notes=notes,
    )


MITM_SCRIPT = f'wrk.path = "http://{MITM_HOST}{MITM_PATH}"\nwrk.headers["Host"] = "{MITM_HOST}"\n'


def against_baseline(name: str, cases: list[tuple[str, str, dict[str, object]]]) -> Iterator[Row]:
    """Each (what, kind, measure() options) from this checkout against the pinned commit."""
    commit = SETTINGS.baseline_commit
    if (missing := need_wrk(name, cases[0][0])) is not None:
        yield missing
        return
    try:
        with checkout(commit) as tree:
            for what, kind, options in cases:
                notes: list[str] = []
                rates = wrk_rates(
                    {"this checkout": (kind, options), commit: (kind, {**options, "tree": tree})},
                    10,
                    notes,
                )
                yield Row(
                    name,
                    what,
                    wrk_spread(rates["this checkout"]),
                    f"commit {commit} " + wrk_spread(rates[commit]),
                    ratios(rates["this checkout"], rates[commit]),
                    Target(">=", 2),
                    notes=notes,
                )
    except RuntimeError as exc:
        if "cannot unpack" not in str(exc):
            raise
        yield unavailable(name, cases[0][0], str(exc).splitlines()[0])


def bench_tls() -> Iterator[Row]:
    yield from against_baseline(
        "tls",
        [
            (
                "TLS endpoint under wrk, 10 keep-alive connections",
                "endpoint-tls",
                {"scheme": "https"},
            ),
            (
                "TLS endpoint under wrk, a new connection (handshake) per request",
                "endpoint-tls",
                {"scheme": "https", "headers": ("Connection: close",)},
            ),
        ],
    )


def bench_mitm() -> Iterator[Row]:
    yield from against_baseline(
        "mitm",
        [
            (
                "MITM replaying one recorded interaction under wrk (plain HTTP proxy requests)",
                "mitm",
                {"script": MITM_SCRIPT},
            )
        ],
    )


def bench_transcript() -> Iterator[Row]:
    what = "raw transcripts captured (as shipped) vs not captured (no transcript taps the streams)"
    if (missing := need_wrk("transcript", what)) is not None:
        yield missing
        return
    notes = ["no setting turns capture off: the off side patches connections.Transcript.tap"]
    rates = wrk_rates({"on": ("endpoint", {}), "off": ("no-transcript", {})}, 10, notes)
    yield Row(
        "transcript",
        f"{what}, wrk, 10 connections",
        wrk_spread(rates["on"]),
        "not captured " + wrk_spread(rates["off"]),
        ratios(rates["on"], rates["off"]),
        Target(">=", 0.9),
        notes=notes,
    )


# -- bursts of connections ------------------------------------------------------------------


def bench_connects() -> Iterator[Row]:
    count = scaled(1000, 100)
    outcomes: dict[str, list[int]] = {"endpoint": [], "floor": []}

    def one(kind: str, label: str) -> Callable[[], float]:
        def measure() -> float:
            seconds, answered = connects.measure(kind, count)
            outcomes[label].append(answered)
            return seconds

        return measure

    times = alternate(
        {"endpoint": one("endpoint", "endpoint"), "floor": one("floor-selector", "floor")},
        SETTINGS.rounds,
    )
    all_answered = all(n == count for n in outcomes["endpoint"])
    seconds = Spread(times["endpoint"])
    row = Row(
        "connects",
        f"{count:,} simultaneous connects, each answered once (to the last answer)",
        f"{seconds.show(' s', 3)}, answered {min(outcomes['endpoint'])}-{max(outcomes['endpoint'])}/{count}",
        f"bare selector loop {Spread(times['floor']).show(' s', 3)}",
        ratios(times["endpoint"], times["floor"], times=True),
        Target("<=", 0.25),
        checked=seconds.median,
        notes=["target on the endpoint's seconds (ratio: times the selector loop's)"],
    )
    if not all_answered:
        row.verdict = "NOT MET"
        row.notes.append("not every connection was answered in every round")
    yield row


# This module's rows alone: python benchmarks/rows_load.py [--quick] [ROW ...]
if __name__ == "__main__":
    import sys

    import run

    sys.exit(run.main_for_module("rows_load", sys.argv[1:]))
