"""Stock handlers: what an endpoint answers.

A handler is ``handler(request) -> Response``, ``handler(request, context) -> Response``, or a
:class:`~pytest_deproxy.Response` used as a canned reply. Rule kept here: these compute
responses; the only ones that touch the network are :func:`route`, which forwards through the
client module, the faults in :mod:`pytest_deproxy.faults`, which the endpoint carries out,
and the upgrades (:func:`websocket`, :func:`upgrade`), which answer with a
:class:`~pytest_deproxy.faults.Takeover` that the endpoint runs once it has recorded and
written the 101 (see :mod:`pytest_deproxy.ws_endpoint`). Those upgrades (and
``ServerSession``) load with wsproto when first asked for (PEP 562 ``__getattr__`` below):
a suite that never upgrades never imports it.

A handler that never waits says so with :func:`non_blocking` (a canned Response and the stock
``simple``, ``echo`` and ``not_found`` need not): an endpoint then answers it on its poll
thread, without a thread per connection. Every other handler may block, on its own thread.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from . import client, faults, forwarding, h2faults
from .errors import DeproxyError
from .models import Request, Response
from .record import Place
from .tls import CertificateAuthority

if TYPE_CHECKING:  # found by __getattr__ on first use: they load wsproto
    from .upgrade_handlers import upgrade as upgrade
    from .upgrade_handlers import websocket as websocket
    from .upgrade_handlers import websocket_close as websocket_close
    from .upgrade_handlers import websocket_drop as websocket_drop
    from .upgrade_handlers import websocket_fragments as websocket_fragments
    from .ws_endpoint import ServerSession as ServerSession

Handler = Callable[..., Any] | Response | faults.Fault


class ServingEndpoint(Place, Protocol):
    """The endpoint a handler runs in, as handlers see it."""

    @property
    def ca(self) -> CertificateAuthority: ...


@dataclass
class HandlerContext:
    """What a two-argument handler is told about where it runs, and can change.

    ``send_default_headers`` (default ``True``) lets the endpoint add ``Server``, ``Date`` and
    ``Content-Length`` when they are absent; ``chunked`` sends the body with chunked framing.
    ``tunnel`` is the ``host:port`` of the ``CONNECT`` tunnel the request came through, if any.

    ``client_gone`` tells a handler running on a thread of its own (one that may block)
    whether the client, the proxy under test, has closed or reset the connection since its
    request arrived: a proxy cancelling a request it gave up on. The connection's record has
    when (``closed_at``, ``closed_by``); after a reset the answer is not sent. On HTTP/2 it is
    the handler's stream that counts: reset (``RST_STREAM``), or its connection closed.

    ``send_continue`` (default ``True``) answers a request that asks ``Expect: 100-continue``
    with ``100 Continue`` before its body is read. A handler that sets it to ``False`` before
    it reads ``request.body``, waits or returns refuses the body: it is never read, the
    answer goes out without it, and the connection closes after the answer (HTTP/1.1; on
    HTTP/2 the stream is reset with ``NO_ERROR`` after the answer, and the connection goes
    on)::

        def no_uploads(request, context):
            context.send_continue = False
            return Response(417)
    """

    endpoint: ServingEndpoint
    connection: str
    send_default_headers: bool = True
    chunked: bool = False
    tunnel: str | None = None
    send_continue: bool = True
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _send_interim: Callable[[Response], None] | None = field(default=None, repr=False)
    _on_poll_thread: bool = field(default=False, repr=False)  # a non_blocking handler's
    _client_gone: Callable[[], bool] | None = field(default=None, repr=False)
    # Called before the handler waits: a body it awaits is read (and 100 sent) first.
    _before_wait: Callable[[], object] | None = field(default=None, repr=False)

    def send_interim(self, response: Response) -> None:
        """Send a 1xx response now, before the final one (``103 Early Hints``, say)::

            context.send_interim(Response(103, headers={"Link": "</style.css>; rel=preload"}))

        It is written at once and recorded on the handling's ``interim_responses``.
        """
        if not isinstance(response, Response) or not 100 <= response.status < 200:
            raise ValueError(f"send_interim takes a 1xx Response, not {response!r}")
        if response.status == 101:
            raise ValueError("101 Switching Protocols is a final answer: return it instead")
        if self._send_interim is None:
            raise RuntimeError("this context belongs to no connection that can send")
        self._send_interim(response)

    @property
    def client_gone(self) -> bool:
        """Whether the client closed or reset the connection (on HTTP/2: reset this handler's
        stream or closed the connection) while this handler ran."""
        return self._client_gone is not None and self._client_gone()

    def sleep(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (``None``: until shutdown); ``False`` if the endpoint shut down first.

        Handlers wait through this, not ``time.sleep``, so that shutdown is never held up.
        A handler marked :func:`non_blocking` may not wait: this raises ``RuntimeError``.
        """
        if self._on_poll_thread:
            raise RuntimeError(
                "context.sleep() in a handler marked non_blocking: it runs on the endpoint's "
                "poll thread, which answers every other connection too, and must never wait; "
                "remove @non_blocking from a handler that waits (it then gets its own thread)"
            )
        if self._before_wait is not None:
            self._before_wait()
        return not self._stopping.wait(seconds)


