"""Running the checks against a proxy, and the reports of a run (text, JSON, Markdown).

Rules kept here: checks that share no state run at once (they share the one origin endpoint,
and each finds its own traffic by tracking id); the corpus families run next, one family at a
time; checks that poison an upstream connection on purpose run last, one at a time. Results
come back in the order of the checks given, whatever order they finished in. A run states
the configuration it used, in every result and at the top of every report.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from .check import REGISTRY, Check, Result, Target

if TYPE_CHECKING:
    from ..deproxy import Deproxy
    from ..endpoint import Endpoint

WORKERS = 8
TOPICS = (
    "hop",
    "via",
    "max-forwards",
    "host",
    "expect",
    "interim",
    "fields",
    "forwarded",
    "method",
    "framing",
    "http10",
    "http11",
    "smuggling",
    "corpus",
)


def ordered(checks: Iterable[Check]) -> list[Check]:
    """``checks`` by topic (hop-by-hop first, the corpus last), then in the order written."""
    return sorted(checks, key=lambda each: TOPICS.index(each.id.split(".")[0]))


@dataclass
class Report:
    """The results of one run: ``proxy`` (its name and version), ``config`` (what the
    configuration was: a dict with at least ``"description"``), ``results`` in check order,
    and ``corpus``: each corpus request's id and its own verdict and detail."""

    proxy: str
    config: dict[str, Any]
    results: list[Result]
    corpus: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(result.verdict == "fail" for result in self.results)

    def counts(self) -> Counter[str]:
        return Counter(result.verdict for result in self.results)

    def summary(self) -> str:
        counts = self.counts()
        shown = ", ".join(f"{counts[v]} {v}" for v in ("pass", "fail", "n/a", "error") if counts[v])
        return f"{len(self.results)} checks: {shown} ({self.seconds:.1f} s)"

    def as_json(self) -> dict[str, Any]:
        """``{"proxy", "config", "checks": [{"id", "title", "reference", "verdict", "detail"}]}``
        and ``"corpus"``: ``[{"id", "verdict", "detail"}]`` for every corpus request sent."""
        return {
            "proxy": self.proxy,
            "config": self.config,
            "checks": [result.as_dict() for result in self.results],
            "corpus": [
                {"id": id, "verdict": verdict, "detail": detail}
                for id, (verdict, detail) in self.corpus.items()
            ],
        }

    def text(self) -> str:
        """For a terminal: every result, failures with their two-sided diagrams."""
        lines = [f"proxy: {self.proxy}", f"configuration: {self.config['description']}", ""]
        lines += [_without_config(result).report() for result in self.results]
        return "\n".join([*lines, "", self.summary()])

    def markdown(self) -> str:
        """A table: check, reference, verdict, detail."""
        lines = [
            f"### {self.proxy}",
            "",
            f"Configuration: {self.config['description']}. {self.summary()}.",
            "",
            "| check | reference | verdict | detail |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{r.id}` {_cell(r.title)} | {r.reference} | **{r.verdict}** | {_cell(r.detail, 400)} |"  # noqa: E501
            for r in self.results
        ]
        return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 0) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text[:limit] + " …" if limit and len(text) > limit else text


def _without_config(result: Result) -> Result:
    return Result(
        result.id,
        result.title,
        result.reference,
        result.verdict,
        result.detail,
        "",
        result.chains,
        result.seconds,
    )


def select(pattern: str | None, checks: Sequence[Check] = ()) -> list[Check]:
    """The checks whose id contains ``pattern`` (or matches it as a glob: ``hop.*``)."""
    checks = list(checks or ordered(REGISTRY))
    if not pattern:
        return checks
    chosen = [c for c in checks if pattern in c.id or fnmatch.fnmatchcase(c.id, pattern)]
    if not chosen:
        raise ValueError(f"no check id contains {pattern!r}; ids look like {checks[0].id!r}")
    return chosen


def run_checks(target: Target, checks: Iterable[Check], workers: int = WORKERS) -> list[Result]:
    """Run ``checks`` against ``target`` (concurrent ones at once, then the corpus, then
    those that must run alone) and return their results in the order given."""
    checks = list(checks)
    results: dict[str, Result] = {}
    concurrent = [c for c in checks if c.group == "concurrent"]
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="conformance") as pool:
        for result in pool.map(lambda c: c(target), concurrent):
            results[result.id] = result
    for each in checks:
        if each.group != "concurrent":
            results[each.id] = each(target)
    return [results[c.id] for c in checks]


@overload
def run(
    checks: Check,
    *,
    deproxy: Deproxy,
    url: str,
    origin: Endpoint,
    config: str = ...,
    timeout: float = ...,
    workers: int = ...,
) -> Result: ...
@overload
def run(
    checks: Iterable[Check] | None = ...,
    *,
    deproxy: Deproxy,
    url: str,
    origin: Endpoint,
    config: str = ...,
    timeout: float = ...,
    workers: int = ...,
) -> Report: ...
def run(
    checks: Check | Iterable[Check] | None = None,
    *,
    deproxy: Deproxy,
    url: str,
    origin: Endpoint,
    config: str = "",
    timeout: float = 5.0,
    workers: int = WORKERS,
) -> Result | Report:
    """Run one check (-> :class:`Result`) or several (default: all -> :class:`Report`) against
    the proxy at ``url``, which forwards to ``origin`` (an endpoint of ``deproxy``; ``run``
    sets its default handler). ``config`` describes the proxy's configuration for the
    reports. In a pytest suite::

        @pytest.mark.parametrize("check", CHECKS, ids=str)
        def test_my_proxy(check, deproxy, my_proxy, my_origin):
            result = run(check, deproxy=deproxy, url=my_proxy.url, origin=my_origin)
            assert result.verdict != "fail", result.report()
    """
    description = config or f"a proxy at {url} forwarding to {origin.url}"
    target = Target(deproxy, url, origin, config=description, timeout=timeout)
    if isinstance(checks, Check):
        return checks(target)
    started = time.monotonic()
    results = run_checks(target, ordered(REGISTRY) if checks is None else checks, workers)
    return Report(
        url, {"description": description}, results, target.corpus, time.monotonic() - started
    )


def write_reports(report: Report, json_path: str | None, md_path: str | None) -> None:
    """Write the JSON and Markdown reports where asked."""
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump(report.as_json(), out, indent=2, ensure_ascii=False)
            out.write("\n")
    if md_path:
        with open(md_path, "w", encoding="utf-8") as out:
            out.write(report.markdown())
