"""Maildir store: one file per message in ``DEST/<folder path>/cur``.

File names are ``<uidvalidity>.<uid>.archiver:2,<info>`` -- deterministic from
(UIDVALIDITY, UID), so a rerun after a crash writes the same name again
instead of a duplicate -- with the standard info letters for the flags
(``D`` \\Draft, ``F`` \\Flagged, ``P`` $Forwarded, ``R`` \\Answered, ``S``
\\Seen, ``T`` \\Deleted).  Bytes are exactly what the server sent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from archiver.fsutil import (
    FileSystemSync,
    ensure_dir,
    fsync_created,
    fsync_dir,
    open_new,
    set_mtime,
    translate_os_errors,
    write_all,
)
from archiver.index import MessageEntry
from archiver.names import folder_path
from archiver.stores.base import CHUNK, Incoming, Rename, ShortMessage, Spool, Stored

INFO_SEP = ":2,"
_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
            "\\Seen": "S", "\\Deleted": "T"}
_FLAG_OF = {v: k for k, v in _LETTERS.items()}


def info_letters(flags: tuple[str, ...], keywords: tuple[str, ...] = ()) -> str:
    """Maildir info for IMAP flags (keywords other than $Forwarded live in the index)."""
    present = set(flags) | {k for k in keywords if k == "$Forwarded"}
    return "".join(sorted(_LETTERS[f] for f in present if f in _LETTERS))


def flags_from_info(info: str) -> tuple[str, ...]:
    """System flags back from info letters (for reindex and readers without the index)."""
    return tuple(sorted({_FLAG_OF[c] for c in info
                         if c in _FLAG_OF and _FLAG_OF[c] != "$Forwarded"}))


def base_name(uidvalidity: int, uid: int) -> str:
    return f"{uidvalidity}.{uid}.archiver"


def file_name(uidvalidity: int, uid: int, flags: tuple[str, ...],
              keywords: tuple[str, ...] = ()) -> str:
    return base_name(uidvalidity, uid) + INFO_SEP + info_letters(flags, keywords)


@dataclass
class _Staged:
    """Files written into tmp/ but not yet durable: open fds and the renames to do."""

    folder_dir: Path
    fds: list[int] = field(default_factory=list)
    moves: list[tuple[Path, Path, Optional[Path]]] = field(default_factory=list)


class MaildirStore:
    """Writes batches durably: write all, fsync all (a few threads), rename all, fsync dir."""

    format = "maildir"

    def __init__(self, root: Path, fsync_threads: int = 4, syncfs: bool = True) -> None:
        self.root = root
        self._syncfs = FileSystemSync(enabled=syncfs)
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(fsync_threads, thread_name_prefix="fsync") if fsync_threads > 1
            else None)
        self._existing: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _dir(self, folder_path: str) -> Path:
        return self.root.joinpath(*folder_path.split("/"))

    def path_for(self, components: tuple[str, ...]) -> str:
        return folder_path(components)

    def repair(self, folder_path: str, entries: Iterable[MessageEntry]) -> None:
        """Nothing to do: a file renamed into cur/ but not recorded is rewritten by name."""

    def prepare_folder(self, folder_path: str, mailbox: bool = True) -> None:
        """Create the folder's cur/new/tmp (0700), durably, and clear stale tmp files.

        ``mailbox=False`` (a \\Noselect folder, which holds only children) makes a
        plain directory.
        """
        d = self._dir(folder_path)
        with translate_os_errors(f"creating {d}"):
            created: list[Path] = []
            if not mailbox:
                fsync_created(ensure_dir(d, self.root))
                return
            for sub in ("cur", "new", "tmp"):
                created += ensure_dir(d / sub, self.root)
            fsync_created(created)
            for name in os.listdir(d / "tmp"):
                if name.endswith(".archiver") or ".archiver." in name:
                    os.unlink(d / "tmp" / name)

    def existing(self, folder_path: str) -> dict[str, str]:
        """base name -> current file name (in cur/ or new/), for crash repair and renames."""
        cached = self._existing.get(folder_path)
        if cached is not None:
            return cached
        found: dict[str, str] = {}
        d = self._dir(folder_path)
        for sub in ("cur", "new"):
            try:
                names = os.listdir(d / sub)
            except FileNotFoundError:
                continue
            for name in names:
                found[name.split(":", 1)[0]] = f"{sub}/{name}"
        self._existing[folder_path] = found
        return found

    def base_name(self, uidvalidity: int, uid: int) -> str:
        return base_name(uidvalidity, uid)

    def forget(self, folder_path: str) -> None:
        self._existing.pop(folder_path, None)

    def spool(self, folder_path: str, uidvalidity: int, uid: int) -> Spool:
        path = self._dir(folder_path) / "tmp" / base_name(uidvalidity, uid)
        with translate_os_errors(f"writing {path}"):
            return Spool.create(path)

    def stage_batch(self, folder_path: str, items: list[Incoming]
                    ) -> tuple[_Staged, list[Stored]]:
        """Write every file into tmp/ (page cache only); names and hashes are known now."""
        d = self._dir(folder_path)
        staged = _Staged(d)
        results: list[Stored] = []
        existing = self.existing(folder_path)
        with translate_os_errors(f"writing into {d}"):
            try:
                for item in items:
                    base = base_name(item.uidvalidity, item.uid)
                    tmp = d / "tmp" / base
                    if item.spool is not None:
                        fd = item.spool.fd
                        size, digest = item.spool.size, item.spool.digest.hexdigest()
                        item.spool.fd = -1
                    else:
                        assert item.data is not None
                        fd = open_new(tmp)
                        write_all(fd, item.data)
                        size, digest = len(item.data), hashlib.sha256(item.data).hexdigest()
                    staged.fds.append(fd)
                    set_mtime(tmp, item.internaldate)
                    name = file_name(item.uidvalidity, item.uid, item.flags, item.keywords)
                    old = existing.get(base)
                    stale = d / old if old and old != f"cur/{name}" else None
                    staged.moves.append((tmp, d / "cur" / name, stale))
                    existing[base] = f"cur/{name}"
                    results.append(Stored(f"{folder_path}/cur/{name}", size, digest))
            except BaseException:
                for fd in staged.fds:
                    os.close(fd)
                raise
        return staged, results

    def commit_staged(self, staged: _Staged) -> None:
        """fsync every file (a few threads), rename into cur/, fsync the directory."""
        d = staged.folder_dir
        with translate_os_errors(f"writing into {d}"):
            bulk = self._syncfs.available and len(staged.fds) > 8
            try:
                if bulk:
                    self._syncfs.sync(staged.fds[0])
                elif self._pool is not None and len(staged.fds) > 1:
                    list(self._pool.map(os.fsync, staged.fds))
                else:
                    for fd in staged.fds:
                        os.fsync(fd)
            finally:
                for fd in staged.fds:
                    os.close(fd)
            for tmp, final, stale in staged.moves:
                os.replace(tmp, final)
                if stale is not None and stale.exists():
                    os.unlink(stale)  # an earlier, unrecorded copy with other flags
            if staged.moves:
                fsync_dir(d / "cur")  # also commits the journal: the renames are durable
            if any(stale for _, _, stale in staged.moves):
                fsync_dir(d / "new")

    def rename(self, folder_path: str, moves: list[Rename]) -> list[str]:
        """Give files new names (new flags, or a new UIDVALIDITY); returns new relpaths.

        A file is found by its base name, so one renamed just before a crash
        (name on disk newer than the index) is still found.  "" = not found.
        """
        d = self._dir(folder_path)
        existing = self.existing(folder_path)
        out: list[str] = []
        with translate_os_errors(f"renaming in {d}"):
            for mv in moves:
                current = existing.get(mv.old_base)
                name = file_name(mv.uidvalidity, mv.uid, mv.flags, mv.keywords)
                if current is None:
                    out.append("")
                    continue
                if current != f"cur/{name}":
                    os.replace(d / current, d / "cur" / name)
                    del existing[mv.old_base]
                    existing[base_name(mv.uidvalidity, mv.uid)] = f"cur/{name}"
                out.append(f"{folder_path}/cur/{name}")
            fsync_dir(d / "cur")
        return out

    def remove(self, folder_path: str, relpaths: list[str]) -> None:
        """Delete files the index no longer points to (a POP3 copy replaced by IMAP's)."""
        existing = self.existing(folder_path)
        with translate_os_errors(f"removing in {self._dir(folder_path)}"):
            for rel in relpaths:
                target = self.root.joinpath(*rel.split("/"))
                try:
                    os.unlink(target)
                except FileNotFoundError:
                    pass
                existing.pop(target.name.split(":", 1)[0], None)
            fsync_dir(self._dir(folder_path) / "cur")

    def read_message(self, entry: MessageEntry) -> bytes:
        return self.read(entry.path)

    def check_message(self, entry: MessageEntry) -> None:
        have = os.stat(self._path(entry.path)).st_size
        if have != entry.size:
            raise ShortMessage(f"{entry.path} holds {have} bytes, the index says {entry.size}")

    def message_chunks(self, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        fd = os.open(os.path.join(self.root, *entry.path.split("/")),
                     os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            left = os.fstat(fd).st_size
            while True:
                # asked for what is there: a 1 MiB buffer for a 5 KB file costs a
                # large allocation (an mmap) per message
                piece = os.read(fd, min(chunk, left) if left > 0 else chunk)
                if not piece:
                    return
                left -= len(piece)
                yield piece
        finally:
            os.close(fd)

    def _path(self, relpath: str) -> Path:
        return self.root.joinpath(*relpath.split("/"))

    def read(self, relpath: str) -> bytes:
        return self._path(relpath).read_bytes()
