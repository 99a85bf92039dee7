"""Record the file-system calls of an in-process archiver run, by inode, in order.

Used by tests/integration/test_durable_order.py to prove the order
write < sync < rename < directory fsync < index append for every file the
index (or the restore journal) names.  ``os.open``/``write``/``fsync``/
``replace``/``rename``/``mkdir``/``ftruncate``/``close`` and
``archiver.durable.syncfs`` are wrapped while the log is active; every event
carries a global sequence number.  Files are followed by inode, so a rename
keeps its history and a reused descriptor number does not confuse it.
Index-like files (``*.jsonl.zst``) are decoded at each fsync, so the log
knows exactly when each record became durable.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import archiver.durable as durable
from archiver.index import frames

Ino = tuple[int, int]  # (st_dev, st_ino)


@dataclass
class Event:
    seq: int
    kind: str  # write, fsync, syncfs, name (create/rename/mkdir), record
    ino: Optional[Ino] = None
    path: str = ""  # the name given (name events) or the file's path
    parent: Optional[Ino] = None  # directory holding the name (name events)
    records: list[dict[str, Any]] = field(default_factory=list)  # record events
    detail: str = ""


class SyscallLog:
    """Context manager: wraps the calls, collects :class:`Event`s."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.abspath(root)
        self.events: list[Event] = []
        self._seq = itertools.count(1)
        self._lock = threading.RLock()
        self._fds: dict[int, tuple[Ino, str]] = {}
        self._decoded: dict[Ino, int] = {}  # index-like file -> bytes decoded so far
        self._saved: dict[str, Any] = {}

    # ------------------------------------------------------------ bookkeeping

    def _add(self, kind: str, **kw: Any) -> Event:
        with self._lock:
            ev = Event(next(self._seq), kind, **kw)
            self.events.append(ev)
            return ev

    def _mine(self, path: str) -> bool:
        full = os.path.abspath(path)
        return full == self.root or full.startswith(self.root + os.sep)

    @staticmethod
    def _ino_of(path: str) -> Ino:
        st = os.lstat(path)
        return (st.st_dev, st.st_ino)

    # ------------------------------------------------------------ wrappers

    def __enter__(self) -> SyscallLog:
        for existing in Path(self.root).rglob("*.jsonl.zst"):  # earlier runs' records
            st = existing.stat()
            self._decoded[(st.st_dev, st.st_ino)] = st.st_size
        real = {name: getattr(os, name) for name in
                ("open", "write", "fsync", "replace", "rename", "mkdir", "ftruncate", "close")}
        self._saved = dict(real)
        self._saved["syncfs"] = durable.syncfs
        real_syncfs = durable.syncfs

        def w_open(path: Any, flags: int, mode: int = 0o777, *a: Any, **k: Any) -> int:
            p = os.fsdecode(path)
            existed = os.path.lexists(p)
            fd: int = real["open"](path, flags, mode, *a, **k)
            if self._mine(p):
                st = os.fstat(fd)
                ino = (st.st_dev, st.st_ino)
                with self._lock:
                    self._fds[fd] = (ino, os.path.abspath(p))
                if not existed:
                    self._add("name", ino=ino, path=os.path.abspath(p),
                              parent=self._ino_of(os.path.dirname(os.path.abspath(p))),
                              detail="create")
            return fd

        def w_close(fd: int) -> None:
            with self._lock:
                self._fds.pop(fd, None)
            real["close"](fd)

        def w_write(fd: int, data: Any) -> int:
            n: int = real["write"](fd, data)
            known = self._fds.get(fd)
            if known is not None:
                self._add("write", ino=known[0], path=known[1])
            return n

        def w_ftruncate(fd: int, length: int) -> None:
            real["ftruncate"](fd, length)
            known = self._fds.get(fd)
            if known is not None:
                self._add("write", ino=known[0], path=known[1], detail="truncate")

        def w_fsync(fd: int) -> None:
            real["fsync"](fd)
            known = self._fds.get(fd)
            if known is None:
                st = os.fstat(fd)
                if not stat.S_ISDIR(st.st_mode):
                    return
                ino: Ino = (st.st_dev, st.st_ino)
                self._add("fsync", ino=ino, detail="dir")
                return
            ino, path = known
            self._add("fsync", ino=ino, path=path)
            if path.endswith(".jsonl.zst"):
                self._decode(fd, ino, path)

        def w_syncfs(fd: int) -> None:
            real_syncfs(fd)
            self._add("syncfs")

        def w_move(name: str) -> Callable[..., None]:
            def move(src: Any, dst: Any, *a: Any, **k: Any) -> None:
                s, d = os.fsdecode(src), os.fsdecode(dst)
                ino = self._ino_of(s) if self._mine(s) else None
                real[name](src, dst, *a, **k)
                if ino is not None and self._mine(d):
                    dd = os.path.abspath(d)
                    self._add("name", ino=ino, path=dd, parent=self._ino_of(os.path.dirname(dd)),
                              detail=name)
            return move

        def w_mkdir(path: Any, mode: int = 0o777, *a: Any, **k: Any) -> None:
            real["mkdir"](path, mode, *a, **k)
            p = os.path.abspath(os.fsdecode(path))
            if self._mine(p):
                self._add("name", ino=self._ino_of(p), path=p,
                          parent=self._ino_of(os.path.dirname(p)), detail="mkdir")

        for name, fn in (("open", w_open), ("close", w_close), ("write", w_write),
                         ("ftruncate", w_ftruncate), ("fsync", w_fsync),
                         ("replace", w_move("replace")), ("rename", w_move("rename")),
                         ("mkdir", w_mkdir)):
            setattr(os, name, fn)
        durable.syncfs = w_syncfs
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            if name == "syncfs":
                durable.syncfs = fn
            else:
                setattr(os, name, fn)

    def _decode(self, fd: int, ino: Ino, path: str) -> None:
        """Records made durable by this fsync of an index-like file."""
        start = self._decoded.get(ino, 0)
        size = os.fstat(fd).st_size
        if size < start:  # truncated (a torn tail cut): start over from the cut
            start = size
        with open(path, "rb") as fh:  # the writer's fd is write-only; builtin open is not wrapped
            fh.seek(start)
            data = fh.read(size - start)
        records: list[dict[str, Any]] = []
        good = 0
        for _start, end, payload in frames(data):
            if payload is None:
                break
            records.extend(json.loads(line) for line in payload.splitlines() if line.strip())
            good = end
        self._decoded[ino] = start + good
        self._add("record", ino=ino, path=path, records=records)

    # ------------------------------------------------------------ queries

    def index_records(self, suffix: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(seq at which it became durable, record) for files whose path ends with suffix."""
        for ev in self.events:
            if ev.kind == "record" and ev.path.endswith(suffix):
                for rec in ev.records:
                    yield ev.seq, rec

    def naming(self, path: str, before: int) -> Optional[Event]:
        """The last event before ``before`` that gave ``path`` its current file."""
        found = None
        for ev in self.events:
            if ev.seq >= before:
                break
            if ev.kind == "name" and ev.path == path:
                found = ev
        return found

    def last_write(self, ino: Ino, before: int) -> Optional[Event]:
        found = None
        for ev in self.events:
            if ev.seq >= before:
                break
            if ev.kind == "write" and ev.ino == ino:
                found = ev
        return found

    def synced_between(self, ino: Ino, after: int, before: int, directory: bool = False
                       ) -> bool:
        """Was ``ino`` fsynced (or, for a file, covered by a syncfs) in (after, before)?"""
        for ev in self.events:
            if ev.seq <= after:
                continue
            if ev.seq >= before:
                return False
            if ev.kind == "fsync" and ev.ino == ino:
                return True
            if ev.kind == "syncfs" and not directory:
                return True
        return False

