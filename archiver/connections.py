"""Several connections to one server working through one list of folders.

Over a link with a real round trip, one connection spends part of every
folder waiting (EXAMINE, the listing, the first FETCH answer); a second and
third connection fill those pauses with their own folders' bytes.  Only the
*fetching* is spread: every connection hands its batches to the engine's one
pipeline, whose single sync thread keeps the durability and index rules
(archiver/pipeline.py), so nothing about what is recorded, or when, changes.

Each connection has its own thread and its own reconnect budget.  The first
connection is the engine's own source (already logged in); the others are
:meth:`clone`s, and a server that refuses one (too many connections, a login
limit) only means fewer connections: the refusal is a note, not a problem.
A failure that is not a lost line (a full disk, a pipeline error) stops every
connection after its current batch and is raised in the calling thread, as
is Ctrl-C there.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

from archiver.errors import ArchiverError
from archiver.i18n import _
from archiver.progress import ByteMeter

T = TypeVar("T")

# Beyond this, more connections only load a shared old server.
MAX_CONNECTIONS = 8
AUTO_CONNECTIONS = 3


@dataclass
class Connection:
    """One server connection and its own reconnect budget."""

    source: Any
    number: int = 1
    reconnects: int = 0
    meter: Optional[ByteMeter] = None  # bytes as they arrive (the backup engine sets it)


class Stopping(Exception):
    """Another connection failed, or the user interrupted: end after the current batch."""


def auto_count(source: Any, folders_with_work: int) -> int:
    """How many connections ``--connections auto`` uses.

    One on loopback or a LAN (more would only share the same CPU), and for a
    source that cannot open a second connection (POP3); over a slow link
    :data:`AUTO_CONNECTIONS`, never more than there are folders to fetch.
    """
    if not hasattr(source, "clone") or not getattr(source, "slow_link", False):
        return 1
    return max(1, min(AUTO_CONNECTIONS, folders_with_work))


class Spread(Generic[T]):
    """Run ``work(connection, item)`` over ``items`` with up to ``count`` connections."""

    def __init__(self, primary: Any, count: int, items: Sequence[T],
                 work: Callable[[Connection, T], bool], note: Callable[[str], None],
                 stop: threading.Event) -> None:
        self._primary = primary
        self._count = max(1, min(count, MAX_CONNECTIONS, len(items) or 1))
        self._todo: collections.deque[T] = collections.deque(items)
        self._work = work
        self._note = note
        self._stop = stop
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._refused: list[str] = []

    def run(self) -> None:
        threads = [threading.Thread(target=self._loop, args=(n,), name=f"conn-{n}",
                                    daemon=True) for n in range(1, self._count + 1)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            for t in threads:
                t.join()
            raise
        if self._refused:
            self._note(_("the server accepted {accepted} of {count} connections ({reason}); "
                         "the others' folders went over the rest").format(
                             accepted=self._count - len(self._refused), count=self._count,
                             reason=self._refused[0]))
        if self._error is not None:
            raise self._error

    def _loop(self, number: int) -> None:
        conn = Connection(self._primary if number == 1 else self._primary.clone(), number)
        try:
            if number > 1:
                try:
                    conn.source.connect()
                except ArchiverError as exc:
                    with self._lock:
                        self._refused.append(str(exc))
                    return
            while not self._stop.is_set():
                try:
                    # The first connection works down from the largest folder, the
                    # others up from the smallest: while one streams a big folder
                    # the line stays full, and the small folders' round trips
                    # happen beside it instead of all at the end.
                    item = self._todo.popleft() if number == 1 else self._todo.pop()
                except IndexError:
                    return
                if not self._work(conn, item):
                    return  # this connection is out of reconnects; the others go on
        except Stopping:
            return
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()
        finally:
            if number > 1:
                conn.source.close()
