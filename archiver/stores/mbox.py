"""mbox store: one mboxrd file per folder, laid out like Thunderbird's Local Folders.

Folder ``A`` is the file ``DEST/A``; its children live in ``DEST/A.sbd/``.
Each message is appended as a ``From `` line (envelope sender from
Return-Path, else ``MAILER-DAEMON``, and the INTERNALDATE -- never the
current time), the message bytes with mboxrd quoting (a line matching
``>*From `` gets one more ``>``, reversibly), and a blank line.  The index
records where the quoted bytes start (``offset``) and how long they are
(``length``), so one message is read without scanning, and flags live in the
index only: the message bytes stay exact.

Append-only and durable like Maildir: a batch is appended and fsynced before
its index frame is written; bytes past the last recorded message (a crash
between the two) are cut off when the folder is next opened (:meth:`repair`).
Written over bytes by hand: the stdlib ``mailbox`` module writes mboxo,
rescans whole files and invents ``From `` dates.

Every folder that is only a parent -- listed ``\\Noselect``, or not listed at
all but implied by a child ``A/B`` -- gets an empty file beside its ``.sbd``
directory (:func:`parent_files`): Thunderbird and other readers of this layout
show a ``.sbd`` directory only under a file of the same name, so without it a
whole subtree of mail stayed invisible.  Such a file holds no messages and no
index record names it unless the folder itself is recorded (\\Noselect);
``verify`` passes over empty mbox files and ``reindex`` over an empty one
beside its ``.sbd`` that the snapshot does not name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Optional

from archiver import platform
from archiver.durable import (
    PerFileSync,
    SyncStrategy,
    create_empty,
    create_if_missing,
    fsync_parents,
    truncate_durably,
)
from archiver.fsutil import ensure_dir, translate_os_errors, write_all
from archiver.i18n import _
from archiver.names import encode_component
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
from archiver.stores.mboxrd import StreamQuoter
from archiver.stores.mboxrd import quote as quote  # re-exported: the mbox format's quoting
from archiver.stores.mboxrd import unquote as unquote

log = logging.getLogger("archiver.stores.mbox")

_RETURN_PATH = re.compile(rb"(?im)^return-path:[ \t]*<?([^>\r\n]*)>?")
_APPEND = os.O_WRONLY | os.O_APPEND | platform.O_NOFOLLOW | platform.O_BINARY


def from_line(message_head: bytes, when: Optional[datetime]) -> bytes:
    """``From sender asctime`` from Return-Path and INTERNALDATE (UTC)."""
    match = _RETURN_PATH.search(message_head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    sender = match.group(1).strip() if match else b""
    if not sender or b" " in sender:
        sender = b"MAILER-DAEMON"
    try:
        stamp = when.timestamp() if when is not None else 0.0
        text = time.asctime(time.gmtime(stamp))
    except (OverflowError, OSError, ValueError):
        text = time.asctime(time.gmtime(0))
    return b"From " + sender + b" " + text.encode("ascii") + b"\n"


def tail_for(quoted: bytes, has_cr: bool | None = None) -> bytes:
    """What follows a message: an LF line end if it lacks one, then the blank separator line.

    A message with CRs in it gets one LF more: GNU mailutils (checked with 3.15)
    misses the next ``From `` line after such a message unless the separator
    is more than one empty line.  Readers that use our offsets are unaffected.
    """
    if has_cr is None:
        has_cr = b"\r" in quoted
    ends_lf = quoted.endswith(b"\n")
    return b"\n" * ((1 if ends_lf else 2) + (1 if has_cr else 0))


def component_name(component: str) -> str:
    """A folder component as a file name; ``x.sbd``/``x.msf`` would clash with Thunderbird's."""
    name = encode_component(component)
    if name.lower().endswith((".sbd", ".msf")):
        name = name[:-4] + "%2E" + name[-3:]
    return name


# Thunderbird's Local Folders call their inbox file ``Inbox`` and, on a
# case-sensitive disk, pass over a file named ``INBOX`` (they make an empty
# ``Inbox`` of their own): the server's INBOX is kept as ``Inbox`` so that the
# archive opened directly shows it.  Archives made before keep their ``INBOX``
# (a folder's path is fixed once recorded).
INBOX_FILE = "Inbox"


