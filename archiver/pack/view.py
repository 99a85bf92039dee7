"""A pack seen as a read-only archive: what ``ls``, ``search``, ``show``, ``export`` and
``restore`` need, read straight from the pack.

The seam is the one every reader already goes through: :class:`PackedArchive`
is an :class:`~archiver.archive.Archive` whose ``archive.json`` and index come
out of the pack, and :class:`PackStore` is a store (``open_store`` returns it
for a pack) whose reading methods take a message's bytes -- a Maildir file,
or a byte range of an mbox file -- from the frames that hold them.  Every
writing method refuses with the one line that says to unpack first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from archiver.archive import META_DIR, Archive
from archiver.errors import DestinationError
from archiver.i18n import _
from archiver.index import FORMAT_VERSION, INDEX_NAME
from archiver.offline.verify import CHANGED, MISSING, Check, VerifyReport
from archiver.pack.reader import PackReader, open_pack, packed_error
from archiver.state import IndexState, MessageEntry
from archiver.stores.base import CHUNK, Incoming, Rename, ShortMessage, Spool, Stored
from archiver.stores.maildir import base_of
from archiver.stores.mboxrd import StreamQuoter, unquote

INDEX_MEMBER = f"{META_DIR}/{INDEX_NAME}"
META_MEMBER = f"{META_DIR}/archive.json"


class PackedArchive(Archive):
    """An archive read from a pack: no lock, no writer."""

    def verify_stored(self, report: VerifyReport) -> None:
        """``verify`` of a pack (offline.verify calls it instead of walking a tree).

        A pack has three layers of checksums: the index (SHA-256 in the footer),
        each frame and each file.  All are checked, then each message the
        archive's own index records is read back through the pack and compared
        with its recorded SHA-256, as ``verify`` does for a directory.
        """
        reader = self.reader
        bad_files: set[str] = set()
        for member in reader.index.files:
            digest = hashlib.sha256()
            try:
                for piece in reader.iter_file(member.path):
                    digest.update(piece)
            except DestinationError as exc:  # PackDamaged, or the pack unreadable
                report.changed.append(f"{member.path} ({exc})")
                bad_files.add(member.path)
        store = PackStore(reader)
        for folder in self.state().folders.values():
            for entry in folder.messages.values():
                if not entry.counted or not entry.sha256:
                    continue
                label = (f"{entry.path} @{entry.offset}" if self.format == "mbox"
                         else entry.path)
                if self.format != "mbox" and store.locate(entry) in bad_files:
                    report.checked += 1
                    continue  # already listed as a damaged file
                try:
                    data = store.read_message(entry)
                except (OSError, ValueError) as exc:
                    report.add(entry, Check(MISSING, label, str(exc)))
                    continue
                except DestinationError as exc:
                    report.add(entry, Check(CHANGED, label, str(exc)))
                    continue
                ok = len(data) == entry.size and \
                    hashlib.sha256(data).hexdigest() == entry.sha256
                report.add(entry, Check(None if ok else CHANGED, label, size=len(data)))

    def __init__(self, pack: Path) -> None:
        super().__init__(pack)
        self.reader: PackReader = open_pack(pack)
        if META_MEMBER not in self.reader.files:
            raise DestinationError(_("{pack} holds no {member}: it is not an archive's "
                                     "pack").format(pack=pack, member=META_MEMBER))
        try:
            meta = json.loads(self.reader.read_file(META_MEMBER))
        except ValueError as exc:
            raise DestinationError(_("{pack}: {member} is unreadable ({exc})").format(
                pack=pack, member=META_MEMBER, exc=exc)) from None
        if not isinstance(meta, dict):
            raise DestinationError(_("{pack}: {member} is damaged").format(
                pack=pack, member=META_MEMBER))
        if int(meta.get("v", 0)) > FORMAT_VERSION:
            raise DestinationError(_("{dest} was written by a newer archiver (format "
                                     "{meta_v}): upgrade archiver").format(
                                     dest=pack, meta_v=meta.get('v')))
        self.meta = meta

    def has_index(self) -> bool:
        return INDEX_MEMBER in self.reader.files

    def read_state(self, also: Optional[Callable[[dict[str, Any]], None]] = None
                   ) -> IndexState:
        data = self.reader.read_file(INDEX_MEMBER) if self.has_index() else b""
        state, res = IndexState.read(self.index_path, also=also, data=data)
        self.torn_tail = res.torn
        self._good_length = res.good_length
        self._state = state
        return state

    def acquire_lock(self) -> None:
        raise packed_error(self.dest)

    def writer(self) -> NoReturn:
        raise packed_error(self.dest)

    def require_writable(self) -> None:
        raise packed_error(self.dest)

    def folder_counters(self) -> dict[str, Any]:
        try:
            data = json.loads(self.reader.read_file(f"{META_DIR}/folders.json"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}


class PackStore:
    """The reading half of a store, over a pack (Maildir or mbox inside)."""

    def __init__(self, reader: PackReader) -> None:
        self.reader = reader
        self.format = reader.format
        self._bases: dict[str, dict[str, str]] = {}  # folder dir -> base name -> path

    # ------------------------------------------------------------ reading

    def locate(self, entry: MessageEntry) -> str:
        """The message's path in the pack: the recorded one, else its base name in cur/
        or new/ (a flag change renamed it after the index was written)."""
        if entry.path in self.reader.files:
            return entry.path
        parts = entry.path.split("/")
        if len(parts) >= 3 and parts[-2] in ("cur", "new"):
            folder_dir = "/".join(parts[:-2])
            bases = self._bases.get(folder_dir)
            if bases is None:
                bases = {}
                for path in self.reader.files:
                    head, _sep, name = path.rpartition("/")
                    if head in (f"{folder_dir}/cur", f"{folder_dir}/new"):
                        bases.setdefault(base_of(name), path)
                self._bases[folder_dir] = bases
            found = bases.get(base_of(parts[-1]))
            if found is not None:
                return found
        return entry.path  # not there: the read raises FileNotFoundError

    def read(self, relpath: str) -> bytes:
        return self.reader.read_file(relpath)

    def read_message(self, entry: MessageEntry) -> bytes:
        if self.format == "mbox":
            offset, length = self._where(entry)
            return unquote(self.reader.read_slice(entry.path, offset, length))
        return self.reader.read_file(self.locate(entry))

    def read_head(self, entry: MessageEntry, limit: int) -> bytes:
        if self.format == "mbox":
            offset, length = self._where(entry)
            return unquote(self.reader.read_slice(
                entry.path, offset, length if limit < 0 else min(limit, length)))
        path = self.locate(entry)
        size = self.reader.member(path).size
        return self.reader.read_slice(path, 0, size if limit < 0 else limit)

    def check_message(self, entry: MessageEntry) -> None:
        if self.format == "mbox":
            self._where(entry)
            return
        have = self.reader.member(self.locate(entry)).size
        if have != entry.size:
            raise ShortMessage(f"{entry.path} holds {have} bytes, the index says {entry.size}")

    def message_chunks(self, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        if self.format == "mbox":
            offset, length = self._where(entry)
            return StreamQuoter.unquoting().stream(
                self.reader.iter_slice(entry.path, offset, length))
        return self.reader.iter_file(self.locate(entry))

    def _where(self, entry: MessageEntry) -> tuple[int, int]:
        if entry.offset is None or entry.length is None:
            raise ValueError(f"no offset recorded for a message in {entry.path}")
        have = self.reader.member(entry.path).size
        if have < entry.offset + entry.length:
            raise ShortMessage(f"{entry.path} ends at byte {have}, before the end of the "
                               f"message at {entry.offset}+{entry.length}")
        return entry.offset, entry.length

    def close(self) -> None:
        """The reader is shared (one per process and pack): nothing to close here."""

    # ------------------------------------------------------------ writing: refused

    def _refuse(self) -> NoReturn:
        raise packed_error(self.reader.path)

    def path_for(self, components: tuple[str, ...]) -> str:
        self._refuse()

    def prepare_folder(self, folder_path: str, mailbox: bool = True) -> None:
        self._refuse()

    def repair(self, folder_path: str, entries: Iterable[MessageEntry]) -> None:
        self._refuse()

    def spool(self, folder_path: str, uidvalidity: int, uid: int,
              ident: Optional[dict[str, Any]] = None) -> Spool:
        self._refuse()

    def prune_partials(self, folder_path: str, keep: set[tuple[int, int]]) -> None:
        self._refuse()

    def stage_batch(self, folder_path: str, items: list[Incoming]
                    ) -> tuple[Any, list[Stored]]:
        self._refuse()

    def commit_staged(self, staged: Any) -> None:
        self._refuse()

    def discard_staged(self, staged: Any) -> None:
        self._refuse()

    def base_name(self, uidvalidity: int, uid: int) -> str:
        self._refuse()

    def rename(self, folder_path: str, moves: list[Rename]) -> list[str]:
        self._refuse()

    def forget(self, folder_path: str) -> None:
        self._refuse()

    def remove(self, folder_path: str, relpaths: list[str]) -> None:
        self._refuse()
