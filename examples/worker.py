"""A small worker, the system under test of the MITM example: it asks two external APIs for a
forecast and an exchange rate and prints a one-line summary.

Like most programs it reaches the network through ``HTTP_PROXY``/``HTTPS_PROXY`` and trusts the
CA file in ``SSL_CERT_FILE``, which is all the MITM endpoint needs to stand in for both APIs.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

FORECAST_URL = "https://api.weather.example/v1/forecast?city=Geneva"
RATE_URL = "http://rates.example/latest?base=EUR&symbols=CHF"


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def main() -> int:
    try:
        forecast = fetch_json(FORECAST_URL)
        rate = fetch_json(RATE_URL)
    except urllib.error.HTTPError as error:
        print(f"worker: {error.url} answered {error.code} {error.reason}", file=sys.stderr)
        print(error.read().decode(errors="replace"), file=sys.stderr)
        return 1
    print(
        f"{forecast['city']}: {forecast['summary']}, {forecast['high_c']} C; "
        f"1 EUR = {rate['rates']['CHF']} CHF"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
