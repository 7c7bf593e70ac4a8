"""The threads that run servers' poll loops, and the pool that may keep them between servers.

Rules kept here: a thread runs one server's poll loop at a time, named after it
(``deproxy-<endpoint>-poll``) while it does and :data:`IDLE_NAME` otherwise. The server
joins its *run* (:meth:`PollRun.join`): when that returns, the loop has ended, and the thread
has either ended too (joined) or is waiting in its pool for the next server. A pool keeps at
most ``keep_idle`` waiting threads; the one more ends when its run does. Its owner shuts the
pool down, which wakes every waiting thread and joins it.

:data:`UNPOOLED` keeps none: a server on it has a thread of its own, ended and joined by the
server's shutdown, and leaves no thread behind. That is every Deproxy's default. The pytest
plugin gives the ``deproxy`` fixture a pool of the session's, shut down at the session's
end, because a new thread per endpoint (start, first run, exit and join) cost ~0.2 ms of a
test's ~1 ms in a whole pytest run. A waiting thread is handed its next loop without being
woken: it waits in its own poller, which it lends the loop with the server's poller already
in it, and begins when something is ready there. A run it never began (its server was served
by the test's own thread meanwhile, and shut down) is taken back the same way, without waking
it (:meth:`PollThreads.cancel`). (On a machine whose cores are virtual, waking a thread on
another core cost ~30 us of CPU here, and one woken as the endpoint started held the GIL
against the test's thread through its first request.)

A child made by ``fork()`` has none of its parent's threads: its pools start empty.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from .net import Poller, Source

IDLE_NAME = "deproxy-poll-idle"


def start_unawaited(thread: threading.Thread) -> None:
    """``thread.start()``, without waiting for the new thread to run.

    ``Thread.start()`` waits on the thread's ``_started`` event until the new thread has been
    scheduled and taken the GIL: by the clock, 0.1-0.5 ms per endpoint on a loaded machine
    (most of what adding one cost), for nothing the caller needs. That wait is skipped here
    for this one call (the event's ``wait`` shadowed on the instance, then restored); the
    thread is in ``threading.enumerate()`` from now on, and it may be joined once it has
    begun (``is_alive()`` is False, and ``join()`` refuses, until then). Where ``threading``
    has no such event (another Python), it is a plain ``start()``.
    tests/test_fixture2_poll_thread.py keeps this true of the running Python.
    """
    started = getattr(thread, "_started", None)
    if type(started) is not threading.Event:
        thread.start()
        return
    started.wait = _no_wait  # type: ignore[method-assign]
    try:
        thread.start()
    finally:
        del started.wait


def _no_wait(timeout: float | None = None) -> bool:
    return True


class PollRun:
    """One poll loop's run on a pool's thread; joined, and asked if alive, as a thread is.

    ``poller`` is the thread's, lent for the run: what the loop watches goes in it."""

    def __init__(self, target: Callable[[Poller], object], name: str, thread: _PollThread) -> None:
        self.name = name
        self.target = target
        self.thread = thread
        self.thread_ends = False  # set before ``ended`` is released
        self.begun = False  # the thread took the run (set under the pool's lock)
        self.ended = threading.Lock()
        self.ended.acquire()

    @property
    def poller(self) -> Poller:
        return self.thread.poller

    @property
    def ident(self) -> int | None:
        """The running thread's ident (None until a new thread has begun)."""
        return self.thread.ident

    def is_alive(self) -> bool:
        return self.ended.locked()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop to end and, if its thread is not kept, for the thread to end,
        for at most ``timeout`` s in all."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.ended.acquire(timeout=-1 if timeout is None else timeout):
            return
        self.ended.release()
        if self.thread_ends:
            self.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class _PollThread(threading.Thread):
    """Runs the loops lent to it, each with its own poller; between runs it waits in that
    poller, where the next run's listener is put, so that nothing wakes it before the next
    server's first connection (or its shutdown) does."""

    def __init__(self, pool: PollThreads, run_name: str) -> None:
        super().__init__(name=run_name, daemon=True)
        self._pool = pool
        self.poller = Poller()  # made here, before the thread runs: a run is lent it at once
        self.next_run: PollRun | None = None  # set and cleared under the pool's lock
        self.retired = False  # the pool is shut down: end when no run is lent
        self.running = False  # run() has begun (and join() may be called)

    def run(self) -> None:
        self.running = True
        try:
            while (run := self._next()) is not None:
                self.name = run.name
                try:
                    run.target(self.poller)
                except BaseException:
                    self._end(run, keep=False)
                    raise
                if not self._end(run, keep=True):
                    return
        finally:
            self.poller.close()

    def _next(self) -> PollRun | None:
        """The run lent to this thread, waited for in its poller (None: retired)."""
        lock = self._pool.lock
        while True:
            with lock:
                if self.next_run is not None:
                    self.next_run.begun = True
                    return self.next_run
                if self.retired:
                    return None
            if self.poller.ready(None):
                # Not a wake-up: a run's listener, or what an ended run's connection threads
                # watched late (a hang-up). Those are forgotten, unless a run was lent meanwhile.
                with lock:
                    if self.next_run is None:
                        self.poller.forget_all()

    def _end(self, run: PollRun, *, keep: bool) -> bool:
        # Named idle, its poller emptied, and in the pool's idle list or not, before the
        # run's joiner is woken: what it sees of the thread once join() returns is final.
        self.name = IDLE_NAME
        self.poller.forget_all()
        self.poller.ready(0)  # takes a wake-up the run left, which would begin the next at once
        kept = keep and self._pool.take_back(self)
        run.thread_ends = not kept
        run.ended.release()
        return kept


class PollThreads:
    """Runs poll loops on threads, keeping up to ``keep_idle`` of them waiting between runs."""

    def __init__(self, keep_idle: int) -> None:
        self.keep_idle = keep_idle
        self.lock = threading.Lock()
        self._idle: list[_PollThread] = []
        self._closed = False
        _POOLS.add(self)

    def run(
        self,
        target: Callable[[Poller], object],
        name: str,
        watch: Sequence[tuple[Source, object]] = (),
    ) -> PollRun:
        """Run ``target(poller)`` on a waiting thread, or a new one (not waited for: see
        :func:`start_unawaited`), named ``name`` while it runs, with ``watch`` (source, key)
        in the poller. A waiting thread is not woken: it begins the run when something in
        ``run.poller`` is ready (a connection to a listener watched), or it is woken."""
        with self.lock:
            thread = self._idle.pop() if self._idle else None
            if thread is not None:
                thread.name = name  # listed under its server's name from now, as a new one is
                run = thread.next_run = PollRun(target, name, thread)
        waiting = thread is not None
        if thread is None:
            thread = _PollThread(self, name)
            run = thread.next_run = PollRun(target, name, thread)
        # A waiting thread begins the run when what is watched is ready; a new one is started
        # after, since its first wake-up can be a connection.
        for source, key in watch:
            run.poller.watch(source, key)
        if not waiting:
            start_unawaited(thread)
        return run

    def withhold(self, run: PollRun, source: Source) -> bool:
        """Take ``source`` out of the poller of ``run``'s thread, without waking it, if the
        thread has not begun the run (it would begin when ``source`` is ready); False if it
        has. Put it back with ``run.poller.watch``."""
        with self.lock:
            if run.begun:
                return False
            run.poller.forget(source)
            return True

    def cancel(self, run: PollRun, watched: Sequence[Source] = ()) -> bool:
        """End ``run`` before its thread began it, if this pool keeps the thread: the thread
        waits on for the next run, not woken, ``watched`` taken out of its poller. False
        (nothing done): begun already, or its thread is to end; wake it instead, and join."""
        thread = run.thread
        with self.lock:
            # A thread not yet running (started without waiting: see start_unawaited) is not
            # kept: the pool's shutdown could not join it.
            if run.begun or not thread.running or self._closed or len(self._idle) >= self.keep_idle:
                return False
            thread.next_run = None
            thread.name = IDLE_NAME
            for source in watched:
                thread.poller.forget(source)
            self._idle.append(thread)
        run.ended.release()
        return True

    def take_back(self, thread: _PollThread) -> bool:
        """Keep ``thread`` waiting for the next run, if this pool keeps one more."""
        with self.lock:
            thread.next_run = None
            if self._closed or len(self._idle) >= self.keep_idle:
                return False
            self._idle.append(thread)
            return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """End every waiting thread and join it; a thread still running a loop ends when that
        loop does (its server's shutdown joins it). Safe to call twice."""
        with self.lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for thread in idle:
                thread.retired = True
        for thread in idle:
            thread.poller.wake()
        deadline = time.monotonic() + timeout
        for thread in idle:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _forget_threads(self) -> None:
        self.lock = threading.Lock()
        self._idle = []


_POOLS: weakref.WeakSet[PollThreads] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in _POOLS:
        pool._forget_threads()


os.register_at_fork(after_in_child=_after_fork_in_child)

UNPOOLED = PollThreads(keep_idle=0)


def on_poll_thread() -> bool:
    """Whether the calling thread runs servers' poll loops (any pool's)."""
    return isinstance(threading.current_thread(), _PollThread)
