"""What every benchmark row is made of: settings, rounds that alternate in shuffled order,
spreads (median [min-max]), targets and verdicts, and the table they print as.

Rule kept here: a ratio is always taken between a subject and its baseline measured in the
same round, and a verdict is the median's. Nothing here knows what is measured: it runs the
measurements it is handed (``alternate``) and times a loop (``timed_rate``).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from against_commit import DEFAULT_BASELINE


@dataclass
class Settings:
    rounds: int = 5
    quick: bool = False
    seconds: int = 3  # of wrk per measurement
    baseline_commit: str = DEFAULT_BASELINE
    cpu: bool = False  # judge by CPU time, not the clock, where a row measures both


SETTINGS = Settings()


def scaled(full: int, quick: int) -> int:
    return quick if SETTINGS.quick else full


# -- rows, spreads and verdicts -------------------------------------------------------------


@dataclass
class Spread:
    """Values over rounds: shown as median [min-max]."""

    values: list[float]
    best: float | None = None  # for ratios: the best round of each side, divided

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 2, scale: float = 1.0) -> str:
        def number(value: float) -> str:
            return f"{value * scale:,.{digits}f}"

        low, high = min(self.values), max(self.values)
        spread = f" [{number(low)}-{number(high)}]" if len(self.values) > 1 else ""
        return f"{number(self.median)}{unit}{spread}"


def ratios(subject: list[float], baseline: list[float], *, times: bool = False) -> Spread:
    """One ratio per round: subject and baseline of the same round divided. ``best`` divides
    the best round of each (the highest rate, or with ``times`` the shortest time): other
    work on the machine only ever slows a round down, so the best rounds are the least
    disturbed, a second estimate to hold the median against."""
    pick = min if times else max
    return Spread(
        [s / b if b else float("inf") for s, b in zip(subject, baseline, strict=True)],
        pick(subject) / pick(baseline) if pick(baseline) else None,
    )


@dataclass
class Target:
    op: str  # ">=" or "<="
    value: float

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Row:
    name: str  # the row group, as selected on the command line
    what: str
    measured: str
    baseline: str
    ratio: Spread | None
    target: Target | None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    checked: float | None = None  # what the target is held to, when not the median ratio

    def __post_init__(self) -> None:
        if self.verdict:
            return
        value = (
            self.checked
            if self.checked is not None
            else (self.ratio.median if self.ratio else None)
        )
        if self.target is None or value is None:
            self.verdict = "report"
        else:
            self.verdict = "met" if self.target.met(value) else "NOT MET"


def unavailable(name: str, what: str, why: str) -> Row:
    return Row(name, what, "-", "-", None, None, verdict=f"n/a: {why}")


def alternate(subjects: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each subject once per round, in a new shuffled order every round."""
    results: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name in random.sample(list(subjects), len(subjects)):
            results[name].append(subjects[name]())
    return results


class ClockAndCpu:
    """Each label's figures by the clock and by CPU time, round by round. ``judged`` gives
    the ones the verdict uses (the clock, or CPU time with ``--cpu``); ``other_note`` shows
    the other kind's ratio, so a row always carries both."""

    def __init__(self) -> None:
        self.clock: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def add(self, label: str, clock: float, cpu: float) -> float:
        self.clock.setdefault(label, []).append(clock)
        self.cpu.setdefault(label, []).append(cpu)
        return clock

    def judged(self) -> dict[str, list[float]]:
        return self.cpu if SETTINGS.cpu else self.clock

    def other_note(self, subject: str, baseline: str, *, times: bool = False) -> str:
        other, name = (self.clock, "by the clock") if SETTINGS.cpu else (self.cpu, "by CPU time")
        return f"{name}: {ratios(other[subject], other[baseline], times=times).show()}"


def rate_spread(values: list[float], unit: str = " req/s") -> str:
    return Spread(values).show(unit, digits=0)


def timed_rates(action: Callable[[], object], count: int) -> tuple[float, float]:
    """(calls per second of the clock, calls per second of this process's CPU)."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - started), count / max(time.process_time() - cpu, 1e-9)


def timed_rate(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - started)


def ratio_text(row: Row) -> str:
    """median [min-max] of the per-round ratios, and the best rounds' ratio."""
    if row.ratio is None:
        return "-"
    text = row.ratio.show()
    if row.ratio.best is not None and len(row.ratio.values) > 1:
        text += f"; best {row.ratio.best:.2f}"
    return text


def table(rows: list[Row]) -> str:
    lines = [
        "| row | benchmark | measured, median [min-max] | baseline, same run | ratio, median [min-max]; best rounds | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        what = row.what + (f" ({'; '.join(row.notes)})" if row.notes else "")
        ratio = ratio_text(row)
        target = str(row.target) if row.target is not None else "-"
        lines.append(
            f"| {row.name} | {what} | {row.measured} | {row.baseline} | {ratio} | {target} | {row.verdict} |"
        )
    return "\n".join(lines)
