"""Serving connections: a listener, its poll thread, connection threads and a watchdog.

Rules kept here: every thread is named, owned by its server and joined by ``shutdown()``,
which is idempotent. A failure on one connection is recorded on ``errors`` and never stops
the server. What to answer is not decided here: a subclass (the Endpoint) says, through
``_handler_for``, ``_answer``, ``_exchange`` and ``_record_unanswered``.

A plain connection is served on the poll thread for as long as each request on it arrives
whole and ordinary, for a handler that never blocks (``handlers.never_blocks``). The first
request that is otherwise (still arriving, unusual, for a handler that may wait), or a TLS
handshake, gives the connection a thread of its own for the rest of its life. Under load,
one thread answering many connections is several times as fast as a thread each, which hand
the GIL to one another on every request.

Shutdown wakes every thread at once, whatever it waits on, and only then waits for any: each
open connection is shut down at the socket (a blocked read, write or TLS handshake returns),
and handlers wait on the stopping event (``HandlerContext.sleep``). A connection's stream is
in the registry before anything can block on it, TLS handshakes included, so none is missed.
A thread still running ``JOIN_TIMEOUT`` s later is reported, not forgotten.
"""

from __future__ import annotations

import itertools
import ssl
import threading
import time
from collections.abc import Sequence

from . import handlers, net, responding, wire
from .errors import DeproxyError, DeproxyTimeout, NetworkError
from .handlers import Handler
from .models import Request, Response

_connection_ids = itertools.count(1)
JOIN_TIMEOUT = 5.0  # how long shutdown() waits, in all, for the threads it woke
TLS_HANDSHAKE_TIMEOUT = 10.0
LINGER_SECONDS = 5.0  # after a 413, how long the unread body is read and dropped


class Session:
    """One accepted connection: its stream and reader, replaced when a tunnel turns to TLS."""

    def __init__(
        self, stream: net.Stream, connection_id: str, max_body_size: int | None = None
    ) -> None:
        self.connection_id = connection_id
        self.tunnel: str | None = None
        self.timed_out = False  # set by the watchdog when a request stalled
        self.max_body_size = max_body_size
        self.use(stream)

    def use(self, stream: net.Stream) -> None:
        self.stream = stream
        self.reader = wire.MessageReader(stream, max_body_size=self.max_body_size)


