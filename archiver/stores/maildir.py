"""Maildir store: one file per message in ``DEST/<folder path>/cur``.

File names are ``<uidvalidity>.<uid>.archiver:2,<info>`` -- deterministic from
(UIDVALIDITY, UID), so a rerun after a crash writes the same name again
instead of a duplicate -- with the standard info letters for the flags
(``D`` \\Draft, ``F`` \\Flagged, ``P`` $Forwarded, ``R`` \\Answered, ``S``
\\Seen, ``T`` \\Deleted), then Dovecot's keyword letters ``a``..``z`` named
by the folder's ``dovecot-keywords`` file (:mod:`archiver.stores.maildir_keywords`).
Bytes are exactly what the server sent.

The info separator is the archive's (:mod:`archiver.naming`): ``:2,``, or
``;2,`` where the file system refuses ``:`` (Windows, exFAT) or the archive
was made with ``--portable-names``.  Readers accept both: :func:`base_of`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from archiver import platform
from archiver.durable import PerFileSync, SyncStrategy, fsync_dir, fsync_parents, replace
from archiver.fsutil import ensure_dir, open_new, set_mtime, translate_os_errors, write_all
from archiver.i18n import _
from archiver.names import folder_path
from archiver.naming import COLON, DELIMITERS, Naming, read_naming
from archiver.state import MessageEntry
from archiver.stores.base import (
    CHUNK,
    SIDECAR,
    Incoming,
    Rename,
    ShortMessage,
    Spool,
    Stored,
    open_spool,
)
from archiver.stores.maildir_keywords import FolderLetters, sort_info

INFO_SEP = ":2,"  # the Maildir standard's; an archive may use ";2," (archiver.naming)
_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
            "\\Seen": "S", "\\Deleted": "T"}
_FLAG_OF = {v: k for k, v in _LETTERS.items()}


def info_letters(flags: tuple[str, ...], keywords: tuple[str, ...] = (),
                 letters: Optional[FolderLetters] = None) -> str:
    """Maildir info for IMAP flags, and the keyword letters ``letters`` gives (sorted).

    ``$Forwarded`` is ``P`` (mutt's) and also its keyword letter (Dovecot's).
    """
    present = set(flags) | {k for k in keywords if k == "$Forwarded"}
    info = "".join(_LETTERS[f] for f in present if f in _LETTERS)
    if letters is not None:
        info += letters.letters(keywords)
    return sort_info(info)


def flags_from_info(info: str) -> tuple[str, ...]:
    """System flags back from info letters (for reindex and readers without the index).

    Keyword letters (``a``..``z``) are not flags: :func:`maildir_keywords.keywords_of`.
    """
    return tuple(sorted({_FLAG_OF[c] for c in info
                         if c in _FLAG_OF and _FLAG_OF[c] != "$Forwarded"}))


PARTIAL = ".partial"  # a resumable spool in tmp/: ``<uidvalidity>.<uid>.partial``


def partial_key(name: str) -> Optional[tuple[int, int]]:
    """(UIDVALIDITY, UID) of a resumable spool's file name, else None."""
    if not name.endswith(PARTIAL):
        return None
    parts = name[: -len(PARTIAL)].split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def base_name(uidvalidity: int, uid: int) -> str:
    return f"{uidvalidity}.{uid}.archiver"


def file_name(uidvalidity: int, uid: int, flags: tuple[str, ...],
              keywords: tuple[str, ...] = (), delimiter: str = COLON,
              letters: Optional[FolderLetters] = None) -> str:
    """The message's file name with ``delimiter`` (``:`` or ``;``) before ``2,<info>``."""
    return base_name(uidvalidity, uid) + delimiter + "2," + info_letters(flags, keywords,
                                                                         letters)


def base_of(name: str) -> str:
    """A Maildir file name's base (the part before the info), whichever separator it has.

    Our base names (``<uidvalidity>.<uid>.archiver``, a POP3 hash) hold neither
    ``:`` nor ``;``, so the first of the two ends the base.
    """
    cut = len(name)
    for delimiter in DELIMITERS:
        at = name.find(delimiter)
        if 0 <= at < cut:
            cut = at
    return name[:cut]


def info_of(name: str) -> str | None:
    """The info letters of a file name (``S`` of ``…:2,S`` or ``…;2,S``), None if none."""
    rest = name[len(base_of(name)):]
    return rest[3:] if rest[1:3] == "2," else None


