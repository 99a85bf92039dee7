"""What a store (Maildir, mbox, ...) does for the engine, and the records it returns.

A store turns fetched messages into durable files and knows nothing about
IMAP or the index.  A batch is written in two steps so the engine can overlap
them: :meth:`Store.stage_batch` writes the files (page cache only), and
:meth:`Store.commit_staged` returns only when every one is durable (synced,
renamed, directory fsynced); only then does the engine write the index frame
that mentions them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Protocol

from archiver import platform
from archiver.durable import fsync, replace_with
from archiver.fsutil import open_new, write_all
from archiver.state import MessageEntry

CHUNK = 1 << 20  # bytes read at a time when a message is streamed out of the archive


class ShortMessage(OSError):
    """The archive holds fewer bytes for a message than the index recorded (or none)."""


@dataclass
class Spool:
    """A large message being streamed straight into the store's tmp/ area.

    A *resumable* spool (``sidecar`` set, see :func:`open_spool`) survives a
    lost connection or a killed run: every piece is fsynced and then counted
    in the sidecar, so a later attempt continues from the bytes already there.
    """

    path: Path
    fd: int
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    head: bytes = b""  # first bytes, for header decoding
    sidecar: Optional[Path] = None
    ident: Optional[dict[str, Any]] = None  # what the sidecar says besides the length

    @classmethod
    def create(cls, path: Path) -> Spool:
        return cls(path=path, fd=open_new(path))

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self._account(data)
        if self.sidecar is not None:
            # Durable before counted: a sidecar never claims bytes a power cut can lose.
            fsync(self.fd)
            self._save_sidecar()

    def _account(self, data: bytes) -> None:
        self.digest.update(data)
        if len(self.head) < 256 * 1024:
            self.head += data[: 256 * 1024 - len(self.head)]
        self.size += len(data)

    def _save_sidecar(self) -> None:
        assert self.sidecar is not None and self.ident is not None
        body = json.dumps(dict(self.ident, length=self.size), sort_keys=True).encode()
        replace_with(self.sidecar, body)  # an older or missing sidecar is safe: see open_spool

    def tail(self, n: int) -> bytes:
        """The last ``n`` bytes on disk (what a resumed fetch must answer again first)."""
        n = min(n, self.size)
        if n <= 0:
            return b""
        with open(self.path, "rb") as fh:
            fh.seek(self.size - n)
            return fh.read(n)

    def close(self) -> None:
        """Close the file, keeping it (and its sidecar) for a later attempt."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the spool and its sidecar (the message will not continue)."""
        self.close()
        for p in (self.path, self.sidecar):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    def consumed(self) -> None:
        """The spool's bytes reached their final place: the sidecar has nothing to guard."""
        if self.sidecar is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.sidecar)


SIDECAR = ".json"  # a resumable spool ``X`` is described by ``X.json``


def open_spool(path: Path, ident: Optional[dict[str, Any]]) -> Spool:
    """A spool at ``path``: fresh, or -- when ``ident`` matches its sidecar -- continued.

    ``ident`` names the message (folder, UIDVALIDITY, UID, RFC822.SIZE,
    INTERNALDATE); ``None`` makes a plain, non-resumable spool (POP3, whose
    RETR cannot start in the middle).  An existing spool is continued only
    when its sidecar parses, records exactly ``ident`` (so a spool of another
    message, or of this UID after its size or date changed, is never
    continued) and claims no more bytes than the file holds; the file is cut
    back to the claimed length (bytes past it were never fsynced and
    counted).  Anything else starts over from an empty file.  The engine adds
    a content check (the overlap, see :mod:`archiver.engine`).
    """
    if ident is None:
        return Spool.create(path)
    sidecar = path.with_name(path.name + SIDECAR)
    length = _claimed_length(path, sidecar, ident)
    if length is None:
        spool = Spool(path=path, fd=open_new(path), sidecar=sidecar, ident=ident)
        spool._save_sidecar()  # length 0: names the message before any byte arrives
        return spool
    fd = os.open(path, platform.file_flags(os.O_WRONLY))
    spool = Spool(path=path, fd=fd, sidecar=sidecar, ident=ident)
    try:
        os.ftruncate(fd, length)
        os.lseek(fd, length, os.SEEK_SET)
        with open(path, "rb") as fh:
            left = length
            while left:
                block = fh.read(min(CHUNK, left))
                if not block:
                    raise OSError(f"{path} ended early")
                spool._account(block)
                left -= len(block)
    except BaseException:
        spool.close()
        raise
    return spool


def _claimed_length(path: Path, sidecar: Path, ident: dict[str, Any]) -> Optional[int]:
    """Bytes of ``path`` its sidecar vouches for, or None when it is not ``ident``'s spool."""
    try:
        raw = json.loads(sidecar.read_bytes())
        have = os.lstat(path)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not stat.S_ISREG(have.st_mode):
        return None
    length = raw.pop("length", None)
    if raw != ident or not isinstance(length, int) or not 0 < length <= have.st_size:
        return None
    return length