class ConnectionServer:
    """Accepts connections on ``hostname:port`` and reads requests off them; what to answer,
    and what to record, is for the subclass's hooks."""

    def __init__(
        self,
        *,
        name: str,
        hostname: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        request_timeout: float | None,
        max_body_size: int | None = None,
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.request_timeout = request_timeout
        self.max_body_size = max_body_size
        self._tls_context = tls_context
        self._lock = threading.Lock()
        self._errors: list[DeproxyError] = []
        # Each open connection, with the thread that serves it (None: the poll thread).
        self._connections: dict[str, tuple[threading.Thread | None, Session]] = {}
        self._stopping = threading.Event()
        self._join_deadline: float | None = None  # set by the first begin_shutdown()
        self._reported_stuck: set[str] = set()
        self._listener = net.listen(hostname, port)
        self.port: int = self._listener.getsockname()[1]
        self._poll_thread = threading.Thread(
            target=self._poll_loop, name=f"deproxy-{name}-poll", daemon=True
        )
        self._poll_thread.start()
        self._watchdog: threading.Thread | None = None
        if request_timeout is not None:
            self._watchdog = threading.Thread(
                target=self._watch_requests, name=f"deproxy-{name}-watchdog", daemon=True
            )
            self._watchdog.start()

    @property
    def errors(self) -> list[DeproxyError]:
        """A snapshot of the failures seen on this server's connections."""
        with self._lock:
            return list(self._errors)

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
            sessions = [session for _, session in self._connections.values()]
        if first:
            net.wake_listener(self._listener)  # the poll thread wakes and sees _stopping
        for session in sessions:
            session.stream.shutdown()

    def shutdown(self) -> None:
        """Stop listening, close every connection and join every thread. Safe to call twice.

        Every thread is woken first (see :meth:`begin_shutdown`), then all are waited for
        until one deadline, ``JOIN_TIMEOUT`` s away. A thread still running then (a handler
        blocked in ``time.sleep``, or on a server outside this Deproxy) is left behind and
        reported: a :class:`DeproxyError` on ``errors`` and to the owner (the ``deproxy``
        fixture fails the test with it). Nothing is raised here, so a ``with`` block or a
        ``finally`` that shuts down never hides the exception that is on its way out.
        """
        self.begin_shutdown()
        assert self._join_deadline is not None
        deadline = self._join_deadline
        current = threading.current_thread()
        late = self._join([self._poll_thread, self._watchdog], deadline)
        # The poll thread has stopped: it hands no more connections to threads. Any it handed
        # over since begin_shutdown() looked are woken now.
        with self._lock:
            connections = list(self._connections.values())
        for _, session in connections:
            session.stream.shutdown()
        late += self._join([thread for thread, _ in connections], deadline)
        self._listener.close()
        for thread in late:
            if thread is current or thread.name in self._reported_stuck:
                continue
            self._reported_stuck.add(thread.name)
            stuck = DeproxyError(
                f"thread {thread.name} of endpoint {self.name!r} did not stop within "
                f"{JOIN_TIMEOUT} s of shutdown and was left running; a handler that waits "
                "should wait through context.sleep(), which shutdown wakes"
            )
            self._record_error(stuck)
            self._report(stuck)

    @staticmethod
    def _join(
        threads: Sequence[threading.Thread | None], deadline: float
    ) -> list[threading.Thread]:
        """Join ``threads`` until ``deadline``; those still running."""
        current = threading.current_thread()
        late = []
        for thread in threads:
            if thread is None or thread is current:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                late.append(thread)
        return late

    # -- what the subclass decides ---------------------------------------------------------

    def _handler_for(self, request: Request) -> Handler:
        raise NotImplementedError

    def _answer(self, session: Session, request: Request, handler: Handler) -> tuple[bytes, bool]:
        """Answer through a handler that never blocks: the bytes, and whether to keep alive."""
        raise NotImplementedError

    def _exchange(self, session: Session, request: Request) -> bool:
        """Answer one request on a connection's own thread; whether to keep it open."""
        raise NotImplementedError

    def _record_unanswered(
        self, session: Session, request: Request, action: str, response: Response | None = None
    ) -> None:
        """Record a request that no handler answered: it was cut short or stalled (no
        ``response``), or refused as it came (``response``: what was sent instead)."""
        raise NotImplementedError

    def _report(self, error: BaseException) -> None:
        """An error that must fail the test: an exception of this package's own, raised in a
        server thread, or a thread that would not stop."""
        raise NotImplementedError

    # -- threads ---------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        """Accept connections, and answer the requests that need no thread of their own
        (see the module's docstring)."""
        poller = net.Poller()
        poller.watch(self._listener, None)
        try:
            while not self._stopping.is_set():
                for session in poller.ready():
                    if session is None:
                        self._accept(poller)
                    else:
                        assert isinstance(session, Session)
                        self._serve_ready(poller, session)
        finally:
            with self._lock:
                polled = [s for thread, s in self._connections.values() if thread is None]
                for session in polled:
                    del self._connections[session.connection_id]
            for session in polled:
                session.stream.close()
            poller.close()

    def _accept(self, poller: net.Poller) -> None:
        accepted = net.accept_ready(self._listener)
        if accepted is None:
            return  # the client gave up before we accepted
        sock, peer = accepted
        if self._stopping.is_set():
            sock.close()  # the wake-up connection from shutdown()
            return
        connection_id = f"conn-{next(_connection_ids)}"
        if self._tls_context is not None:  # a handshake may wait: a thread from the start
            self._serve_in_thread(
                Session(net.Stream(sock, peer), connection_id, self.max_body_size)
            )
            return
        session = Session(net.Stream(sock, peer, timeout=0), connection_id, self.max_body_size)
        with self._lock:
            self._connections[connection_id] = (None, session)
        poller.watch(session.stream, session)

    def _serve_ready(self, poller: net.Poller, session: Session) -> None:
        """Answer whatever a polled connection sent, or hand the connection to a thread."""
        reader = session.reader
        try:
            data = session.stream.read_ready()
            if data is None:
                return
            if not data:  # closed between requests
                self._stop_polling(poller, session, close=True)
                return
            reader.pending += data
            while reader.pending:
                request = reader.read_buffered_request()
                handler = None if request is None else self._handler_for(request)
                if request is None or not handlers.never_blocks(handler):
                    self._stop_polling(poller, session)
                    self._serve_in_thread(session, first=request)
                    return
                assert handler is not None
                answer, keep_alive = self._answer(session, request, handler)
                sent = session.stream.write_ready(answer)
                if sent < len(answer):  # the client is slow to read: a thread waits for it
                    self._stop_polling(poller, session)
                    self._serve_in_thread(session, unsent=answer[sent:], keep_alive=keep_alive)
                    return
                if not keep_alive:
                    self._stop_polling(poller, session, close=True)
                    return
        except NetworkError as exc:
            self._stop_polling(poller, session, close=True)
            if not self._stopping.is_set():
                self._record_error(exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not stop the endpoint
            self._stop_polling(poller, session, close=True)
            self._report(exc)

    def _stop_polling(self, poller: net.Poller, session: Session, *, close: bool = False) -> None:
        poller.forget(session.stream)
        if close:
            session.stream.close()
            with self._lock:
                self._connections.pop(session.connection_id, None)

    def _serve_in_thread(
        self,
        session: Session,
        *,
        first: Request | None = None,
        unsent: bytes = b"",
        keep_alive: bool = True,
    ) -> None:
        """Serve ``session`` in a thread of its own: first the rest of an answer the poll
        thread began (``unsent``) or a request it read (``first``), then whatever follows."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(session, first, unsent, keep_alive),
            name=f"deproxy-{self.name}-{session.connection_id}",
            daemon=True,
        )
        with self._lock:
            self._connections[session.connection_id] = (thread, session)
        thread.start()

    def _watch_requests(self) -> None:
        """Stop requests that made no progress for ``request_timeout`` s (slowloris).

        The connection threads never set socket timeouts for this: a timeout costs a syscall
        on every read, and the GIL with it, where this costs one check every half second.
        """
        assert self.request_timeout is not None
        interval = min(0.5, self.request_timeout / 4)
        while not self._stopping.wait(interval):
            deadline = time.monotonic() - self.request_timeout
            with self._lock:
                sessions = [session for _, session in self._connections.values()]
            for session in sessions:
                last = session.reader.last_progress
                if last is not None and last < deadline and not session.timed_out:
                    session.timed_out = True
                    session.stream.shutdown(reading_only=True)

    def _record_error(self, error: DeproxyError) -> None:
        with self._lock:
            self._errors.append(error)

    def _start_tls(self, session: Session, context: ssl.SSLContext) -> None:
        """Turn the session to TLS. The TLS stream is the session's before the handshake
        starts, so that shutdown (which sets ``_stopping``, then shuts down each session's
        stream) wakes a stalled handshake too; wrapping the socket leaves the old stream
        nothing to shut down."""
        stream = session.stream
        stream.timeout = TLS_HANDSHAKE_TIMEOUT  # a stalled handshake must not hold a thread
        stream = stream.start_tls(context, server_side=True, handshake=False)
        session.use(stream)
        if self._stopping.is_set():  # shutdown may have looked before use(): it missed this one
            stream.shutdown()
        stream.handshake()
        stream.timeout = None

    def _serve_connection(
        self, session: Session, first: Request | None, unsent: bytes, keep_alive: bool
    ) -> None:
        connection_id = session.connection_id
        try:
            if self._stopping.is_set():  # handed over as shutdown began: it may have missed it
                return
            session.stream.timeout = None  # with a thread of its own, it may wait
            if self._tls_context is not None:
                self._start_tls(session, self._tls_context)
            if unsent:
                session.stream.write(unsent)
                if not keep_alive:
                    return
            if first is not None and not self._exchange(session, first):
                return
            while not self._stopping.is_set():
                try:
                    request = session.reader.read_request()
                except wire.BodyTooLarge as exc:
                    self._refuse_body(session, exc)
                    break
                except wire.MessageError as exc:
                    self._record_error(exc)
                    self._answer_malformed(session.stream, exc)
                    break
                except wire.PeerClosed as exc:
                    if exc.partial is not None:  # the chain shows how far the request came
                        size = len(exc.partial.raw_body)
                        action = f"the client closed the connection after {size} body bytes"
                        if session.timed_out:
                            action = f"the request stalled after {size} body bytes: 408 sent"
                        self._record_unanswered(session, exc.partial, action)
                    if not session.timed_out:
                        raise
                    self._answer_stalled(session)
                    break
                if request is None or not self._exchange(session, request):
                    break
        except NetworkError as exc:
            if not self._stopping.is_set():
                self._record_error(exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not vanish in a thread
            self._report(exc)
        finally:
            session.stream.close()
            with self._lock:
                self._connections.pop(connection_id, None)

    def _answer_stalled(self, session: Session) -> None:
        stalled = DeproxyTimeout(
            f"a request made no progress for {self.request_timeout} s; answered 408 and closed"
        )
        self._record_error(stalled)
        late = wire.MessageError(str(stalled), 408)
        self._answer_malformed(session.stream, late)

    def _answer_malformed(self, stream: net.Stream, error: wire.MessageError) -> None:
        stream.write(responding.refusal(error.status_hint, str(error)))

    def _refuse_body(self, session: Session, error: wire.BodyTooLarge) -> None:
        """Answer 413 to a request whose body is over ``max_body_size``, recorded as a
        handling, then close: the rest of the body is read and dropped for a while first
        (a lingering close), so that the client, still sending, gets to read the 413 rather
        than a reset."""
        self._record_error(error)
        sent = responding.refusal_response(413, str(error), error.partial)
        action = f"refused: {error}; answered 413 and closed"
        self._record_unanswered(session, error.partial, action, sent)
        stream = session.stream
        stream.write(b"".join(responding.wire_parts(sent, error.partial)))
        stream.shutdown(writing_only=True)
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0 and not self._stopping.is_set():
            stream.timeout = left
            try:
                if not stream.read():
                    break
            except NetworkError:  # the client gave up first, or took too long: close anyway
                break
