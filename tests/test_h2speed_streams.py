"""What an HTTP/2 connection's session keeps of the streams it answered: nothing once a
stream is answered whole (the record keeps its handling, within the record's own caps)."""

from __future__ import annotations

import gc

from pytest_deproxy import Deproxy, handlers
from pytest_deproxy.h2serve import H2Session

from .conftest import answered


def _sessions() -> list[H2Session]:
    return [o for o in gc.get_objects() if type(o) is H2Session]


def test_a_long_connection_keeps_no_stream_it_answered(deproxy: Deproxy) -> None:
    """300 requests one after another, then 20 at once, on one connection: the session that
    serves it holds no stream once each is answered, stock answers and a handler that
    waits (on a thread of its stream's own) alike."""
    endpoint = deproxy.add_endpoint(http2="h2c")
    waiting = handlers.delay(0.001)
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        chains = [deproxy.make_request(endpoint.url, connection=connection) for _ in range(300)]
        # (by the record itself: a session of an earlier test's endpoint, not yet collected,
        # may have served a connection of the same id)
        [session] = [s for s in _sessions() if s.connection.record is endpoint.connections[0]]
        kept_inline = len(session._streams)
        chains += [
            deproxy.make_request(endpoint.url, connection=connection, default_handler=waiting)
            for _ in range(100)
        ]
        kept_waited = len(session._streams)
    assert [answered(c).code for c in chains] == ["200"] * 400
    assert len(endpoint.handlings) == 400
    assert kept_inline == 0  # before: 300, each with its fields, for the connection's life
    assert kept_waited < 64  # the streams of threads that ended go as new threads start
