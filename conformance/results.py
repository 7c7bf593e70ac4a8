"""Write conformance/RESULTS.md: `deproxy conformance --proxy NAME` for every packaged proxy
installed here, one table comparing them, and each proxy's failures with the reason.

    python conformance/results.py            # every proxy; those not installed are listed
    python conformance/results.py nginx squid

Each proxy runs in a process of its own (`python -m pytest_deproxy conformance --proxy NAME
--report-json ...`), from the configuration shipped in pytest_deproxy/conformance/configs/.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROXIES = ["nginx", "haproxy", "tinyproxy", "squid", "varnish", "apache", "caddy", "trafficserver"]
OUT = Path(__file__).resolve().parent / "RESULTS.md"
SYMBOL = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a", "error": "error"}


def run(name: str, directory: Path) -> tuple[dict, float]:
    report = directory / f"{name}.json"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest_deproxy", "conformance", "--proxy", name,
         "--report-json", str(report)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=600,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if not report.exists():
        return {"proxy": name, "skipped": "it did not start (run the command to see why)"}, seconds
    return json.loads(report.read_text()), seconds


def cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + " …"


def main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        reports = {name: run(name, Path(scratch)) for name in names}
    ran = {name: (report, s) for name, (report, s) in reports.items() if report.get("checks")}
    skipped = {name: report["skipped"] for name, (report, _) in reports.items() if name not in ran}
    today = datetime.date.today().isoformat()
    lines = [
        "# Conformance results",
        "",
        f"Made on {today} by `python conformance/results.py` (Debian 12 packages); each proxy",
        "runs from its shipped minimal configuration (`pytest_deproxy/conformance/configs/`: the",
        "proxy's defaults plus forwarding to the runner's endpoint). A verdict is about that",
        "configuration: many failures below are defaults an operator can change. `n/a`: the",
        "check does not apply (the proxy refuses what it is about, or lacks the feature).",
        "",
        "| proxy | pass | fail | n/a | error | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for report, seconds in ran.values():
        verdicts = [check["verdict"] for check in report["checks"]]
        counts = " | ".join(str(verdicts.count(v)) for v in ("pass", "fail", "n/a", "error"))
        lines.append(f"| {report['proxy']} | {counts} | {seconds:.0f} |")
    lines += [
        f"| {name} | not run: {cell(reason, 160)} | | | | |" for name, reason in skipped.items()
    ]
    first = next(iter(ran.values()))[0]["checks"] if ran else []
    lines += ["", "## Every check", "", "| check | reference | " + " | ".join(ran) + " |",
              "| --- | --- | " + " | ".join("---" for _ in ran) + " |"]  # fmt: skip
    verdict_of = {
        name: {check["id"]: check["verdict"] for check in report["checks"]}
        for name, (report, _) in ran.items()
    }
    for check in first:
        row = " | ".join(SYMBOL[verdict_of[name].get(check["id"], "n/a")] for name in ran)
        lines.append(f"| `{check['id']}` {check['title']} | {check['reference']} | {row} |")
    for report, _ in ran.values():
        lines += ["", f"## {report['proxy']}: what failed, and why", ""]
        lines += [
            f"- `{check['id']}` ({check['verdict']}): {cell(check['detail'])}"
            for check in report["checks"]
            if check["verdict"] != "pass"
        ]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {', '.join(ran)} ran; {', '.join(skipped) or 'none'} skipped")


if __name__ == "__main__":
    main(sys.argv[1:] or PROXIES)
