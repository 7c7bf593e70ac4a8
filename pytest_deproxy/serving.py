"""Serving connections: a listener, its poll thread (which is also the watchdog) and
connection threads, and the record of every connection accepted.

Rules kept here: every thread is named, owned by its server, started by ``start()`` (never by
a constructor) and joined by ``shutdown()``, which is idempotent. The poll loop runs on a
thread of its :class:`~.pollthreads.PollThreads`: its own by default, or one a pool keeps
between servers (the pytest plugin's), which ``shutdown()`` joins the loop's run on and
leaves waiting for the next server. ``start()`` does not wait for the poll thread to run (a
connection waits in the listen queue until it does): ``shutdown()`` waits for it to have
begun, then joins it. A failure on one connection
is recorded on ``errors`` and never stops the server. What to answer is not decided here: a
:class:`Responder` (the Endpoint) answers, and this module knows no handler.

A connection is served on the poll thread for as long as each request on it arrives whole
and ordinary and the responder can answer it without waiting. The first request that is
otherwise (still arriving, unusual, for a handler that may wait), an answer the client is
slow to take, HTTP/2, or a PROXY protocol header gives the connection a thread of its own
for the rest of its life. The answers to requests that arrived together (pipelined) are
written together, each handling finished first; and the answers to every connection ready at
one wake-up are written after all of them are answered, so that a client woken by the first
is still awake for the others (a wake-up of the load generator's thread per write cost the
endpoint more kernel time than its own reads and writes). A TLS handshake runs on the poll
thread too, never waiting (a non-blocking socket, resumed when the client sends more; begun
as the connection is accepted, since the client's hello is mostly there by then), and
is closed after ``TLS_HANDSHAKE_TIMEOUT`` s without an end; TLS connections are then served
as plain ones. Under load, one thread answering many connections is several times as fast
as a thread each, which hand the GIL to one another on every request.

Shutdown wakes every thread at once, whatever it waits on, and only then waits for any: each
open connection is shut down at the socket (a blocked read, write or TLS handshake returns),
and handlers wait on the stopping event (``HandlerContext.sleep``). A connection's stream is
in the registry before anything can block on it, TLS handshakes included, so none is missed;
a connection on the poll thread has no thread to wake, and the poll thread closes it.
A thread still running ``JOIN_TIMEOUT`` s later is reported, not forgotten.

The poll thread is also the watchdog: with a ``request_timeout`` it wakes at least every
half second and stops requests on connection threads that made no progress for that long
(slowloris). A server costs one thread until a connection needs its own, and its shutdown
wakes the poll thread through its poller, not by connecting to the listener.

A burst of connections waits in a listen queue of ``net.LISTEN_BACKLOG`` (4096, as far as
the kernel allows), and each wake-up of the poll thread accepts every connection waiting.

What the poll loop watches (the listener, polled connections, hang-ups) is in a poller of the
server's own. Until the poll thread begins its loop, that poller waits in the thread's own
(the pool's waiting room), and a caller that waits for an answer (:mod:`.servingwait`) may
borrow it meanwhile: :meth:`Server.lend` takes it out without waking the thread,
:meth:`Server.serve_lent` serves it, watchdog included, as the loop does (the same code,
under ``_serving``), and :meth:`Server.take_back` puts it back, waking the thread only if it
has connection threads or handshakes to watch. Once the thread has begun, it waits in the
server's poller itself, one system call a wake-up as ever, and the server is lent no more. A
loop that never began is ended by shutdown without waking its thread (``PollThreads.cancel``),
what was left ready served and what was open closed, as the loop would have.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from . import net
from .accepted import (
    TLS_HANDSHAKE_TIMEOUT,
    Connection,
    Handoff,
    Hangup,
    Responder,
    note_tls,
    start_tls,
    take_proxy_header,
)
from .connections import ConnectionRecord
from .errors import ConnectionReset, DeproxyError, DeproxyTimeout, NetworkError
from .pollthreads import UNPOOLED, PollRun, PollThreads
from .record import Handling
from .request_reader import Arrival, handed_over

JOIN_TIMEOUT = 5.0  # how long shutdown() waits, in all, for the threads it woke
# The bytes kept of each direction of a connection: enough for any exchange a test looks at,
# while a huge body, or one refused and drained, costs no more.
TRANSCRIPT_LIMIT = 4 * 1024 * 1024


class Server:
    """Accepts connections on ``hostname:port`` and hands them to its responder.

    The port is taken when it is made (``port``); threads start with :meth:`start`.
    ``proxy_protocol`` (``True``, ``"optional"``, ``False``) reads a PROXY protocol header
    first on each connection; ``keep_connections`` caps the connection records kept,
    ``connection_handlings`` is where the endpoint keeps every connection's handlings (each
    record reads its own from there), and each transcript keeps
    ``TRANSCRIPT_LIMIT`` bytes each way.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        name: str,
        hostname: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        request_timeout: float | None,
        max_body_size: int | None,
        new_connection_id: Callable[[], str],
        proxy_protocol: bool | str = False,
        keep_connections: int | None = None,
        connection_handlings: deque[Handling] | None = None,
        poll_threads: PollThreads = UNPOOLED,
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.request_timeout = request_timeout
        self.max_body_size = max_body_size
        self.proxy_protocol = proxy_protocol
        self._responder = responder
        self._tls_context = tls_context
        self._new_connection_id = new_connection_id
        self._lock = threading.Lock()
        self._errors: list[DeproxyError] = []
        # Each open connection, with the thread that serves it (None: the poll thread).
        self._open: dict[str, tuple[threading.Thread | None, Connection]] = {}
        self._records: deque[ConnectionRecord] = deque(maxlen=keep_connections)
        self._connection_handlings = connection_handlings
        self._stopping = threading.Event()
        self._join_deadline: float | None = None  # set by the first begin_shutdown()
        self._reported_stuck: set[str] = set()
        self._listener = net.listen(hostname, port)
        self.port: int = self._listener.getsockname()[1]
        # What the server watches (the listener and polled connections) is in a poller of
        # its own, watched in its poll thread's until the thread begins (or in a waiting
        # caller's: lend()), then waited in by the thread itself.
        self._poller = net.Poller()
        self._poller.watch(self._listener, None)
        self._serving = threading.Lock()  # held while what is ready is served, by either
        self._lent = False
        self._ended_unbegun = False  # shutdown ended the poll run before its thread began it
        self.watch_interval = None if request_timeout is None else min(0.5, request_timeout / 4)
        if tls_context is not None:  # stalled handshakes are timed out too
            self.watch_interval = min(self.watch_interval or 0.5, 0.5)
        self._next_watch = time.monotonic() + (self.watch_interval or 0.0)
        self._poll_threads = poll_threads
        self._poll_run: PollRun | None = None  # set by start(): the poll thread runs, or soon will
        # Held until the poll thread begins (a lock: an Event costs a Condition, ~10 us).
        self._poll_not_running = threading.Lock()
        self._poll_not_running.acquire()

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start the poll loop, without waiting for its thread to run: a connection waits in
        the listen queue until it does, and :meth:`shutdown` waits for it to begin first. On
        a thread a pool kept, the loop begins at the first connection (or at shutdown)."""
        # Watched from here, not by the poll thread: its first wake-up can be a connection.
        self._poll_run = self._poll_threads.run(
            self._poll_loop, f"deproxy-{self.name}-poll", watch=[(self._poller, None)]
        )

    @property
    def errors(self) -> list[DeproxyError]:
        """A snapshot of the failures seen on this server's connections."""
        with self._lock:
            return list(self._errors)

    @property
    def connections(self) -> list[ConnectionRecord]:
        """A snapshot of the records of the connections accepted, in order."""
        return list(self._records.copy())

    def record_error(self, error: DeproxyError) -> None:
        with self._lock:
            self._errors.append(error)

    # -- shutdown ----------------------------------------------------------------------------

    def begin_shutdown(self, deadline: float | None = None) -> None:
        """Stop accepting and wake every thread of this server, without waiting for any.

        ``deadline`` (a ``time.monotonic()`` value; default ``JOIN_TIMEOUT`` s from now) is
        when :meth:`shutdown` stops waiting. A Deproxy calls this on every endpoint before it
        waits for any, so that a handler waiting on another endpoint is freed at once.
        """
        with self._lock:
            first = not self._stopping.is_set()
            self._stopping.set()  # set before the streams are read: see _start_tls
            if self._join_deadline is None:
                self._join_deadline = (
                    time.monotonic() + JOIN_TIMEOUT if deadline is None else deadline
                )
            # A connection on the poll thread has no thread to wake: the poll thread closes it.
            connections = [c for thread, c in self._open.values() if thread is not None]
        run = self._poll_run
        if first and run is not None:
            if self._poll_threads.cancel(run, [self._poller]):
                # Its thread never began the loop (a waiting caller served the server): what
                # is left to serve (a client's close) is served here, then the rest closed.
                self._ended_unbegun = True
                with self._serving:
                    self._serve(self._poller.ready(0))
                    self._close_polled()
            else:  # the poll thread wakes, wherever it waits, and sees _stopping
                run.poller.wake()
                self._poller.wake()
        for connection in connections:
            connection.stream.shutdown()

    def shutdown(self) -> list[DeproxyError]:
        """Stop listening, close every connection and join every thread. Safe to call twice.

        Every thread is woken first (see :meth:`begin_shutdown`), then all are waited for
        until one deadline. A thread still running then (a handler blocked in ``time.sleep``,
        or on a server outside this Deproxy) is left behind and reported (on ``errors``, and
        to the responder), and returned. Nothing is raised here, so a ``with`` block or a
        ``finally`` that shuts down never hides the exception that is on its way out.
        """
        self.begin_shutdown()
        assert self._join_deadline is not None
        deadline = self._join_deadline
        late: list[threading.Thread | PollRun] = []
        run = self._poll_run  # None: never started, no poll thread
        if run is not None and not self._ended_unbegun:
            if self._poll_not_running.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self._poll_not_running.release()  # for a second shutdown()
                late = self._join([run], deadline)
            else:  # never began (a machine too loaded to run it for JOIN_TIMEOUT s)
                late = [run]
        # The poll thread has stopped: it hands no more connections to threads. Any it handed
        # over since begin_shutdown() looked are woken now.
        with self._lock:
            connections = list(self._open.values())
        for _, connection in connections:
            connection.stream.shutdown()
        late += self._join([thread for thread, _ in connections], deadline)
        self._listener.close()
        self._poller.close()
        stuck_errors = []
        for thread in late:
            if thread.ident == threading.get_ident() or thread.name in self._reported_stuck:
                continue
            self._reported_stuck.add(thread.name)
            stuck = DeproxyError(
                f"thread {thread.name} of endpoint {self.name!r} did not stop within "
                f"{JOIN_TIMEOUT} s of shutdown and was left running; a handler that waits "
                "should wait through context.sleep(), which shutdown wakes"
            )
            self.record_error(stuck)
            self._responder.report(stuck)
            stuck_errors.append(stuck)
        return stuck_errors

    @staticmethod
    def _join(
        threads: Sequence[threading.Thread | PollRun | None], deadline: float
    ) -> list[threading.Thread | PollRun]:
        """Join ``threads`` (or poll runs) until ``deadline``; those still running."""
        current = threading.get_ident()
        late: list[threading.Thread | PollRun] = []
        for thread in threads:
            if thread is None or thread.ident is None or thread.ident == current:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                late.append(thread)
        return late

    # -- the poll thread -----------------------------------------------------------------------

    def _poll_loop(self, waiting_room: net.Poller) -> None:
        """Accept connections, and answer the requests that need no thread of their own
        (see the module's docstring), watching the server's poller; the thread began the run
        when the poller was ready in ``waiting_room``, its own (or when it was woken)."""
        self._poll_not_running.release()
        try:
            self._wait_while_lent(waiting_room)
            poller = self._poller
            interval = self.watch_interval
            while not self._stopping.is_set():
                self._serve(poller.ready(interval))
                if interval is not None and time.monotonic() >= self._next_watch:
                    self._watch_stalled()
        finally:
            with self._serving:  # (a caller may still serve, if shutdown came as it did)
                self._close_polled()
            # The waiting room is the thread's, and may serve the next server's loop.
            waiting_room.forget(self._poller)

    def _wait_while_lent(self, waiting_room: net.Poller) -> None:
        """Wait until a caller gives the server back, if one borrowed it before this thread
        began (see :meth:`lend`); the server's poller is back in ``waiting_room`` then."""
        while not self._stopping.is_set():
            with self._serving:
                if not self._lent:
                    return
            waiting_room.ready(None)

    def _serve(self, ready: list[object]) -> None:
        """Serve what ``ready`` says is ready in the server's poller."""
        poller = self._poller
        # Every ready connection is answered first, and the answers are written together
        # after: a client (wrk's one thread) woken by the first is still awake for the rest,
        # where one write after each answer woke it for each.
        answered: list[tuple[Connection, bytes, bool]] = []
        for connection in ready:
            if type(connection) is Connection:  # the commonest, asked first
                self._serve_ready(poller, connection, answered)
            elif connection is None:
                self._accept(poller)
            elif type(connection) is Hangup:
                self._hung_up(poller, connection.connection)
        if answered:
            self._write_answers(poller, answered)

    def _watch_stalled(self) -> None:
        now = time.monotonic()
        self._stop_stalled(self._poller, now)
        assert self.watch_interval is not None
        self._next_watch = now + self.watch_interval

    def _close_polled(self) -> None:
        """Close the connections served from the poller, as the loop ends."""
        with self._lock:
            polled = [c for thread, c in self._open.values() if thread is None]
            for connection in polled:
                del self._open[connection.id]
        for connection in polled:
            self._poller.forget(connection.stream, closing=True)
            connection.record.closed("shutdown")
            connection.stream.close()

    # -- served by a waiting caller ----------------------------------------------------------

    def lend(self) -> net.Poller | None:
        """The server's poller, for a caller that serves it (:meth:`serve_lent`) while it
        waits, taken out of the poll thread's waiting room without waking it; None if the
        thread began its loop already (it waits in the poller itself then), or stopping."""
        run = self._poll_run
        with self._serving:
            if run is None or self._lent or self._stopping.is_set():
                return None
            if not self._poll_threads.withhold(run, self._poller):
                return None
            self._lent = True
        return self._poller

    def serve_lent(self) -> None:
        """Serve what is ready in the lent poller, as the poll loop would, and watch for
        stalled requests when it is time."""
        with self._serving:
            if not self._lent or self._stopping.is_set():
                return  # shut down meanwhile: the loop, or shutdown, closed what was open
            try:
                self._serve(self._poller.ready(0))
                if self.watch_interval is not None and time.monotonic() >= self._next_watch:
                    self._watch_stalled()
            except Exception as exc:  # a bug of ours: make it fail the test, not the caller
                self._responder.report(exc)

    def take_back(self) -> None:
        """Back to the poll thread, after serving what the caller's last step left (its
        close). The thread is woken if it began meanwhile (it waits for the server back), or
        if a thread serves a connection now or a TLS handshake is under way: its loop watches
        them (``_stop_stalled``)."""
        self.serve_lent()
        run = self._poll_run
        with self._serving:
            if not self._lent:
                return
            self._lent = False
            if run is None or self._stopping.is_set():
                return
            run.poller.watch(self._poller, None)
            if run.begun or self._needs_watching():
                run.poller.wake()

    def _needs_watching(self) -> bool:
        if self.watch_interval is None:
            return False
        with self._lock:
            return any(
                thread is not None or connection.handshake_deadline is not None
                for thread, connection in self._open.values()
            )

    def _accept(self, poller: net.Poller) -> None:
        """Accept every connection waiting (a burst is taken in one wake-up)."""
        for sock, peer in net.accept_all(self._listener):
            if self._stopping.is_set():
                sock.close()
                continue
            try:
                self._take(poller, sock, peer)
            except OSError:  # gone as it was accepted (setting TCP_NODELAY failed): not served
                sock.close()

    def _take(self, poller: net.Poller, sock: socket.socket, peer: str) -> None:
        record = ConnectionRecord(
            self._new_connection_id(),
            peer,
            transcript_limit=TRANSCRIPT_LIMIT,
            endpoint_handlings=self._connection_handlings,
        )
        self._records.append(record)
        own_thread = bool(self.proxy_protocol)
        # Without a PROXY header to read first, the poll thread runs a TLS handshake, never
        # waiting: the connection's stream is TLS from the start.
        tls = None if own_thread else self._tls_context
        try:
            stream = net.accepted_stream(sock, peer, None if own_thread else 0, tls)
        except NetworkError as exc:  # the TLS context refused
            record.closed("endpoint")
            sock.close()
            self.record_error(exc)
            return
        connection = Connection(stream, record, self.max_body_size, self._stopping)
        connection.start_tls_hook = self._start_tls
        connection.hangup_poller = poller
        if own_thread:  # a header may wait, read a byte at a time: a thread from the start
            self._serve_in_thread(connection)
            return
        if tls is not None:
            connection.handshake_deadline = time.monotonic() + TLS_HANDSHAKE_TIMEOUT
        with self._lock:
            self._open[connection.id] = (None, connection)
        poller.watch(connection.stream, connection)
        if tls is not None:
            self._begin_handshake(poller, connection)

    def _begin_handshake(self, poller: net.Poller, connection: Connection) -> None:
        """Take the TLS handshake as far as it goes as the connection is accepted: a client
        sends its hello as soon as it is connected, so it is there by now, mostly (under
        load, 4 times in 5), and the poller need not wake for it. The handshake cannot end
        here (the client waits for the server's flight first): what follows comes through
        the poller."""
        try:
            self._handshake(poller, connection)
        except NetworkError as exc:
            self._network_failed(poller, connection, exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not stop the endpoint
            self._stop_polling(poller, connection, closed_by="endpoint")
            self._responder.report(exc)

    def _serve_ready(
        self,
        poller: net.Poller,
        connection: Connection,
        answered: list[tuple[Connection, bytes, bool]],
    ) -> None:
        """Answer whatever a polled connection sent (the answer goes on ``answered``, for
        :meth:`_write_answers`), or hand the connection to a thread."""
        reader = connection.reader
        try:
            if connection.handshake_deadline is not None and not self._handshake(
                poller, connection
            ):
                return
            data = connection.stream.read_ready()
            if data is None:
                return
            if not data:  # closed between requests
                self._stop_polling(poller, connection, closed_by="client")
                return
            if reader.pending:
                reader.pending += data
            else:  # (nearly always: one whole request a read, with nothing before it)
                alone = self._responder.answer_alone(connection, data)
                if isinstance(alone, Handoff):
                    self._hand_off(poller, connection, alone)
                    return
                if alone is not None:
                    reply, keeps = alone
                    if not keeps:  # on the record before the client has the answer
                        connection.record.closed("endpoint")
                    answered.append((connection, reply, keeps))
                    return
                # (else ``data`` is pending in the reader now)
            self._serve_pending(poller, connection, answered)
        except NetworkError as exc:
            self._network_failed(poller, connection, exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not stop the endpoint
            self._stop_polling(poller, connection, closed_by="endpoint")
            self._responder.report(exc)

    def _serve_pending(
        self,
        poller: net.Poller,
        connection: Connection,
        answered: list[tuple[Connection, bytes, bool]],
    ) -> None:
        """Answer each whole request pending in the connection's reader, in order, until one
        needs a thread (handed it) or is not whole yet (the thread reads the rest)."""
        # The answers to pipelined requests go out together, in order, in one write: each
        # handling is finished before its answer is written, as ever, and a client reads them
        # as it would have one by one. (The first answer is kept as it is: a list is made only
        # for a second, which most wake-ups never have.)
        reader = connection.reader
        out: bytes | None = None
        more: list[bytes] | None = None
        keep_alive = True
        answer_polled = self._responder.answer_polled
        read_buffered = reader.read_buffered
        while reader.pending:
            whole = read_buffered()
            if whole is not None:
                request, raw_head, at = whole
                answer = answer_polled(connection, request, raw_head, at)
            else:
                answer = None
            if answer is None:
                first = None if whole is None else handed_over(request, raw_head, at)
                unsent = (out or b"") if more is None else b"".join(more)
                self._hand_off(poller, connection, Handoff(unsent, first))
                return
            if more is not None:
                more.append(answer[0])
            elif out is not None:
                more = [out, answer[0]]
            else:
                out = answer[0]
            if not answer[1]:  # on the record before the client has the answer
                keep_alive = False
                connection.record.closed("endpoint")
                break
        if more is not None:
            out = b"".join(more)
        if out is not None:
            answered.append((connection, out, keep_alive))

    def _hand_off(self, poller: net.Poller, connection: Connection, handoff: Handoff) -> None:
        """Give a polled connection a thread of its own, with what the poll thread began."""
        self._stop_polling(poller, connection)
        unsent = handoff.unsent
        if unsent:  # the answers before it first: the thread writes what is left
            unsent = unsent[connection.stream.write_ready(unsent) :]
        self._serve_in_thread(connection, first=handoff.first, unsent=unsent)

    def _write_answers(
        self, poller: net.Poller, answered: list[tuple[Connection, bytes, bool]]
    ) -> None:
        """Write the answers :meth:`_serve_ready` made, each to its connection; a connection
        slow to take its answer gets a thread that waits for it."""
        for connection, out, keep_alive in answered:
            try:
                sent = connection.stream.write_ready(out, last=not keep_alive)
                if sent < len(out):  # the client is slow to read: a thread waits for it
                    self._stop_polling(poller, connection)
                    self._serve_in_thread(connection, unsent=out[sent:], keep_alive=keep_alive)
                elif not keep_alive:
                    self._stop_polling(poller, connection, closed_by="endpoint")
            except NetworkError as exc:
                self._network_failed(poller, connection, exc)
            except Exception as exc:  # a bug of ours: make it fail the test
                self._stop_polling(poller, connection, closed_by="endpoint")
                self._responder.report(exc)

    def _network_failed(
        self, poller: net.Poller, connection: Connection, exc: NetworkError
    ) -> None:
        reset = isinstance(exc, ConnectionReset)
        self._stop_polling(poller, connection, closed_by="reset" if reset else "endpoint")
        if not self._stopping.is_set():
            self.record_error(exc)

    def _handshake(self, poller: net.Poller, connection: Connection) -> bool:
        """Go on with a polled connection's TLS handshake; whether it is done and the
        connection still polled (requests may have come with its end)."""
        state = connection.stream.handshake_ready()
        if state == "read":
            return False
        connection.handshake_deadline = None
        if state == "write":  # the client does not read: a thread waits to finish it
            self._stop_polling(poller, connection)
            self._serve_in_thread(connection, handshake=True)
            return False
        note_tls(connection)
        tls = connection.record.tls
        if tls is not None and tls.alpn not in (None, "http/1.1"):  # h2: a thread serves it
            self._stop_polling(poller, connection)
            self._serve_in_thread(connection)
            return False
        return True

    @staticmethod
    def _hung_up(poller: net.Poller, connection: Connection) -> None:
        """The client closed or reset a connection whose handler runs on its own thread:
        noted now, when it happened; the connection's thread carries on from there."""
        poller.forget(connection.stream)
        how = "reset" if connection.stream.reset_by_peer() else "client"
        connection.hung_up = how
        connection.record.closed(how)

    def _stop_polling(
        self, poller: net.Poller, connection: Connection, *, closed_by: str | None = None
    ) -> None:
        poller.forget(connection.stream, closing=closed_by is not None)
        if closed_by is not None:
            connection.record.closed(closed_by)
            connection.stream.close()
            with self._lock:
                self._open.pop(connection.id, None)

    # -- connections with a thread of their own ------------------------------------------------

    def _serve_in_thread(
        self,
        connection: Connection,
        *,
        first: tuple[Arrival, bytes] | None = None,
        unsent: bytes = b"",
        keep_alive: bool = True,
        handshake: bool = False,
    ) -> None:
        """Serve ``connection`` in a thread of its own: first the rest of a TLS handshake
        (``handshake``) or of an answer (``unsent``) the poll thread began, or a request it
        read (``first``), then whatever follows."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(connection, first, unsent, keep_alive, handshake),
            name=f"deproxy-{self.name}-{connection.id}",
            daemon=True,
        )
        with self._lock:
            self._open[connection.id] = (thread, connection)
        thread.start()

    def _serve_connection(
        self,
        connection: Connection,
        first: tuple[Arrival, bytes] | None,
        unsent: bytes,
        keep_alive: bool,
        handshake: bool,
    ) -> None:
        try:
            if self._stopping.is_set():  # handed over as shutdown began: it may have missed it
                return
            connection.stream.timeout = None  # with a thread of its own, it may wait
            if self.proxy_protocol and not self._take_proxy_header(connection):
                return
            if handshake:  # begun on the poll thread
                connection.stream.timeout = TLS_HANDSHAKE_TIMEOUT
                connection.stream.handshake()
                connection.stream.timeout = None
                note_tls(connection)
            elif self._tls_context is not None and self.proxy_protocol:
                self._start_tls(connection, self._tls_context)
            if unsent:
                connection.stream.write(unsent)
                if not keep_alive:
                    connection.record.closed("endpoint")
                    return
            self._responder.serve(connection, first)
        except NetworkError as exc:
            connection.record.closed("reset" if isinstance(exc, ConnectionReset) else "endpoint")
            if not self._stopping.is_set():
                self.record_error(exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not vanish in a thread
            self._responder.report(exc)
        finally:
            connection.record.closed("shutdown" if self._stopping.is_set() else "endpoint")
            connection.stream.close()
            with self._lock:
                self._open.pop(connection.id, None)

    def _start_tls(self, connection: Connection, context: ssl.SSLContext) -> None:
        start_tls(connection, context, self._stopping)

    def _take_proxy_header(self, connection: Connection) -> bool:
        optional = self.proxy_protocol == "optional"
        return take_proxy_header(connection, optional=optional, refuse=self.record_error)

    def _stop_stalled(self, poller: net.Poller, now: float) -> None:
        """Stop requests that made no progress for ``request_timeout`` s (slowloris), and
        close TLS handshakes on the poll thread not done in ``TLS_HANDSHAKE_TIMEOUT`` s; the
        poll thread calls this at least every half second.

        The connection threads never set socket timeouts for this: a timeout costs a syscall
        on every read, and the GIL with it, where this costs one check every half second.
        """
        with self._lock:
            connections = list(self._open.values())
        for thread, connection in connections:
            handshake_deadline = connection.handshake_deadline
            if thread is None and handshake_deadline is not None and handshake_deadline < now:
                self._stop_polling(poller, connection, closed_by="endpoint")
                self.record_error(
                    DeproxyTimeout(f"timed out in the TLS handshake with {connection.record.peer}")
                )
        if self.request_timeout is None:
            return
        deadline = now - self.request_timeout
        for _, connection in connections:
            last = connection.reader.last_progress
            if last is not None and last < deadline and not connection.timed_out:
                connection.timed_out = True
                connection.stream.shutdown(reading_only=True)
