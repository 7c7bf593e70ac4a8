"""A handler that makes an equal Response for each request gets the head made for the last
one again (the same bytes, and the same Response as sent on the record); one whose answer
differs in any part, however slightly, gets its own. Through an endpoint and a socket."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable

import pytest

from pytest_deproxy import Deproxy, Request, Response, handlers, responding


def _whole(got: bytes) -> bool:
    head, blank, body = got.partition(b"\r\n\r\n")
    if not blank:
        return False
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.startswith(b"Content-Length")
    )
    return len(body) >= length


def _answers(handler: Callable[[Request], Response], count: int) -> tuple[list[bytes], Deproxy]:
    deproxy = Deproxy()
    with deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.non_blocking(handler))
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            answers = []
            for n in range(count):
                sock.sendall(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % n)
                got = b""
                while not _whole(got):
                    chunk = sock.recv(65536)
                    assert chunk, got
                    got += chunk
                answers.append(got)
        deproxy.handlings = endpoint.handlings  # type: ignore[attr-defined]
    return answers, deproxy


def test_an_equal_response_made_again_is_answered_with_the_same_bytes() -> None:
    answers, deproxy = _answers(lambda request: Response(200, body=str(0 % 3)), 30)
    handlings = deproxy.handlings  # type: ignore[attr-defined]
    for answer, handling in zip(answers, handlings, strict=True):
        sent = handling.response
        assert answer == b"".join(responding.wire_parts(sent, handling.request)), answer
        assert (sent.code, sent.message, sent.body) == ("200", "OK", "0")
        assert sent.headers["Content-Length"] == "1" and "Date" in sent.headers
    # Made once and shared (immutable), but where the Date's second turned between two.
    pairs = list(itertools.pairwise(handlings))
    shared = [a.response.headers._items is b.response.headers._items for a, b in pairs]
    assert sum(shared) >= len(pairs) - 2, shared


@pytest.mark.parametrize(
    "vary",
    [
        lambda n: Response(200, headers={"X-N": str(n)}, body=str(n % 3)),
        lambda n: Response(200, body=str(n % 3)),
        lambda n: Response(200 + n % 2, body=str(n % 3)),
        lambda n: Response(200, "OK" if n % 2 else "Fine", body=str(n % 3)),
        lambda n: Response(200, body=str(n % 3).encode() if n % 2 else str(n % 3)),
    ],
)
def test_a_response_that_differs_in_any_part_gets_its_own_answer(
    vary: Callable[[int], Response],
) -> None:
    counter = iter(range(1000))
    answers, deproxy = _answers(lambda request: vary(next(counter)), 12)
    for n, (answer, handling) in enumerate(zip(answers, deproxy.handlings, strict=True)):  # type: ignore[attr-defined]
        expected = vary(n)
        sent = handling.response
        assert (sent.code, sent.message, sent.body) == (
            expected.code,
            expected.message,
            expected.body,
        )
        assert type(sent.body) is type(expected.body)
        for name, value in expected.headers.items():
            assert sent.headers[name] == value
        assert answer == b"".join(responding.wire_parts(sent, handling.request))
        assert answer.startswith(f"HTTP/1.1 {expected.code} {expected.message}\r\n".encode())
