"""What a store (Maildir, mbox, ...) does for the engine, and the records it returns.

A store turns fetched messages into durable files and knows nothing about
IMAP or the index.  A batch is written in two steps so the engine can overlap
them: :meth:`Store.stage_batch` writes the files (page cache only), and
:meth:`Store.commit_staged` returns only when every one is durable (synced,
renamed, directory fsynced); only then does the engine write the index frame
that mentions them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Protocol

from archiver.fsutil import open_new, write_all
from archiver.state import MessageEntry

CHUNK = 1 << 20  # bytes read at a time when a message is streamed out of the archive


class ShortMessage(OSError):
    """The archive holds fewer bytes for a message than the index recorded (or none)."""


@dataclass
class Spool:
    """A large message being streamed straight into the store's tmp/ area."""

    path: Path
    fd: int
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    head: bytes = b""  # first bytes, for header decoding

    @classmethod
    def create(cls, path: Path) -> Spool:
        return cls(path=path, fd=open_new(path))

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self.digest.update(data)
        if len(self.head) < 256 * 1024:
            self.head += data[: 256 * 1024 - len(self.head)]
        self.size += len(data)


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

    def spool(self, folder_path: str, uidvalidity: int, uid: int) -> Spool: ...

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
