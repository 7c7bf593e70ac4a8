"""What the record costs at default settings against a capped record, over a long run.

Each round runs two fresh processes, one at default settings (``Deproxy()``,
``add_endpoint()``) and one capped (``Deproxy(keep_chains=1000)``,
``add_endpoint(keep_handlings=1000)``), in alternating order, each sending ``requests``
``make_request`` calls over one persistent connection. Each reports its rate, its resident
memory growth, the time the cyclic garbage collector took (``gc.callbacks``) and the
GC-tracked objects each request left behind. :func:`measure` returns the figures;
``python benchmarks/record_defaults.py [requests] [rounds]`` prints them;
:func:`measure_costs` (``... record_defaults.py costs [requests] [rounds]``) what the record
and the raw transcripts add per request.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

CHILD = r"""
import gc, json, sys, time
from pytest_deproxy import Deproxy

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

setting = sys.argv[1]
requests = int(sys.argv[2])
keep = {"capped": 1000, "nothing-kept": 0}.get(setting)
options = {} if keep is None else {"keep_chains": keep}
endpoint_options = {} if keep is None else {"keep_handlings": keep}
if setting == "no-transcripts":
    from pytest_deproxy import serving
    serving.TRANSCRIPT_LIMIT = 0  # each transcript then keeps nothing
gc_time = [0.0, 0.0]  # total, start of the current collection
def on_gc(phase, info):
    if phase == "start":
        gc_time[1] = time.perf_counter()
    else:
        gc_time[0] += time.perf_counter() - gc_time[1]

with Deproxy(**options) as deproxy:
    server = deproxy.add_endpoint(**endpoint_options)
    connection = deproxy.connect(server.url)
    for _ in range(200):
        deproxy.make_request(server.url, connection=connection)
    gc.collect()
    objects_before, rss_before = len(gc.get_objects()), rss_kib()
    gc.callbacks.append(on_gc)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        deproxy.make_request(server.url, connection=connection)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    rss_after = rss_kib()
    gc.collect()
    objects_after = len(gc.get_objects())
    print(json.dumps({
        "rate": requests / wall,
        "cpu_rate": requests / cpu,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "gc_us_per_request": gc_time[0] / requests * 1e6,
        "gc_share": gc_time[0] / wall,
        "tracked_per_request": (objects_after - objects_before) / requests,
        "chains_kept": len(deproxy.chains),
        "handlings_kept": len(server.handlings),
    }))
"""


def run_one(setting: str, requests: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", CHILD, setting, str(requests)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output)
    return result


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def measure(requests: int = 100_000, rounds: int = 5) -> dict[str, Any]:
    """Alternating rounds of default and capped runs. Returns the per-run figures under
    ``"default"`` and ``"capped"`` (lists of dicts), and (min, median, max) spreads:
    ``"rate_ratio"`` (default / capped, per round), ``"rss_growth_mib"`` and
    ``"gc_us_per_request"`` and ``"tracked_per_request"`` for each setting."""
    runs: dict[str, list[dict[str, float]]] = {"default": [], "capped": []}
    ratios = []
    for round_number in range(rounds):
        order = ["default", "capped"] if round_number % 2 == 0 else ["capped", "default"]
        for setting in order:
            runs[setting].append(run_one(setting, requests))
        ratios.append(runs["default"][-1]["rate"] / runs["capped"][-1]["rate"])
    figures: dict[str, Any] = {"requests": requests, "rounds": rounds, **runs}
    figures["rate_ratio"] = spread(ratios)
    for setting in runs:
        for key in ("rate", "rss_growth_mib", "gc_us_per_request", "tracked_per_request"):
            figures[f"{setting}_{key}"] = spread([run[key] for run in runs[setting]])
    return figures


def measure_costs(requests: int = 30_000, rounds: int = 5) -> dict[str, Any]:
    """What the record and the raw transcripts add per request at default settings: rounds
    of ``default``, ``nothing-kept`` (``keep_chains=0``, ``keep_handlings=0``) and
    ``no-transcripts`` (each connection's transcript keeping nothing), in rotating order.
    Returns per setting the runs, and (min, median, max) of the microseconds of CPU (client
    and endpoint: both run in the process) per request the record (``"record_us"``) and the
    transcripts (``"transcripts_us"``) add, each from one round's pair of runs."""
    settings = ["default", "nothing-kept", "no-transcripts"]
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in settings}
    record_us, transcripts_us = [], []
    for round_number in range(rounds):
        shift = round_number % len(settings)
        for setting in settings[shift:] + settings[:shift]:
            runs[setting].append(run_one(setting, requests))
        # CPU seconds of the process (client and endpoint both run in it): the machine's
        # other load moves them far less than wall-clock rates.
        per_request = {setting: 1e6 / runs[setting][-1]["cpu_rate"] for setting in settings}
        record_us.append(per_request["default"] - per_request["nothing-kept"])
        transcripts_us.append(per_request["default"] - per_request["no-transcripts"])
    return {
        "requests": requests,
        "rounds": rounds,
        **runs,
        "record_us": spread(record_us),
        "transcripts_us": spread(transcripts_us),
        "us_per_request": {
            setting: spread([1e6 / run["cpu_rate"] for run in runs[setting]])
            for setting in settings
        },
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "costs":
        requests = int(argv[1]) if len(argv) > 1 else 30_000
        rounds = int(argv[2]) if len(argv) > 2 else 5
        costs = measure_costs(requests, rounds)
        print(f"{requests:,} make_request calls per run, {rounds} rounds (min/median/max)")
        for setting, (low, mid, high) in costs["us_per_request"].items():
            print(f"  {setting:15} {low:.1f} / {mid:.1f} / {high:.1f} us of CPU per request")
        for key, label in (("record_us", "the record"), ("transcripts_us", "raw transcripts")):
            low, mid, high = costs[key]
            print(f"  {label}: {low:+.1f} / {mid:+.1f} / {high:+.1f} us per request")
        return 0
    requests = int(argv[0]) if argv else 100_000
    rounds = int(argv[1]) if len(argv) > 1 else 5
    figures = measure(requests, rounds)
    print(f"{requests:,} make_request calls per run, {rounds} alternating rounds (min/median/max)")
    low, mid, high = figures["rate_ratio"]
    print(f"  rate, default / capped:      {low:.2f} / {mid:.2f} / {high:.2f}  (target >= 0.90)")
    for setting in ("default", "capped"):
        print(f"  {setting}:")
        for key, unit in (
            ("rate", "req/s"),
            ("rss_growth_mib", "MiB RSS growth"),
            ("gc_us_per_request", "us of GC per request"),
            ("tracked_per_request", "GC-tracked objects left per request"),
        ):
            low, mid, high = figures[f"{setting}_{key}"]
            print(f"    {low:,.1f} / {mid:,.1f} / {high:,.1f}  {unit}")
        kept = figures[setting][-1]
        print(f"    kept: {kept['chains_kept']:,} chains, {kept['handlings_kept']:,} handlings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
