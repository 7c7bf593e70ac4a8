"""How long recording a 10 MB exchange takes, with libyaml's emitter and with PyYAML's own.

Run: ``.venv/bin/python benchmarks/record_10mb.py``. It prints, for a 10 MB binary body and a
10 MB text body: the time to write the interaction file (the YAML dump and its read-back
check), with ``yaml.CSafeDumper`` (what recording uses when PyYAML has libyaml) and with the
pure-Python ``yaml.SafeDumper`` (what it used before); then one 10 MB download recorded end to
end through a MITM endpoint from a local upstream. No assertion: numbers for a report.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pytest_deproxy import Deproxy, Response
from pytest_deproxy.mitm import recording

SIZE = 10 * 1024 * 1024


class _PurePythonDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


_PurePythonDumper.add_representer(str, recording._represent_str)


def write_time(body: bytes | str, dumper: type, directory: Path) -> float:
    document = {
        "request": {
            "method": "GET",
            "url": "http://big.example.org/x",
            "headers": {},
            "body": None,
        },
        "response": {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": body},
    }
    saved, recording._Dumper = recording._Dumper, dumper  # type: ignore[misc]
    try:
        start = time.perf_counter()
        recording.write_interaction(directory, "bench", "Big", document)
        return time.perf_counter() - start
    finally:
        recording._Dumper = saved  # type: ignore[misc]


def end_to_end(directory: Path) -> float:
    body = os.urandom(SIZE)
    with Deproxy() as deproxy:
        upstream = deproxy.add_endpoint(default_handler=Response(200, body=body))
        mitm = deproxy.add_mitm_endpoint(
            scenarios_path=directory,
            services=[{"type": "BaseService", "name": "Big", "hosts_list": ["big.example.org"]}],
            record=True,
            upstreams={"big.example.org": upstream.url},
        )
        start = time.perf_counter()
        chain = deproxy.make_request("http://big.example.org/e2e", proxy=mitm.url, timeout=120)
        took = time.perf_counter() - start
    assert chain.received_response is not None and chain.received_response.raw_body == body
    return took


def main() -> int:
    bodies = {"binary": os.urandom(SIZE), "text": ("Zażółć gęślą jaźń. " * SIZE)[:SIZE]}
    print(f"PyYAML {yaml.__version__}, libyaml: {yaml.__with_libyaml__}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for kind, body in bodies.items():
            fast = write_time(body, recording._Dumper, root / f"c-{kind}")
            slow = write_time(body, _PurePythonDumper, root / f"py-{kind}")
            print(f"10 MB {kind:6} body: libyaml {fast:6.2f} s   pure Python {slow:6.2f} s")
        print(f"10 MB recorded through the MITM, end to end: {end_to_end(root / 'e2e'):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