@dataclass
class _Staged:
    """Files written into tmp/ but not yet durable: open fds and the renames to do."""

    folder_dir: Path
    fds: list[int] = field(default_factory=list)
    moves: list[tuple[Path, Path, Optional[Path]]] = field(default_factory=list)
    spools: list[Spool] = field(default_factory=list)  # their sidecars go once renamed


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MaildirStore:
    """Writes batches durably: write all, fsync all (a few threads), rename all, fsync dir."""

    format = "maildir"

    def __init__(self, root: Path, sync: Optional[SyncStrategy] = None,
                 naming: Optional[Naming] = None) -> None:
        self.root = root
        self.sync: SyncStrategy = sync if sync is not None else PerFileSync()
        # the separator new names get; read from archive.json unless given
        self.naming = naming if naming is not None else read_naming(root)
        self._existing: dict[str, dict[str, str]] = {}
        self._letters: dict[str, FolderLetters] = {}
        self._letters_lock = threading.Lock()
        # keywords past the 26th letter, once per folder, for the run's notes (jobs drains it)
        self.notes: list[str] = []

    def letters(self, folder_path: str, keywords: Iterable[tuple[str, ...]]
                ) -> Optional[FolderLetters]:
        """The folder's keyword letters, extended by ``keywords`` and saved before use.

        ``dovecot-keywords`` is written (durably, atomically) here, before any
        file name with a new letter exists: a crash leaves at most a letter
        no file uses yet, never a letter nobody can read.  None in a ``;2,``
        archive: no Maildir reader sees letters there, and 26 more characters
        would break the Windows path budget (archiver.names.PATH_BUDGET).
        """
        if self.naming.delimiter != COLON:
            return None
        with self._letters_lock:  # the stage thread writes while the sync thread renames
            fl = self._letters.get(folder_path)
            if fl is None:
                fl = self._letters[folder_path] = FolderLetters.load(
                    self._dir(folder_path), self.existing(folder_path).values())
            for kws in keywords:
                fl.assign(kws)
            fl.save()
            extra = fl.take_warning()
        if extra:
            self.notes.append(_("{folder}: more than 26 keywords; {keywords} stay in the index "
                                "only (no Maildir letter for Dovecot)").format(
                                folder=folder_path, keywords=", ".join(extra)))
        return fl

    def close(self) -> None:
        self.sync.close()

    def _dir(self, folder_path: str) -> Path:
        return self.root.joinpath(*folder_path.split("/"))

    def path_for(self, components: tuple[str, ...]) -> str:
        return folder_path(components)

    def repair(self, folder_path: str, entries: Iterable[MessageEntry]) -> None:
        """Put back a file that a rename cut short by a crash left under a name no record has.

        Files are renamed (new flags, a new UIDVALIDITY, a renumbered folder:
        archiver.renumber) before the index frame that records the new names, so
        a crash in between leaves a recorded message whose file is missing and a
        file no record names.  Such a file is moved back to the recorded name
        when its SHA-256 is the recorded one.  Costs a set comparison unless
        something is missing; a file written but not recorded keeps its name
        (the rerun writes it again).
        """
        existing = self.existing(folder_path)
        named: set[str] = set()
        missing: list[MessageEntry] = []
        for e in entries:
            base = base_of(e.path.rsplit("/", 1)[-1])
            if not base:
                continue
            named.add(base)
            if base not in existing and e.path.startswith(folder_path + "/"):
                missing.append(e)
        orphans = [b for b in existing if b not in named]
        if not missing or not orphans:
            return
        d = self._dir(folder_path)
        by_hash: dict[str, list[str]] = {}
        with translate_os_errors(_("repairing {path}").format(path=d)):
            for base in orphans:
                rel = existing[base]
                by_hash.setdefault(_digest(d / rel), []).append(base)
            back = 0
            for e in missing:
                found = by_hash.get(e.sha256)
                if not found:
                    continue
                base = found.pop()
                replace(d / existing.pop(base), self.root.joinpath(*e.path.split("/")))
                existing[base_of(e.path.rsplit("/", 1)[-1])] = \
                    e.path[len(folder_path) + 1:]
                back += 1
            if back:
                fsync_dir(d / "cur")
                fsync_dir(d / "new")

    def prepare_folder(self, folder_path: str, mailbox: bool = True) -> None:
        """Create the folder's cur/new/tmp (0700), durably, and clear stale tmp files.

        ``mailbox=False`` (a \\Noselect folder, which holds only children) makes a
        plain directory.
        """
        d = self._dir(folder_path)
        with translate_os_errors(_("creating {path}").format(path=d)):
            created: list[Path] = []
            if not mailbox:
                fsync_parents(ensure_dir(d, self.root))
                return
            for sub in ("cur", "new", "tmp"):
                created += ensure_dir(d / sub, self.root)
            fsync_parents(created)
            names = set(os.listdir(d / "tmp"))
            for name in names:
                if (name.endswith(".archiver") or ".archiver." in name
                        or name.endswith(PARTIAL + SIDECAR + ".tmp")
                        or (name.endswith(PARTIAL + SIDECAR)
                            and name[: -len(SIDECAR)] not in names)):
                    os.unlink(d / "tmp" / name)  # a resumable spool stays (see spool)

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
                found[base_of(name)] = f"{sub}/{name}"
        self._existing[folder_path] = found
        return found

    def base_name(self, uidvalidity: int, uid: int) -> str:
        return base_name(uidvalidity, uid)

    def forget(self, folder_path: str) -> None:
        self._existing.pop(folder_path, None)

    def spool(self, folder_path: str, uidvalidity: int, uid: int,
              ident: Optional[dict[str, Any]] = None) -> Spool:
        """``tmp/<uidvalidity>.<uid>.partial`` (+ ``.json`` sidecar when resumable): a name
        :meth:`prepare_folder` leaves alone, so a rerun after a kill finds the bytes."""
        name = f"{uidvalidity}.{uid}{PARTIAL}" if ident is not None else \
            base_name(uidvalidity, uid)
        path = self._dir(folder_path) / "tmp" / name
        with translate_os_errors(_("writing {path}").format(path=path)):
            return open_spool(path, ident)

    def prune_partials(self, folder_path: str, keep: set[tuple[int, int]]) -> None:
        tmp = self._dir(folder_path) / "tmp"
        with translate_os_errors(_("cleaning {path}").format(path=tmp)):
            try:
                names = os.listdir(tmp)
            except FileNotFoundError:
                return
            for name in names:
                key = partial_key(name)
                if key is not None and key not in keep:
                    for gone in (name, name + SIDECAR):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(tmp / gone)

    def stage_batch(self, folder_path: str, items: list[Incoming]
                    ) -> tuple[_Staged, list[Stored]]:
        """Write every file into tmp/ (page cache only); names and hashes are known now."""
        d = self._dir(folder_path)
        staged = _Staged(d)
        results: list[Stored] = []
        existing = self.existing(folder_path)
        with translate_os_errors(_("writing into {path}").format(path=d)):
            letters = self.letters(folder_path, (item.keywords for item in items))
            try:
                for item in items:
                    base = base_name(item.uidvalidity, item.uid)
                    tmp = d / "tmp" / base
                    if item.spool is not None:
                        tmp = item.spool.path
                        fd = item.spool.fd
                        size, digest = item.spool.size, item.spool.digest.hexdigest()
                        item.spool.fd = -1
                        staged.spools.append(item.spool)
                    else:
                        assert item.data is not None
                        fd = open_new(tmp)
                        write_all(fd, item.data)
                        size, digest = len(item.data), hashlib.sha256(item.data).hexdigest()
                    staged.fds.append(fd)
                    set_mtime(tmp, item.internaldate)
                    name = file_name(item.uidvalidity, item.uid, item.flags, item.keywords,
                                     self.naming.delimiter, letters)
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
        """Sync every file (the DEST's strategy), rename into cur/, fsync the directory."""
        d = staged.folder_dir
        with translate_os_errors(_("writing into {path}").format(path=d)):
            try:
                self.sync.sync(staged.fds)
            finally:
                self.discard_staged(staged)
            for tmp, final, stale in staged.moves:
                replace(tmp, final)
                if stale is not None and stale.exists():
                    os.unlink(stale)  # an earlier, unrecorded copy with other flags
            if staged.moves:
                fsync_dir(d / "cur")  # also commits the journal: the renames are durable
            for spool in staged.spools:
                spool.consumed()
            if any(stale for _, _, stale in staged.moves):
                fsync_dir(d / "new")

    def discard_staged(self, staged: _Staged) -> None:
        """Close a staged batch's files (after its sync, or when it will never be committed).

        Files left in tmp/ by a discarded batch are removed by the next
        :meth:`prepare_folder`.
        """
        fds, staged.fds = staged.fds, []
        for fd in fds:
            os.close(fd)

    def rename(self, folder_path: str, moves: list[Rename]) -> list[str]:
        """Give files new names (new flags, or a new UIDVALIDITY); returns new relpaths.

        A file is found by its base name, so one renamed just before a crash
        (name on disk newer than the index) is still found -- under its new
        base name when the crash came after a rename to a new UIDVALIDITY and
        before the frame recording it.  "" = not found.
        """
        d = self._dir(folder_path)
        existing = self.existing(folder_path)
        out: list[str] = []
        with translate_os_errors(_("renaming in {path}").format(path=d)):
            letters = self.letters(folder_path, (mv.keywords for mv in moves))
            for mv in moves:
                new_base = base_name(mv.uidvalidity, mv.uid)
                current = existing.get(mv.old_base) or existing.get(new_base)
                name = file_name(mv.uidvalidity, mv.uid, mv.flags, mv.keywords,
                                 self.naming.delimiter, letters)
                if current is None:
                    out.append("")
                    continue
                target = base_name(mv.uidvalidity, mv.uid)
                taken = existing.get(target)
                if taken is not None and target != mv.old_base:
                    # Callers move recorded files out of the way first (archiver.renumber
                    # parks them): a file here is a crash's unrecorded copy.  Dropped only
                    # when it holds the same bytes; never one message renamed onto another.
                    if _digest(d / taken) != _digest(d / current):
                        raise FileExistsError(errno.EEXIST, f"{d / current} would replace",
                                              d / taken)
                    os.unlink(d / taken)
                    del existing[target]
                if current != f"cur/{name}":
                    replace(d / current, d / "cur" / name)
                    existing.pop(mv.old_base, None)
                    existing[new_base] = f"cur/{name}"
                out.append(f"{folder_path}/cur/{name}")
            fsync_dir(d / "cur")
        return out

    def remove(self, folder_path: str, relpaths: list[str]) -> None:
        """Delete files the index no longer points to (a POP3 copy replaced by IMAP's)."""
        existing = self.existing(folder_path)
        with translate_os_errors(_("removing in {path}").format(path=self._dir(folder_path))):
            for rel in relpaths:
                target = self.root.joinpath(*rel.split("/"))
                try:
                    os.unlink(target)
                except FileNotFoundError:
                    pass
                existing.pop(base_of(target.name), None)
            fsync_dir(self._dir(folder_path) / "cur")

    def read_message(self, entry: MessageEntry) -> bytes:
        return self.locate(entry).read_bytes()

    def read_head(self, entry: MessageEntry, limit: int) -> bytes:
        with open(self.locate(entry), "rb") as fh:
            return fh.read(limit)

    def check_message(self, entry: MessageEntry) -> None:
        have = os.stat(self.locate(entry)).st_size
        if have != entry.size:
            raise ShortMessage(f"{entry.path} holds {have} bytes, the index says {entry.size}")

    def message_chunks(self, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        fd = os.open(self.locate(entry), os.O_RDONLY | platform.O_BINARY)
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

    def locate(self, entry: MessageEntry) -> Path:
        """The message's file: the recorded path, else its base name in cur/ or new/.

        A flag change renames the file (directory fsynced) before its ``flags``
        record is written; after a crash between the two the file carries a
        newer name than the index says.  The base name -- (UIDVALIDITY, UID) --
        is the message's identity (docs/FORMAT.md, "Message files").
        """
        path = self._path(entry.path)
        if path.exists():
            return path
        parts = entry.path.split("/")
        if len(parts) >= 3 and parts[-2] in ("cur", "new"):
            folder_dir = self.root.joinpath(*parts[:-2])
            base = base_of(parts[-1])
            for sub in ("cur", "new"):
                try:
                    names = os.listdir(folder_dir / sub)
                except FileNotFoundError:
                    continue
                for name in names:
                    if base_of(name) == base:
                        return folder_dir / sub / name
        return path  # not there: the caller's open/stat says so

    def _path(self, relpath: str) -> Path:
        return self.root.joinpath(*relpath.split("/"))

    def read(self, relpath: str) -> bytes:
        return self._path(relpath).read_bytes()
