"""A fault-injecting TCP proxy for the network tests.

It listens on 127.0.0.1 (a free port) and forwards each accepted connection
to a port on 127.0.0.1 -- the test Dovecot's IMAPS port.  TLS passes through
untouched, so a cut lands wherever the byte count says: inside the TLS
handshake, the login, a TLS record, a message literal.

Faults are chosen per connection (numbered from 1 in accept order) by
``plan(n) -> Fault``; :func:`first`, :func:`every` and :func:`only` build the
usual plans.  Byte counts are server->client bytes on that connection.

Bounded by construction: every loop waits with a timeout and checks a stop
flag, each connection lives at most ``max_seconds``, and leaving the ``with``
block (or :meth:`FaultProxy.stop`) closes every socket and joins every thread.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

HOST = "127.0.0.1"  # the only address the proxy ever listens on or connects to


@dataclass(frozen=True)
class Fault:
    """What to do to one connection (all None/0: forward faithfully)."""

    cut_after: Optional[int] = None  # close both sides after N server->client bytes
    stall_after: Optional[int] = None  # stop forwarding (sockets stay open) after N bytes
    delay: float = 0.0  # sleep this long before forwarding each server->client chunk
    refuse: bool = False  # close the client's socket at once, never contact the server
    cut_up_after: Optional[int] = None  # close both sides after N client->server bytes
    up_delay: float = 0.0  # sleep this long before forwarding each client->server chunk


CLEAN = Fault()
Plan = Callable[[int], Fault]


def first(fault: Fault) -> Plan:
    """``fault`` on the first connection only (a reconnect gets a clean line)."""
    return lambda n: fault if n == 1 else CLEAN


def every(fault: Fault) -> Plan:
    """``fault`` on every connection."""
    return lambda n: fault


def only(numbers: set[int], fault: Fault) -> Plan:
    """``fault`` on the connections whose numbers are in ``numbers``."""
    return lambda n: fault if n in numbers else CLEAN


@dataclass
class ConnStats:
    number: int
    fault: Fault
    down: int = 0  # server->client bytes forwarded
    up: int = 0  # client->server bytes forwarded
    ended: str = ""  # "client", "server", "cut", "refused", "stopped", "expired"


class FaultProxy:
    """``with FaultProxy(dovecot.imaps_port, first(Fault(cut_after=5000))) as p: p.port``."""

    def __init__(self, target_port: int, plan: Optional[Plan] = None, *, chunk: int = 16384,
                 max_seconds: float = 120.0, max_connections: int = 200) -> None:
        self.target_port = target_port
        self.plan: Plan = plan or every(CLEAN)
        self.chunk = chunk
        self.max_seconds = max_seconds
        self.max_connections = max_connections
        self.connections: list[ConnStats] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept",
                                          daemon=True)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)

    # ------------------------------------------------------------ accepting

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                number = len(self.connections) + 1
                stats = ConnStats(number, self.plan(number))
                self.connections.append(stats)
                if number > self.max_connections:
                    stats = ConnStats(number, Fault(refuse=True))
                    self.connections[-1] = stats
                t = threading.Thread(target=self._serve, args=(client, stats),
                                     name=f"proxy-conn-{number}", daemon=True)
                self._threads.append(t)
            t.start()

    # ------------------------------------------------------------ one connection

    def _serve(self, client: socket.socket, st: ConnStats) -> None:
        fault = st.fault
        server: Optional[socket.socket] = None
        try:
            if fault.refuse:
                st.ended = "refused"
                return
            server = socket.create_connection((HOST, self.target_port), timeout=5)
            st.ended = self._pump(client, server, st)
        except OSError:
            st.ended = st.ended or "error"
        finally:
            for s in (client, server):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _pump(self, client: socket.socket, server: socket.socket, st: ConnStats) -> str:
        fault = st.fault
        limit = min((n for n in (fault.cut_after, fault.stall_after) if n is not None),
                    default=None)
        client.setblocking(False)
        server.setblocking(False)
        deadline = time.monotonic() + self.max_seconds
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, "up")
            stalled = limit is not None and limit <= 0
            if stalled and fault.cut_after is not None and fault.cut_after <= 0:
                return _cut(client, server)
            if fault.cut_up_after is not None and fault.cut_up_after <= 0:
                return _cut(client, server)
            if not stalled:
                sel.register(server, selectors.EVENT_READ, "down")
            while not self._stop.is_set():
                if time.monotonic() > deadline:
                    return "expired"
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(self.chunk)
                    except BlockingIOError:
                        continue
                    if not data:
                        return "client" if key.data == "up" else "server"
                    if key.data == "up":
                        up_limit = fault.cut_up_after
                        if up_limit is not None and st.up + len(data) >= up_limit:
                            _send_all(server, data[: up_limit - st.up], self._stop)
                            st.up = up_limit
                            return _cut(client, server)  # e.g. inside an APPEND literal
                        if not stalled:  # a stalled line swallows what the client sends
                            if fault.up_delay:
                                time.sleep(fault.up_delay)
                            _send_all(server, data, self._stop)
                            st.up += len(data)
                        continue
                    if fault.delay:
                        time.sleep(fault.delay)
                    if limit is not None and st.down + len(data) >= limit:
                        data = data[: limit - st.down]
                        _send_all(client, data, self._stop)
                        st.down += len(data)
                        if fault.cut_after is not None and st.down >= fault.cut_after:
                            return _cut(client, server)
                        stalled = True
                        sel.unregister(server)  # leave the server's bytes unread
                        continue
                    _send_all(client, data, self._stop)
                    st.down += len(data)
        return "stopped"

    def down_bytes(self, number: int = 1) -> int:
        """Server->client bytes forwarded on connection ``number`` (1-based)."""
        return self.connections[number - 1].down


def _send_all(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """sendall() for a non-blocking socket, giving up when the proxy stops."""
    view = memoryview(data)
    while view and not stop.is_set():
        try:
            sent = sock.send(view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        view = view[sent:]


def _cut(client: socket.socket, server: socket.socket) -> str:
    """Close both directions of both sockets (the caller closes the sockets)."""
    for s in (client, server):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return "cut"
