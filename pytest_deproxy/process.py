"""Real peers as child processes: start a server (nginx, haproxy, tinyproxy...), wait until it
listens, stop it, and say what it printed when it fails.

Rule kept here: a process started here is always stopped by ``stop()`` (or the context manager),
and its output goes to a file, never to a pipe nobody reads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

from .errors import NetworkError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, for programs that cannot take port 0 themselves."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A server program run for a test::

    with ServerProcess(["nginx", "-c", conf], port=8080, name="nginx") as nginx:
        ...
    """

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        *,
        host: str = "127.0.0.1",
        name: str | None = None,
        startup_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.name = name or os.path.basename(self.argv[0])
        self.startup_timeout = startup_timeout
        self._env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - stop() closes it
        self._final_output = ""

    @property
    def output(self) -> str:
        """Everything the program printed (stdout and stderr together), also after ``stop()``."""
        if self._log.closed:
            return self._final_output
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def start(self) -> ServerProcess:
        """Run the program and return once its port accepts connections."""
        self._process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise NetworkError(
                    f"{self.name} exited with status {code} before listening on port "
                    f"{self.port}; it printed:\n{self.output.strip()}"
                )
            with socket.socket() as probe:
                if probe.connect_ex((self.host, self.port)) == 0:
                    return self
            time.sleep(0.02)
        self.stop()
        raise NetworkError(
            f"{self.name} did not listen on port {self.port} within {self.startup_timeout} s; "
            f"it printed:\n{self.output.strip()}"
        )

    def stop(self) -> None:
        """Terminate the program (kill it if it lingers). Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if not self._log.closed:
            self._final_output = self.output
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