# Whether each handler takes a context, remembered weakly: a test's closures must be free to go
# when the test ends (a strong cache pinned the last 512 of them, and what they hold).
_takes_context_cache: weakref.WeakKeyDictionary[Callable[..., Any], bool] = (
    weakref.WeakKeyDictionary()
)


def _inspect_takes_context(handler: Callable[..., Any]) -> bool:
    try:
        inspect.signature(handler).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume the simple form
        return False
    return True


def _takes_context(handler: Callable[..., Any]) -> bool:
    try:
        return _takes_context_cache[handler]
    except KeyError:
        wants = _takes_context_cache[handler] = _inspect_takes_context(handler)
        return wants
    except TypeError:  # neither hashable nor weakly referable: ask every time
        return _inspect_takes_context(handler)


def call_handler(handler: Handler, request: Request, context: HandlerContext) -> Any:
    """Run any form of handler and return what it returned."""
    if isinstance(handler, (Response, faults.Fault)):
        return handler
    if not callable(handler):
        raise TypeError(
            f"a handler must be a Response or a callable taking (request) or "
            f"(request, context), not {type(handler).__name__}"
        )
    return handler(request, context) if _takes_context(handler) else handler(request)


def simple(request: Request) -> Response:
    """200 OK with an empty body."""
    return Response(200)


def echo(request: Request) -> Response:
    """200 OK carrying the request's headers and body back, byte for byte."""
    return Response(200, headers=request.headers, body=request.raw_body)


def not_found(request: Request) -> Response:
    return Response(
        404, headers={"Content-Type": "text/plain"}, body=f"no route for {request.path}\n"
    )


_NON_BLOCKING_MARK = "__deproxy_non_blocking__"
F = TypeVar("F", bound=Callable[..., Any])


def non_blocking(handler: F) -> F:
    """Mark a handler that never waits, so an endpoint answers it on its poll thread (or on
    the thread of a ``make_request`` that waits for the answer: see
    :mod:`~pytest_deproxy.servingwait`), with no thread of its own per connection (several
    times as fast under load)::

        @handlers.non_blocking
        def answer(request):
            return Response(200, body=request.path)

    Such a handler only computes its answer: it may take a ``context`` (and send interim
    responses), return a fault or an upgrade (those are carried out on a thread), and an
    exception it raises is reported like any handler's (a 500, and the test fails). It must
    not wait: no sleeping (``context.sleep`` raises), no locks held by other threads, no
    requests to other servers (``route`` waits; ``make_request`` raises ``DeproxyError`` on
    a poll thread or a waiting caller's) - while it runs, every other connection of the
    endpoint waits. Returns ``handler`` itself, marked.
    """
    if not callable(handler) or isinstance(handler, (Response, faults.Fault)):
        raise TypeError(
            f"non_blocking marks a handler function, not {type(handler).__name__}: "
            "a canned Response never blocks already"
        )
    try:
        setattr(handler, _NON_BLOCKING_MARK, True)
        return handler
    except (AttributeError, TypeError):  # a bound method or a builtin takes no attribute
        taker = handler

        @functools.wraps(taker)
        def marked(*args: Any) -> Any:
            return taker(*args)

        setattr(marked, _NON_BLOCKING_MARK, True)
        return cast(F, marked)


