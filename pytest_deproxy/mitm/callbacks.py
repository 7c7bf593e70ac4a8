"""Callbacks: the requests a replayed interaction sends after a delay, on threads of their own.

Rules kept here: every callback thread is named after its endpoint and interaction, owned by
one :class:`CallbackRunner`, woken by :meth:`~CallbackRunner.begin_shutdown` and joined by
:meth:`~CallbackRunner.shutdown` until one deadline; a thread still running then is reported,
not forgotten. A callback still waiting for its delay when shutdown begins is never sent, and
none starts after it. Every failure reaches the test (``report``, the Deproxy's error report)
as a :class:`DeproxyError` that says which callback failed, with the exception that made it
fail as its ``__cause__``. Only a network failure that shutdown follows within
:data:`SHUTDOWN_GRACE` is left out: that is a callback cut off as the servers stop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .. import client, forwarding
from ..errors import DeproxyError
from ..models import Headers
from ..tls import CertificateAuthority
from .interactions import Callback, Interaction

log = logging.getLogger("pytest_deproxy.mitm")

JOIN_TIMEOUT = 5.0  # how long shutdown() waits for callback threads, in all
# The servers of a Deproxy are told to stop one after another: a callback to one of them can
# fail on the network a moment before its own runner hears of the shutdown. A network failure
# followed this soon by shutdown is taken as shutdown's doing.
SHUTDOWN_GRACE = 0.25

Upstream = Callable[[client.Target], tuple[client.Target, str]]


class CallbackRunner:
    """Sends callbacks for one MITM endpoint (named ``owner``).

    ``upstream`` says where a callback's URL goes (the endpoint's ``upstreams`` mapping),
    ``ca`` is trusted for https, and ``report`` takes each failure.
    """

    def __init__(
        self,
        owner: str,
        *,
        upstream: Upstream,
        ca: CertificateAuthority,
        report: Callable[[BaseException], None],
    ) -> None:
        self.owner = owner
        self._upstream = upstream
        self._ca = ca
        self._report = report
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards _threads and _deadline
        self._threads: list[threading.Thread] = []
        self._deadline: float | None = None

    def schedule(self, interaction: Interaction) -> None:
        """Start a thread for each callback of ``interaction`` (none once shutdown began)."""
        if not interaction.callbacks:
            return
        with self._lock:
            if self._stopping.is_set():
                log.info(
                    "%s: shutting down, callbacks of %s not sent", self.owner, interaction.name
                )
                return
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            for number, callback in enumerate(interaction.callbacks):
                thread = threading.Thread(
                    target=self._run,
                    args=(callback,),
                    name=f"deproxy-{self.owner}-callback-{interaction.name}-{number}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def begin_shutdown(self, deadline: float | None = None) -> None:
        """Wake every callback thread and send no more; ``shutdown`` waits until ``deadline``
        (a ``time.monotonic()`` value; default :data:`JOIN_TIMEOUT` s from the first call)."""
        with self._lock:
            if self._deadline is None:
                self._deadline = time.monotonic() + JOIN_TIMEOUT if deadline is None else deadline
            self._stopping.set()

    def shutdown(self) -> None:
        """Wake and join every callback thread; report those still running at the deadline.
        Safe to call twice."""
        self.begin_shutdown()
        with self._lock:
            threads, self._threads = self._threads, []
            deadline = self._deadline
        assert deadline is not None
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for thread in threads:
            if thread.is_alive() and thread is not threading.current_thread():
                self._report(
                    DeproxyError(
                        f"thread {thread.name} of endpoint {self.owner!r} did not stop within "
                        f"{JOIN_TIMEOUT} s of shutdown and was left running: its callback's "
                        "server did not answer"
                    )
                )

    # -- one callback ----------------------------------------------------------------------

    def _run(self, callback: Callback) -> None:
        url = callback.url
        try:
            if self._stopping.wait(callback.delay):
                return
            url = os.path.expandvars(callback.url)
            status = self._send(callback, url)
            log.info("callback %s %s -> %s", callback.method, url, status)
        except DeproxyError as exc:  # on the network: shutdown may have cut it off
            message = f"callback {callback.method} {url} ({callback.where}) failed: {exc}"
            if self._stopping.wait(SHUTDOWN_GRACE):
                log.info("%s (while shutting down: not reported)", message)
            else:
                self._failed(exc, message)
        except ValueError as exc:  # the URL, once its variables are expanded
            self._failed(exc, f"callback {callback.method} {url} ({callback.where}) failed: {exc}")
        except Exception as exc:  # the thread must not die unheard: the test is told
            self._failed(
                exc,
                f"callback {callback.method} {url} ({callback.where}) failed unexpectedly: "
                f"{type(exc).__name__}: {exc}",
            )

    def _send(self, callback: Callback, url: str) -> str:
        """Send ``callback`` to ``url`` (its variables expanded); the answer's status."""
        original = client.Target.parse(url)
        destination, path = self._upstream(original)
        headers = Headers((n, os.path.expandvars(v)) for n, v in callback.headers.items())
        request = client.build_request(
            original,
            callback.method,
            headers,
            callback.body,
            host=None,
            path=path,
            add_default_headers=True,
            chunked=False,
        )
        response = client.exchange(
            destination, request, timeout=forwarding.FORWARD_TIMEOUT, ca=self._ca
        )
        return response.code

    def _failed(self, cause: Exception, message: str) -> None:
        log.warning("%s", message)
        error = DeproxyError(message)
        error.__cause__ = cause
        self._report(error)
