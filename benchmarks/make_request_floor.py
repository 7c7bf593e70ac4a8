"""``make_request`` at default settings against the bare-h11 floor (``floor.py``).

Both sides of each pair do the same small exchange: a GET answered by an empty 200. The
floor is a bare h11 client against a bare h11 server; ours is ``Deproxy().make_request``
against its own endpoint (default settings: the record kept as it is by default), once on a
persistent connection and once on a fresh connection per call, each case on a Deproxy of
its own. Rounds alternate which goes first. :func:`measure` returns the figures;
``python benchmarks/make_request_floor.py [rounds] [count]`` prints them.
"""

from __future__ import annotations

import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from floor import BareClient, BareServer

from pytest_deproxy import Deproxy


def _rate(action: Callable[[], object], count: int) -> tuple[float, float]:
    """(calls per wall-clock second, calls per CPU second of this process: both sides)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def measure(rounds: int = 7, count: int = 2000, **deproxy_options: Any) -> dict[str, Any]:
    """Per case (``"persistent"``, ``"fresh"``): the ratio make_request / floor in each round,
    as (min, median, max), the same per CPU second of the process (``"cpu_ratio"``: both
    sides run in it, so this one barely moves with the machine's other load), and the median
    rates. ``deproxy_options`` go to ``Deproxy`` (none:
    the defaults)."""
    server = BareServer()
    client = BareClient(server.port)

    def fresh_floor() -> None:
        one = BareClient(server.port)
        one.get()
        one.close()

    figures: dict[str, Any] = {"rounds": rounds, "count": count}
    # A Deproxy per case, made after the last one's record was collected (as run.py does):
    # the fresh case must not walk the persistent case's kept record in its collections.
    for case, persistent in (("persistent", True), ("fresh", False)):
        gc.collect()
        with Deproxy(**deproxy_options) as deproxy:
            url = deproxy.add_endpoint().url
            connection = deproxy.connect(url) if persistent else None
            ours = functools.partial(deproxy.make_request, url, connection=connection)
            floor = client.get if persistent else fresh_floor
            sizes = count if persistent else count // 4
            ratios, cpu_ratios, our_rates, floor_rates = [], [], [], []
            for number in range(rounds):
                if number % 2:
                    mine, base = _rate(ours, sizes), _rate(floor, sizes)
                else:
                    base, mine = _rate(floor, sizes), _rate(ours, sizes)
                ratios.append(mine[0] / base[0])
                cpu_ratios.append(mine[1] / base[1])
                our_rates.append(mine[0])
                floor_rates.append(base[0])
            figures[case] = {
                "ratio": (min(ratios), statistics.median(ratios), max(ratios)),
                "cpu_ratio": (min(cpu_ratios), statistics.median(cpu_ratios), max(cpu_ratios)),
                "rate": statistics.median(our_rates),
                "floor_rate": statistics.median(floor_rates),
            }
            if connection is not None:
                connection.close()
    client.close()
    server.close()
    return figures


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 7
    count = int(argv[1]) if len(argv) > 1 else 2000
    figures = measure(rounds, count)
    print(f"make_request / bare h11 floor, default settings, {rounds} rounds (min/median/max)")
    for case in ("persistent", "fresh"):
        low, mid, high = figures[case]["ratio"]
        cpu_low, cpu_mid, cpu_high = figures[case]["cpu_ratio"]
        print(
            f"  {case:10} {low:.2f} / {mid:.2f} / {high:.2f}   "
            f"({figures[case]['rate']:,.0f} against {figures[case]['floor_rate']:,.0f} req/s); "
            f"per CPU second {cpu_low:.2f} / {cpu_mid:.2f} / {cpu_high:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