def never_blocks(handler: object) -> bool:
    """Whether answering through ``handler`` can never wait: a canned Response, a stock
    handler that only computes (``simple``, ``echo``, ``not_found``), or one marked
    :func:`non_blocking`. An endpoint answers those without a thread per connection."""
    return (
        isinstance(handler, Response)
        or id(handler) in _NEVER_BLOCKING
        or getattr(handler, _NON_BLOCKING_MARK, False) is True
    )


def takes_context(handler: object) -> bool:
    """Whether calling ``handler`` needs a :class:`HandlerContext`: anything but a function
    of the request alone (asked once per handler, then remembered)."""
    return not callable(handler) or _takes_context(handler)


_SIMPLE_ANSWER = Response(200)


def canned_answer(handler: object) -> Response | None:
    """The response ``handler`` gives whatever the request, if it is one of those (a canned
    Response, or ``simple``), for an endpoint that sends a copy of it without calling it;
    never to be changed."""
    if isinstance(handler, Response):
        return handler
    return _SIMPLE_ANSWER if handler is simple else None


def delay(
    seconds: float, next_handler: Handler = simple
) -> Callable[[Request, HandlerContext], Any]:
    """Wait ``seconds``, then answer with ``next_handler``::

    deproxy.make_request(url, default_handler=handlers.delay(2))
    """
    if seconds < 0:
        raise ValueError(f"delay takes a number of seconds >= 0, got {seconds!r}")

    def delayed(request: Request, context: HandlerContext) -> Any:
        context.sleep(seconds)
        return call_handler(next_handler, request, context)

    delayed.__name__ = f"delay({seconds})"
    return delayed


def by_path(
    routes: Mapping[str | re.Pattern[str], Handler], default: Handler = not_found
) -> Callable[[Request, HandlerContext], Any]:
    """Choose a handler by the request path (query string excluded).

    Keys are exact paths or compiled regular expressions (matched with ``fullmatch``); the first
    that fits wins, in the mapping's order; otherwise ``default`` (404).
    """
    table = list(routes.items())
    for key, _ in table:
        if not isinstance(key, (str, re.Pattern)):
            raise TypeError(f"by_path keys are str or re.Pattern, got {key!r}")

    def route_by_path(request: Request, context: HandlerContext) -> Any:
        path = request.path.split("?", 1)[0]
        for key, handler in table:
            if path == key if isinstance(key, str) else key.fullmatch(path):
                return call_handler(handler, request, context)
        return call_handler(default, request, context)

    return route_by_path


def by_method(routes: Mapping[str, Handler]) -> Callable[[Request, HandlerContext], Any]:
    """Choose a handler by method; none fits: 405 with an ``Allow`` header listing the methods."""
    table = {method.upper(): handler for method, handler in routes.items()}
    allow = ", ".join(table)

    def route_by_method(request: Request, context: HandlerContext) -> Any:
        handler = table.get(request.method.upper())
        if handler is None:
            return Response(405, headers={"Allow": allow})
        return call_handler(handler, request, context)

    return route_by_method


_NEVER_BLOCKING = frozenset(map(id, (simple, echo, not_found)))  # module-level: never freed