@dataclass
class Incoming:
    """One message to store: its bytes (or spool), key and metadata."""

    uidvalidity: int
    uid: int
    flags: tuple[str, ...]
    keywords: tuple[str, ...]
    internaldate: Optional[datetime]
    data: Optional[bytes] = None
    spool: Optional[Spool] = None
    uidl: Optional[str] = None  # POP3 messages
    date_source: Optional[str] = None  # POP3: where the date came from (no INTERNALDATE)
    server_size: Optional[int] = None  # what the listing said (RFC822.SIZE, POP3 LIST)

    def sha256(self) -> str:
        if self.spool is not None:
            return self.spool.digest.hexdigest()
        return hashlib.sha256(self.data or b"").hexdigest()

    def sha256_norm(self) -> str:
        """Hash for matching the same message seen over IMAP and POP3 (see norm_hash)."""
        if self.data is not None:
            return norm_hash(self.data)
        assert self.spool is not None
        return norm_hash(self.spool.path.read_bytes())

    @property
    def head(self) -> bytes:
        if self.data is not None:
            return self.data[: 256 * 1024]
        return self.spool.head if self.spool else b""


def norm_hash(data: bytes) -> str:
    """SHA-256 after CRLF->LF, NUL->0x80, and with a final newline ensured.

    POP3 must end a message that lacks a final newline with CRLF, so the same
    message can arrive one byte pair longer over POP3 than over IMAP; this
    hash is equal for both.  IMAP servers may not send NUL (Dovecot sends 0x80
    instead) while POP3 passes it.  (``sha256`` stays the hash of the stored bytes.)
    """
    text = data.replace(b"\r\n", b"\n").replace(b"\0", b"\x80")
    if not text.endswith(b"\n"):
        text += b"\n"
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class Stored:
    """Where a message ended up, with the hash of the exact bytes stored."""

    path: str  # relative to DEST, '/'-separated
    size: int
    sha256: str
    offset: Optional[int] = None  # mbox: where the (quoted) message starts in the file
    length: Optional[int] = None  # mbox: its quoted length


@dataclass(frozen=True)
class Rename:
    """Move a stored message to the name for (uidvalidity, uid, flags)."""

    old_base: str
    uidvalidity: int
    uid: int
    flags: tuple[str, ...]
    keywords: tuple[str, ...]


class Store(Protocol):
    format: str

    def path_for(self, components: tuple[str, ...]) -> str:
        """The store's own relative path for a folder (before collision handling)."""
        ...

    def prepare_folder(self, folder_path: str, mailbox: bool = True) -> None: ...

    def repair(self, folder_path: str, entries: Iterable[MessageEntry]) -> None:
        """Undo what a crash left between "durable" and "recorded" (mbox: a torn tail)."""
        ...

    def spool(self, folder_path: str, uidvalidity: int, uid: int,
              ident: Optional[dict[str, Any]] = None) -> Spool:
        """A spool for one large message; with ``ident`` resumable (see :func:`open_spool`)."""
        ...

    def prune_partials(self, folder_path: str, keep: set[tuple[int, int]]) -> None:
        """Remove resumable spools of the folder whose (UIDVALIDITY, UID) is not in ``keep``."""
        ...

    def stage_batch(self, folder_path: str, items: list[Incoming]
                    ) -> tuple[Any, list[Stored]]:
        """Write a batch (not yet durable); returns a token for commit_staged and results."""
        ...

    def commit_staged(self, staged: Any) -> None:
        """Make a staged batch durable (fsync, rename, fsync the directory)."""
        ...

    def discard_staged(self, staged: Any) -> None:
        """Release a staged batch that will not be committed (its descriptors)."""
        ...

    def base_name(self, uidvalidity: int, uid: int) -> str: ...

    def rename(self, folder_path: str, moves: list[Rename]) -> list[str]: ...

    def forget(self, folder_path: str) -> None: ...

    def remove(self, folder_path: str, relpaths: list[str]) -> None: ...

    def close(self) -> None: ...

    def read(self, relpath: str) -> bytes: ...

    def read_message(self, entry: MessageEntry) -> bytes:
        """The exact bytes archived for ``entry`` (what its ``sha256`` covers)."""
        ...

    def read_head(self, entry: MessageEntry, limit: int) -> bytes:
        """The first ``limit`` bytes of :meth:`read_message` (for its header), read
        without the rest."""
        ...

    def check_message(self, entry: MessageEntry) -> None:
        """Raise OSError unless the archive holds all of ``entry``'s recorded bytes.

        Cheap (a stat): a restore asks before it promises the target a literal of
        ``entry.size`` bytes, since a literal cannot be taken back once begun.
        """
        ...

    def message_chunks(self, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        """The same bytes as :meth:`read_message`, in pieces of about ``chunk`` bytes.

        For messages too large to hold whole; raises :class:`ShortMessage` when the
        file ends early.
        """
        ...
