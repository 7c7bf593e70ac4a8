"""What an endpoint made and stopped for one test costs: descriptors, name lookups, threads,
and the records it leaves (issue 18's fixture cost). Behaviour, never timing."""

from __future__ import annotations

import os
import socket
import sys
import threading

import pytest

from pytest_deproxy import Deproxy, net
from pytest_deproxy.errors import NetworkError

from .conftest import working_threads

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd"
)


def open_descriptors() -> set[tuple[int, str]]:
    """(descriptor, kind) of each open descriptor, listdir's own left out."""
    found = {(fd, _kind(fd)) for fd in map(int, os.listdir("/proc/self/fd"))}
    return {(fd, kind) for fd, kind in found if kind}


def test_an_endpoint_holds_a_listener_two_epolls_and_two_eventfds_and_no_more() -> None:
    with Deproxy() as deproxy:
        before = open_descriptors()
        deproxy.add_endpoint()
        held = open_descriptors() - before
        kinds = sorted(kind for _, kind in held)
    # The listener, the endpoint's poller (which a waiting caller borrows), and its poll
    # thread's, each woken through an eventfd, not a socket pair.
    pollers = ["anon_inode:[eventfd]"] * 2 + ["anon_inode:[eventpoll]"] * 2
    assert kinds == [*pollers, "socket"], kinds
    assert open_descriptors() & held == set()  # all closed by shutdown


def test_an_ip_literal_is_bound_without_a_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[object] = []

    def no_resolver(host: object, *args: object, **kwargs: object) -> object:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "no resolver in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    for hostname in ("127.0.0.1", "::1"):
        listener = net.listen(hostname, 0)
        try:
            assert listener.getsockname()[0] == hostname
        finally:
            listener.close()
    assert looked_up == []
    with pytest.raises(NetworkError, match="cannot listen on 'localhost'"):
        net.listen("localhost", 0)  # a name still goes to the resolver
    assert looked_up == ["localhost"]


def test_a_request_to_an_ip_literal_needs_no_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[object] = []

    def no_resolver(host: object, *args: object, **kwargs: object) -> object:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "no resolver in this test")

    with Deproxy() as deproxy:
        ipv4 = deproxy.add_endpoint()
        monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
        answer = deproxy.make_request(ipv4.url).received_response
        assert answer is not None and answer.code == "200"
        assert looked_up == []
        by_name = deproxy.make_request(f"http://localhost:{ipv4.port}/")
        assert by_name.received_response is None  # a name still goes to the resolver
        assert "localhost" in str(by_name.error)
        assert looked_up == ["localhost"]


def test_a_refused_connection_to_an_ip_literal_still_says_so() -> None:
    port = net.listen("127.0.0.1", 0)
    free = port.getsockname()[1]
    port.close()
    with Deproxy() as deproxy:
        chain = deproxy.make_request(f"http://127.0.0.1:{free}/", timeout=5)
    assert chain.received_response is None
    assert f"connecting to 127.0.0.1:{free}" in str(chain.error)


def test_a_port_in_use_still_says_so() -> None:
    with Deproxy() as deproxy:
        taken = deproxy.add_endpoint()
        with pytest.raises(NetworkError, match="already in use"):
            deproxy.add_endpoint(port=taken.port)


def test_shutdown_leaves_no_thread_and_no_wake_up_connection_on_the_record() -> None:
    with Deproxy() as deproxy:
        idle = deproxy.add_endpoint(name="idle")
        used = deproxy.add_endpoint(name="used")
        answer = deproxy.make_request(used.url).received_response
        assert answer is not None and answer.code == "200"
    assert working_threads() == []
    assert idle.connections == []  # woken through its poller, never by connecting to it
    assert len(used.connections) == 1
    assert used.connections[0].closed_by in ("client", "shutdown")


def test_a_poller_wakes_once_per_wake_up_and_a_late_wake_up_does_nothing() -> None:
    poller = net.Poller()
    try:
        waiting: list[list[object]] = []
        thread = threading.Thread(target=lambda: waiting.append(poller.ready(10)))
        thread.start()
        poller.wake()
        thread.join(10)
        assert waiting == [[]]  # woken, with no key of the caller's
        poller.wake()
        poller.wake()
        assert poller.ready(10) == []  # both wake-ups taken in one
        assert poller.ready(0) == []  # and nothing left
    finally:
        poller.close()
    poller.wake()  # after close: nothing written anywhere
    poller.close()  # twice: nothing happens


def test_a_poller_still_reports_what_it_watches() -> None:
    left, right = socket.socketpair()
    poller = net.Poller()
    try:
        poller.watch(left, "left")
        right.send(b"x")
        assert poller.ready(10) == ["left"]
        poller.forget(left)
        assert poller.ready(0) == []
    finally:
        poller.close()
        left.close()
        right.close()


def test_the_wake_up_descriptor_is_not_inherited_by_child_processes() -> None:
    before = open_descriptors()
    poller = net.Poller()
    try:
        made = open_descriptors() - before
        eventfds = [fd for fd, kind in made if kind == "anon_inode:[eventfd]"]
        assert len(eventfds) == 1
        assert not _inheritable(eventfds[0])
    finally:
        poller.close()


def _inheritable(fd: int) -> bool:
    try:
        return os.get_inheritable(fd)
    except OSError:
        return False


def _kind(fd: int) -> str:
    """``socket``, ``anon_inode:[eventfd]``, ``anon_inode:[eventpoll]``...; "" if closed."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return link if link.startswith("anon_inode:") else link.split(":")[0]
