"""A shard's state file: append-only JSON lines, the last line of a user wins.

``ROOT/.batch/state/<tag>.jsonl`` holds one JSON object per line, each a
complete picture of one account at one moment (``pending`` when the batch
first saw it, ``running`` when its backup started, then ``ok``, ``partial``
or ``failed`` with its counts).  Appending a whole line with one ``write``
and an ``fsync`` is the only update, so a ``kill -9`` at any moment leaves at
worst a torn last line: the reader skips it (and the writer starts a fresh
line after it), and the account it spoke of is simply run again -- a backup is
itself incremental and crash-safe, so rerunning a ``running`` account only
finishes it.

The file is locked (flock) while a batch uses it: a second batch of the same
shard is refused (exit 6) instead of interleaving; other shards have files
of their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional

from archiver.durable import fsync, fsync_dir
from archiver.fsutil import hold_lock, translate_os_errors
from archiver.i18n import _

Record = dict[str, Any]

STATUSES = ("ok", "partial", "failed", "running", "pending")
DONE = "ok"


def read_records(path: Path) -> Iterator[Record]:
    """Every whole, sensible line of a state file, in order (a torn or foreign one is skipped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if (isinstance(rec, dict) and isinstance(rec.get("user"), str)
                and rec.get("status") in STATUSES):
            yield rec


def latest(path: Path) -> dict[str, Record]:
    """The last record of each user in one state file."""
    out: dict[str, Record] = {}
    for rec in read_records(path):
        out[rec["user"]] = rec
    return out


class StateFile:
    """The state file of one shard, open and locked for appending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, Record] = {}
        self._fh: Optional[IO[bytes]] = None

    def __enter__(self) -> StateFile:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        new = not self.path.exists()
        self._fh = hold_lock(self.path, _(
            "another batch is already working on this shard ({path}): wait for it to end "
            "(or stop it) and rerun").format(path=self.path))
        if new:
            fsync_dir(self.path.parent)
        self.records = latest(self.path)
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                torn = fh.read(1) != b"\n"
            if torn:  # a kill -9 in the middle of a line: start ours on a line of its own
                self._write(b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def get(self, user: str) -> Optional[Record]:
        return self.records.get(user)

    def append(self, record: Record) -> None:
        """Write one account's record durably (one write, then fsync)."""
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        self._write(line.encode("utf-8"))
        self.records[record["user"]] = record

    def _write(self, data: bytes) -> None:
        assert self._fh is not None, "StateFile used before open()"
        with translate_os_errors(_("writing {path}").format(path=self.path)):
            fd = self._fh.fileno()
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            fsync(fd)


def merged(state_dir: Path) -> dict[str, Record]:
    """Every shard's latest record per user (the most recent ``t`` wins across files:
    the same ROOT run once unsharded and later as shards keeps the newest word)."""
    out: dict[str, Record] = {}
    for path in sorted(state_dir.glob("*.jsonl")):
        for user, rec in latest(path).items():
            have = out.get(user)
            if have is None or str(rec.get("t", "")) >= str(have.get("t", "")):
                out[user] = rec
    return out