def mbox_path(components: Iterable[str]) -> str:
    """Relative path of a folder's mbox file: ``A.sbd/B`` for ``A/B``; the
    top-level INBOX is ``Inbox`` (:data:`INBOX_FILE`)."""
    comps = list(components)
    names = [INBOX_FILE if i == 0 and c == "INBOX" else component_name(c)
             for i, c in enumerate(comps)]
    return "/".join([n + ".sbd" for n in names[:-1]] + names[-1:])


def parent_files(folder_path: str, mailbox: bool = True) -> list[str]:
    """The mbox files a folder's parents need: ``A`` and ``A.sbd/B`` for ``A.sbd/B.sbd/C``.

    With ``mailbox=False`` (a \\Noselect folder) the folder's own file too: it may
    hold children now or later, and an empty file costs nothing.
    """
    parts = folder_path.split("/")
    out = ["/".join(parts[:i] + [parts[i][: -len(".sbd")]])
           for i in range(len(parts) - 1) if parts[i].lower().endswith(".sbd")]
    if not mailbox:
        out.append(folder_path)
    return out


class MboxStore:
    """Appends batches to per-folder mboxrd files, fsynced before they are recorded."""

    format = "mbox"

    def __init__(self, root: Path, sync: Optional[SyncStrategy] = None) -> None:
        self.root = root
        self.tmp = root / ".archiver" / "tmp"
        self.sync: SyncStrategy = sync if sync is not None else PerFileSync()

    def close(self) -> None:
        self.sync.close()

    def path_for(self, components: tuple[str, ...]) -> str:
        return mbox_path(components)

    def _file(self, folder_path: str) -> Path:
        return self.root.joinpath(*folder_path.split("/"))

    def prepare_folder(self, folder_path: str, mailbox: bool = True) -> None:
        """Create the parent ``.sbd`` directories, the (empty) mbox file and an empty
        file for every parent (:func:`parent_files`), durably."""
        f = self._file(folder_path)
        with translate_os_errors(_("creating {path}").format(path=f)):
            created = ensure_dir(f.parent, self.root) if f.parent != self.root else []
            created += ensure_dir(self.tmp, self.root)
            fsync_parents(created)
            if mailbox and not f.exists():
                create_empty(f)
            elif f.is_symlink():
                raise OSError(40, "refusing to write through a symlink", str(f))
            self._parent_files(parent_files(folder_path, mailbox))

    def prepare_parents(self, folders: Iterable[tuple[str, bool]]) -> None:
        """The parents' empty files for every recorded ``(path, mailbox)``, at the start
        of a run: a folder skipped as unchanged is not prepared again, and an archive
        written before these files existed gets them this way.  A stat per parent."""
        wanted: set[str] = set()
        for folder_path, mailbox in folders:
            wanted.update(parent_files(folder_path, mailbox))
        with translate_os_errors(_("creating {path}").format(path=self.root)):
            self._parent_files(sorted(wanted))

    def _parent_files(self, rels: Iterable[str]) -> None:
        """Create each missing file empty; a file there (maybe being appended to by
        another connection) is left as it is, never truncated.  Something else at the
        name (a directory, a symlink) is left too: these files only help readers."""
        for rel in rels:
            f = self._file(rel)
            if f.is_file() and not f.is_symlink():
                continue
            if f.parent != self.root:
                fsync_parents(ensure_dir(f.parent, self.root))
            if not create_if_missing(f):
                log.info("%s exists and is not a plain file: no empty parent mbox there", f)

    def recorded_end(self, folder_path: str, entries: Iterable[MessageEntry]) -> int:
        """Where the recorded messages end in the file: no recorded byte lies beyond it.

        The furthest end of *any* recorded message, not merely the end of the one
        with the largest offset: after ``verify --repair`` a message the server no
        longer had can stay recorded at an offset past a file that was cut short,
        or inside the good copies appended since, and cutting at its end would cut
        them.  Only the messages ending within a separator's length (1-3 bytes) of
        the furthest are read, so this stays one message read, as before.
        """
        spans = [(e.offset + e.length, e.offset, e.length) for e in entries
                 if e.offset is not None and e.length is not None and e.path == folder_path]
        if not spans:
            return 0
        furthest = max(stop for stop, _, _ in spans)
        end = 0
        with open(self._file(folder_path), "rb") as fh:
            for stop, offset, length in spans:
                if stop >= furthest - 2:
                    end = max(end, stop + len(self._tail_at(fh, offset, length)))
        return end

    @staticmethod
    def _tail_at(fh: BinaryIO, offset: int, length: int) -> bytes:
        """The separator that follows the quoted message at ``offset`` (read piecewise)."""
        fh.seek(offset)
        has_cr = False
        left = length
        tail = b""
        while left > 0:  # piecewise: the message may be large
            piece = fh.read(min(left, 1 << 20))
            if not piece:
                break
            has_cr = has_cr or b"\r" in piece
            tail = (tail + piece)[-2:]
            left -= len(piece)
        return tail_for(tail, has_cr)

    def end_cleanly(self, folder_path: str) -> None:
        """Make the file end with an empty line, so the next ``From `` line starts a message.

        A file cut short inside a message (damage ``verify --repair`` mends by
        appending a good copy) would otherwise glue the next ``From `` line to
        the cut message for every other mbox reader.  Durable before returning.
        """
        f = self._file(folder_path)
        with translate_os_errors(_("appending to {path}").format(path=f)):
            size = f.stat().st_size
            if size == 0:
                return
            with open(f, "rb") as fh:
                fh.seek(max(0, size - 2))
                last = fh.read()
            missing = 2 - (len(last) - len(last.rstrip(b"\n")))
            if missing <= 0:
                return
            fd = os.open(f, _APPEND)
            try:
                write_all(fd, b"\n" * missing)
                os.fsync(fd)
            finally:
                os.close(fd)

    def repair(self, folder_path: str, entries: Iterable[MessageEntry]) -> None:
        """Cut bytes appended after the last recorded message (an interrupted batch)."""
        f = self._file(folder_path)
        with translate_os_errors(_("repairing {path}").format(path=f)):
            if not f.exists():
                return
            end = self.recorded_end(folder_path, entries)
            if f.stat().st_size > end:
                truncate_durably(f, end)

    def base_name(self, uidvalidity: int, uid: int) -> str:
        return f"{uidvalidity}.{uid}"

    def forget(self, folder_path: str) -> None:
        pass

    def _partial_prefix(self, folder_path: str) -> str:
        """Every folder's spools share ``.archiver/tmp``: a hash of the folder's path keeps
        two folders' (UIDVALIDITY, UID) apart (the sidecar names the folder too)."""
        return hashlib.sha256(folder_path.encode()).hexdigest()[:16] + "."

    def spool(self, folder_path: str, uidvalidity: int, uid: int,
              ident: Optional[dict[str, Any]] = None) -> Spool:
        """``.archiver/tmp/<folder hash>.<uidvalidity>.<uid>.partial`` (+ ``.json``) when
        resumable, else ``<uidvalidity>.<uid>.spool``."""
        if ident is not None:
            name = f"{self._partial_prefix(folder_path)}{uidvalidity}.{uid}.partial"
        else:
            name = f"{uidvalidity}.{uid}.spool"
        path = self.tmp / name
        with translate_os_errors(_("writing {path}").format(path=path)):
            return open_spool(path, ident)

    def prune_partials(self, folder_path: str, keep: set[tuple[int, int]]) -> None:
        prefix = self._partial_prefix(folder_path)
        with translate_os_errors(_("cleaning {path}").format(path=self.tmp)):
            try:
                names = set(os.listdir(self.tmp))
            except FileNotFoundError:
                return
            for name in names:
                if (name.startswith(prefix) and name.endswith(".partial" + SIDECAR)
                        and name[: -len(SIDECAR)] not in names):
                    os.unlink(self.tmp / name)  # a sidecar whose spool was consumed
                    continue
                if not (name.startswith(prefix) and name.endswith(".partial")):
                    continue
                parts = name[len(prefix): -len(".partial")].split(".")
                if len(parts) == 2 and all(p.isdigit() for p in parts) and \
                        (int(parts[0]), int(parts[1])) in keep:
                    continue
                for gone in (name, name + SIDECAR):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.tmp / gone)

    def stage_batch(self, folder_path: str, items: list[Incoming]
                    ) -> tuple[Optional[int], list[Stored]]:
        """Append the batch (page cache only); returns the open fd to fsync and the offsets."""
        if not items:
            return None, []
        f = self._file(folder_path)
        results: list[Stored] = []
        with translate_os_errors(_("appending to {path}").format(path=f)):
            fd = os.open(f, _APPEND)
            try:
                pos = os.fstat(fd).st_size
                for item in items:
                    head = from_line(item.head, item.internaldate)
                    if item.spool is not None:
                        quoted_len, size, digest, tail_len = self._append_spool(fd, head,
                                                                                item.spool)
                    else:
                        data = item.data or b""
                        quoted = quote(data)
                        tail = tail_for(quoted)
                        write_all(fd, head + quoted + tail)
                        quoted_len, size = len(quoted), len(data)
                        digest = hashlib.sha256(data).hexdigest()
                        tail_len = len(tail)
                    offset = pos + len(head)
                    results.append(Stored(folder_path, size, digest, offset, quoted_len))
                    pos = offset + quoted_len + tail_len
            except BaseException:
                os.close(fd)
                raise
        return fd, results

    def commit_staged(self, staged: Optional[int]) -> None:
        """Make the appended batch durable (the file's name already is: prepare_folder)."""
        if staged is None:
            return
        with translate_os_errors(_("syncing an mbox file")):
            try:
                self.sync.sync([staged])
            finally:
                os.close(staged)

    def discard_staged(self, staged: Optional[int]) -> None:
        """Close a batch that will never be committed; its bytes are cut by :meth:`repair`."""
        if staged is not None:
            os.close(staged)

    def _append_spool(self, fd: int, head: bytes, spool: Spool) -> tuple[int, int, str, int]:
        """Quote and append a streamed message piece by piece (memory stays flat)."""
        os.close(spool.fd)
        spool.fd = -1
        write_all(fd, head)
        quoted_len = 0
        last = b""  # the last quoted bytes and any CR decide the separator
        has_cr = False
        with open(spool.path, "rb") as fh:
            carry = b""
            while True:
                chunk = fh.read(1 << 20)
                data = carry + chunk
                if not chunk:
                    piece, carry = data, b""
                else:
                    cut = data.rfind(b"\n")  # quote whole lines only
                    piece, carry = (data[: cut + 1], data[cut + 1 :]) if cut >= 0 else (b"", data)
                if piece:
                    q = quote(piece)
                    write_all(fd, q)
                    quoted_len += len(q)
                    last = (last + q)[-2:]
                    has_cr = has_cr or b"\r" in q
                if not chunk:
                    break
        tail = tail_for(last, has_cr)
        write_all(fd, tail)
        os.unlink(spool.path)
        spool.consumed()  # the appended copy is fsynced with the batch, before its record
        return quoted_len, spool.size, spool.digest.hexdigest(), len(tail)

    def rename(self, folder_path: str, moves: list[Rename]) -> list[str]:
        """Flags live in the index: nothing on disk changes."""
        return [folder_path for _ in moves]

    def remove(self, folder_path: str, relpaths: list[str]) -> None:
        """Bytes in the middle of an mbox are not removed (append-only); see docs/FORMAT.md."""

    def read(self, relpath: str) -> bytes:
        return self._file(relpath).read_bytes()

    def read_message(self, entry: MessageEntry) -> bytes:
        return self.read_head(entry, -1)

    def read_head(self, entry: MessageEntry, limit: int) -> bytes:
        """Quoting is per line, so a prefix of the quoted bytes unquotes to a prefix."""
        offset, length = self._where(entry)
        with open(self._file(entry.path), "rb") as fh:
            fh.seek(offset)
            return unquote(fh.read(length if limit < 0 else min(limit, length)))

    def check_message(self, entry: MessageEntry) -> None:
        """Raise unless the mbox file reaches to the end of the message's recorded bytes."""
        offset, length = self._where(entry)
        have = os.stat(self._file(entry.path)).st_size
        if have < offset + length:
            raise ShortMessage(f"{entry.path} ends at byte {have}, before the end of the "
                               f"message at {offset}+{length}")

    def message_chunks(self, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        """The message unquoted on the fly, ``chunk`` quoted bytes at a time."""
        return StreamQuoter.unquoting().stream(self._quoted_chunks(entry, chunk))

    def _quoted_chunks(self, entry: MessageEntry, chunk: int) -> Iterator[bytes]:
        """The message's bytes as stored (quoted); ShortMessage if the file ends early."""
        offset, length = self._where(entry)
        with open(self._file(entry.path), "rb") as fh:
            fh.seek(offset)
            left = length
            while left > 0:
                piece = fh.read(min(chunk, left))
                if not piece:
                    raise ShortMessage(f"{entry.path} ends {left} bytes before the end of "
                                       f"the message at {offset}+{length}")
                left -= len(piece)
                yield piece

    def _where(self, entry: MessageEntry) -> tuple[int, int]:
        if entry.offset is None or entry.length is None:
            raise ValueError(f"no offset recorded for a message in {entry.path}")
        return entry.offset, entry.length

