"""ServerProcess: real peers as child processes, and what it says when they fail."""

from __future__ import annotations

import sys

import pytest

from pytest_deproxy import NetworkError
from pytest_deproxy.process import ServerProcess, free_port

# It prints before it listens: start() returns as soon as the port accepts, and stop() may
# follow at once, so only what was printed before listening is sure to be in the output.
SERVE = (
    "import socket, sys, time\n"
    "print('binding', flush=True)\n"
    "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "time.sleep(60)\n"
)


def test_start_waits_until_the_port_listens_and_stop_ends_it() -> None:
    port = free_port()
    with ServerProcess([sys.executable, "-c", SERVE, str(port)], port, name="toy") as server:
        assert server.port == port
    assert "binding" in server.output
    server.stop()  # twice is fine


def test_a_program_that_exits_says_what_it_printed() -> None:
    port = free_port()
    failing = ServerProcess(
        [sys.executable, "-c", "import sys; print('bad config on line 3'); sys.exit(4)"],
        port,
        name="toy",
    )
    with pytest.raises(NetworkError, match=r"(?s)toy exited with status 4 .*bad config on line 3"):
        failing.start()
    failing.stop()


def test_a_program_that_never_listens_times_out_with_a_reason() -> None:
    port = free_port()
    silent = ServerProcess(
        [sys.executable, "-c", "import time; print('thinking'); time.sleep(60)"],
        port,
        name="toy",
        startup_timeout=0.5,
    )
    expected = r"(?s)did not listen on port \d+ within 0.5 s.*thinking"
    with pytest.raises(NetworkError, match=expected):
        silent.start()
    silent.stop()
