"""An archive directory (DEST): its identity, lock, index and per-folder counters.

``DEST/.archiver/`` holds:

* ``archive.json`` -- format version, store format, the account (host,
  user) the archive belongs to (a second account is refused), and the file
  naming probed when DEST was created (:mod:`archiver.naming`).
* ``index.jsonl.zst`` -- the append-only index (see :mod:`archiver.index`).
* ``folders.json`` -- a cache of each folder's STATUS counters at the end of
  its last complete pass, so an unchanged folder is skipped without listing
  its messages.  Derived data: deleting it only makes the next run slower.
* ``lock`` -- held (flock) by the running backup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable, Optional

from archiver.account import same_account
from archiver.durable import atomic_write, fsync_dir
from archiver.errors import OTHER_ACCOUNT, DestinationError, UsageError
from archiver.fsutil import DIR_MODE, hold_lock, translate_os_errors
from archiver.i18n import _, ngettext
from archiver.index import (
    FORMAT_VERSION,
    INDEX_NAME,
    IndexWriter,
    cut_torn_tail,
    timestamp,
    valid_length,
)
from archiver.naming import PORTABLE, Naming, probe
from archiver.state import IndexState

META_DIR = ".archiver"
DEFAULT_FORMAT = "maildir"  # of a new archive when --format is not given


class Archive:
    """One DEST directory; use as a context manager to hold its lock."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.meta_dir = dest / META_DIR
        self.index_path = self.meta_dir / INDEX_NAME
        self.folders_path = self.meta_dir / "folders.json"
        self.meta_path = self.meta_dir / "archive.json"
        self._lock_fh: Optional[IO[bytes]] = None
        self._state: Optional[IndexState] = None
        self._writer: Optional[IndexWriter] = None
        self.torn_tail = False
        self.repaired_tail = False  # a torn index tail was cut when opening
        self.meta: dict[str, Any] = {}
        # what create() makes: format, source identity, --portable-names
        self._new: tuple[str, dict[str, str], bool] = (DEFAULT_FORMAT, {}, False)

    # ------------------------------------------------------------ opening

    @classmethod
    def create_or_open(cls, dest: Path, fmt: Optional[str], source: dict[str, str],
                       portable: bool = False) -> Archive:
        """Open DEST for writing (creating it), lock it, and check it is this account's.

        ``fmt`` None means "whatever the archive is" (``archive.json`` knows: a
        rerun needs no ``--format``), and maildir for a new DEST; a format
        that contradicts an existing archive is refused.  A new DEST's file
        naming is probed once and recorded (``portable``: the ``;`` separator
        whatever the file system takes); an existing one keeps its own.
        """
        arc = cls.prepare(dest, fmt, source, portable=portable)
        try:
            arc.create()
        except BaseException:
            arc.close()
            raise
        return arc

    @classmethod
    def prepare(cls, dest: Path, fmt: Optional[str], source: dict[str, str],
                lock: bool = True, portable: bool = False) -> Archive:
        """Check that DEST can take this account's archive, creating and writing nothing.

        DEST must be a writable directory (or not exist yet, under a writable
        parent), empty or this account's archive of this format; an existing
        archive is locked here (``lock``), so a second run is refused before
        anyone is asked for a password.  :meth:`create` then makes what is missing.
        """
        arc = cls(dest)
        arc._new = (fmt or DEFAULT_FORMAT, source, portable)
        with translate_os_errors(_("checking {path}").format(path=dest)):
            if dest.exists() and not dest.is_dir():
                from archiver.pack.reader import is_pack, packed_error

                if is_pack(dest):
                    raise packed_error(dest)
                raise DestinationError(_("{dest} is a file, not a directory: choose a "
                                         "directory for the archive").format(dest=dest))
            fresh = not arc.meta_path.exists()
            if fresh and dest.is_dir() and any(p.name != META_DIR for p in dest.iterdir()):
                raise DestinationError(
                    _("{dest} already holds other files and is not an archive: choose an "
                      "empty or new directory").format(dest=dest))
            where = dest
            while not where.exists() and where != where.parent:
                where = where.parent
            if not os.access(where, os.W_OK | os.X_OK):
                raise DestinationError(_("cannot write in {where}: choose a writable "
                                         "destination or fix its permissions").format(
                    where=where))
            if lock and arc.meta_dir.is_dir():
                arc.acquire_lock()
            if not fresh:
                try:
                    arc.meta = arc._read_meta()
                    arc._check_identity(fmt, source)
                    arc._check_naming(portable)
                    if arc._lock_fh is not None:
                        arc._correct_identity(source)
                except BaseException:
                    arc.close()
                    raise
                arc._new = (arc.format, source, portable)
        return arc

    def create(self) -> None:
        """Make DEST and its metadata as :meth:`prepare` checked them, and lock it."""
        dest = self.dest
        fmt, source, portable = self._new
        with translate_os_errors(_("preparing {path}").format(path=dest)):
            if not dest.exists():
                dest.mkdir(mode=DIR_MODE, parents=True)
                fsync_dir(dest.parent)
            if not self.meta_dir.exists():
                self.meta_dir.mkdir(mode=DIR_MODE)
                fsync_dir(dest)
            if self._lock_fh is None:
                self.acquire_lock()
            if not self.meta_path.exists():
                self.meta = {
                    "v": FORMAT_VERSION, "format": fmt, "source": source,
                    "created": timestamp(),
                    "naming": probe(self.meta_dir, portable).to_json(),
                }
                atomic_write(self.meta_path, json.dumps(self.meta, indent=1,
                                                        ensure_ascii=False).encode())
            else:
                if not self.meta:  # written meanwhile (prepare found none)
                    self.meta = self._read_meta()
                    self._check_identity(fmt, source)
                    self._check_naming(portable)
                self._correct_identity(source)
                self.repaired_tail = cut_torn_tail(self.index_path)

    @classmethod
    def open_existing(cls, dest: Path) -> Archive:
        """Open an archive directory for reading (verify, ls); no lock.

        Readers that also take a pack use :func:`archiver.reading.open_archive`.
        """
        arc = cls(dest)
        if not arc.meta_path.exists():
            raise DestinationError(_("{dest} is not an archive (no {META_DIR}/archive.json): "
                                     "give the directory a backup wrote to").format(
                                     dest=dest, META_DIR=META_DIR))
        arc.meta = arc._read_meta()
        return arc

    def has_index(self) -> bool:
        return self.index_path.exists()

    def require_writable(self) -> None:
        """Raise unless this archive can be written (a pack cannot: unpack it first)."""

    def _read_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DestinationError(_("{meta_path} is unreadable ({exc}); restore it from a "
                                     "copy or start a new archive").format(
                                     meta_path=self.meta_path, exc=exc)) from None
        if not isinstance(meta, dict):
            raise DestinationError(_("{meta_path} is damaged; start a new archive").format(
                                     meta_path=self.meta_path))
        if int(meta.get("v", 0)) > FORMAT_VERSION:
            raise DestinationError(_("{dest} was written by a newer archiver (format "
                                     "{meta_v}): upgrade archiver").format(
                                     dest=self.dest, meta_v=meta.get('v')))
        return meta

    def _check_identity(self, fmt: Optional[str], source: dict[str, str]) -> None:
        have = self.meta.get("source") or {}
        if not same_account(have, source):
            raise DestinationError(
                _("{dest} is the archive of {have_user}@{have_host}, not "
                  "{source_user}@{source_host}: use one directory per account").format(
                  dest=self.dest, have_user=have.get('user'), have_host=have.get('host'),
                  source_user=source.get('user'), source_host=source.get('host')),
                OTHER_ACCOUNT)
        if fmt is not None and self.format != fmt:
            raise DestinationError(
                _("{dest} is an archive in {have} format, not {want}: leave out --format (a rerun "
                  "reads it from the archive) or choose another directory").format(
                    dest=self.dest, have=self.format, want=fmt))

    def _correct_identity(self, source: dict[str, str]) -> None:
        """Record the mailbox user where an older archiver wrote the admin login.

        Before ``--master-user``, a backup through ``--user 'alice*admin'``
        recorded "alice*admin"; :meth:`_check_identity` already takes it as
        alice's, and from now on archive.json says so (atomically: a crash
        leaves the old or the new file).  Called with the lock held.
        """
        have = self.meta.get("source") or {}
        user = source.get("user")
        if not user or not isinstance(have, dict) or have.get("user") == user:
            return
        self.meta = dict(self.meta, source=dict(have, user=user))
        with translate_os_errors(_("updating {path}").format(path=self.meta_path)):
            atomic_write(self.meta_path, json.dumps(self.meta, indent=1,
                                                    ensure_ascii=False).encode())

    def _check_naming(self, portable: bool) -> None:
        if portable and self.naming.delimiter != PORTABLE:
            raise UsageError(_(
                "{dest} already names its files with ':' (an archive keeps one naming); "
                "--portable-names only applies to a new DEST: choose a new directory, or "
                "copy this one with 'archiver export {dest} OUT --to maildir "
                "--portable-names'").format(dest=self.dest))

    @property
    def naming(self) -> Naming:
        """How message files are named (``naming`` in archive.json; ``:`` when absent)."""
        return Naming.from_meta(self.meta)

    def acquire_lock(self) -> None:
        """Hold DEST's lock until :meth:`close` (a second writer is refused, exit 6)."""
        self._lock_fh = hold_lock(self.meta_dir / "lock",
                                  _("another archiver is already working on {dest}: wait for "
                                    "it to finish (or stop it) and rerun").format(dest=self.dest))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ index

    @property
    def format(self) -> str:
        return str(self.meta.get("format", self._new[0]))

    def state(self) -> IndexState:
        """The index folded into per-folder state (read once, on first use)."""
        if self._state is None:
            self.read_state()
        assert self._state is not None
        return self._state

    def read_state(self, also: Optional[Callable[[dict[str, Any]], None]] = None
                   ) -> IndexState:
        """Read and fold the index now; ``also`` sees each record the fold accepted.

        The one read path of every command (see :meth:`IndexState.read`).
        """
        state, res = IndexState.read(self.index_path, also=also)
        self.torn_tail = res.torn
        self._good_length = res.good_length
        self._state = state
        return state

    def writer(self) -> IndexWriter:
        """The index writer; refuses to open when a frame *before* the end is damaged.

        The writer cuts the file to the last readable frame.  That is right for a
        torn tail, but a damaged frame in the middle is followed by whole, good
        frames, and cutting there would silently drop every later record.
        """
        if self._writer is None:
            self.state()
            whole, _torn = valid_length(self.index_path)
            if whole > self._good_length:
                raise DestinationError(
                    _("{index_path} is damaged at byte {good_length} (not just an interrupted "
                      "end); nothing was changed: run 'archiver verify', then 'archiver "
                      "reindex --force' to rebuild it from the message files").format(
                      index_path=self.index_path, good_length=self._good_length))
            with translate_os_errors(_("opening {path}").format(path=self.index_path)):
                self._writer = IndexWriter(self.index_path, self._good_length)
        return self._writer

    def record(self, records: list[dict[str, Any]]) -> None:
        """Append records as one durable frame, then fold them into the state."""
        if not records:
            return
        with translate_os_errors(_("writing {path}").format(path=self.index_path)):
            writer = self.writer()
            writer.append(records)
        self._good_length = writer.end
        state = self.state()
        for rec in records:
            state.fold(rec)

    @property
    def index_bytes(self) -> int:
        """Bytes of whole frames in the index, this run's appends included."""
        self.state()
        return self._good_length

    def skipped_note(self) -> str | None:
        """The warning every command prints when the index held nonsense records."""
        # counted only if this run read the index: a no-op backup, which skips every
        # folder without reading it, says nothing (and stays fast)
        n = self._state.skipped if self._state is not None else 0
        if not n:
            return None
        return ngettext("{n} unreadable index record skipped; run 'archiver reindex {dest} "
                        "--force' to rebuild the index from the message files",
                        "{n} unreadable index records skipped; run 'archiver reindex {dest} "
                        "--force' to rebuild the index from the message files", n).format(
                            n=n, dest=self.dest)

    # ------------------------------------------------------------ folder counters

    def folder_counters(self) -> dict[str, Any]:
        try:
            data = json.loads(self.folders_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_folder_counters(self, counters: dict[str, Any]) -> None:
        with translate_os_errors(_("writing {path}").format(path=self.folders_path)):
            atomic_write(self.folders_path,
                         json.dumps(counters, ensure_ascii=False, sort_keys=True).encode())