# Faults: what a misbehaving server does instead of answering (see pytest_deproxy.faults).
close = faults.close_fault()
reset = faults.reset_fault()
hang = faults.hang_fault()
raw = faults.raw
headers_then_hang = faults.headers_then_hang
truncate = faults.truncate
dribble = faults.dribble
bad_chunk = faults.bad_chunk
Fault = faults.Fault

# HTTP/2 (see h2faults): on an HTTP/1 connection, a stream fault resets, a connection one closes.
H2Fault = h2faults.H2Fault
rst_stream = h2faults.rst_stream
goaway = h2faults.goaway
refuse_stream = h2faults.refuse_stream
h2_headers_only = h2faults.headers_only
trailers_only = h2faults.trailers_only
stall_window = h2faults.stall_window
h2_settings = h2faults.settings
raw_frames = h2faults.raw_frames
grpc_frame = h2faults.grpc_frame
grpc_messages = h2faults.grpc_messages


def grpc(message_bytes: bytes | str = b"", status: int = 0, message: str = "") -> Handler:
    """A handler answering one unary gRPC call: ``message_bytes`` (the serialized reply)
    length-prefixed, then ``grpc-status`` and ``grpc-message`` (``message``) trailers. No
    grpcio needed::

        endpoint.default_handler = handlers.grpc(b"\x08\x01", status=0)
    """
    payload = message_bytes.encode() if isinstance(message_bytes, str) else bytes(message_bytes)
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 16:
        raise ValueError(f"a gRPC status is an int from 0 to 16, not {status!r}")

    def grpc_unary(request: Request) -> Response:
        return h2faults.grpc_response(payload, status, message)

    grpc_unary.__name__ = f"grpc(status={status})"
    return grpc_unary


def route(
    url: str, *, verify: Any = None, timeout: float = forwarding.FORWARD_TIMEOUT
) -> Callable[[Request, HandlerContext], Response]:
    """Forward the request to the server at ``url`` and answer with its response.

    ``Host`` is rewritten to that server; the ``Deproxy-Request-ID`` is kept, so the next hop
    is recorded in the same chain. Hop-by-hop fields are dropped and the body is framed anew,
    as any proxy does. When the server cannot be reached the answer is a 502 that says why.
    ``verify`` is as for :meth:`Deproxy.make_request` (HTTPS targets).
    """
    target = client.Target.parse(url)

    def forward(request: Request, context: HandlerContext) -> Response:
        path = target.base_path + request.path if target.base_path else request.path
        try:
            return forwarding.forward(
                request,
                target,
                path=path,
                host=target.host_header,
                timeout=timeout,
                verify=verify,
                ca=context.endpoint.ca,
            )
        except DeproxyError as exc:  # an unreachable upstream is an answer here, as at any proxy
            return Response(
                502,
                headers={"Content-Type": "text/plain"},
                body=f"route to {url} failed: {exc}\n",
            )

    forward.__name__ = f"route({url})"
    return forward


# -- upgrades: WebSocket, and any other protocol as raw bytes (see upgrade_handlers) --------

Takeover = faults.Takeover
Upgraded = faults.Upgraded
# The upgrades and the session a WebSocket handler is given: their modules (and wsproto) load
# the first time one of these is asked for.
_UPGRADES = frozenset(
    {"websocket", "websocket_close", "websocket_drop", "websocket_fragments", "upgrade"}
)


# Hidden from type checkers, which see these names through the TYPE_CHECKING imports:
# with a module __getattr__ in sight, mypy would take any misspelt name for one.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name not in _UPGRADES and name != "ServerSession":
            raise AttributeError(f"module 'pytest_deproxy.handlers' has no attribute {name!r}")
        from . import upgrade_handlers, ws_endpoint

        found = getattr(ws_endpoint if name == "ServerSession" else upgrade_handlers, name)
        globals()[name] = found  # the next look-up finds it at once
        return found
