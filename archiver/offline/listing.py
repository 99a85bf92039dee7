"""``archiver ls``: what an archive holds, from the index alone (no server needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from archiver.archive import Archive
from archiver.index import POP3_UIDVALIDITY, read_index, uid_for_uidl


@dataclass
class FolderLine:
    name: str
    path: str
    messages: int
    bytes: int
    gone: int


@dataclass
class MessageLine:
    id: str  # short id: a prefix of the sha256
    date: Optional[str]
    sender: Optional[str]
    subject: Optional[str]
    size: int
    flags: tuple[str, ...]
    gone: bool
    path: str


def list_folders(archive: Archive) -> list[FolderLine]:
    state = archive.state()
    out: list[FolderLine] = []
    for folder in state.folders.values():
        msgs = [m for m in folder.messages.values() if m.counted]
        out.append(FolderLine(
            name=folder.name, path=folder.path, messages=len(msgs),
            bytes=sum(m.size for m in msgs), gone=sum(1 for m in msgs if m.gone)))
    out.sort(key=lambda f: (f.name != "INBOX", f.name))
    return out


def list_messages(archive: Archive, folder: str) -> Optional[list[MessageLine]]:
    """Messages of one folder (None if the archive has no such folder), oldest first."""
    state = archive.state()
    if folder not in state.folders:
        matches = [n for n in state.folders if n.lower() == folder.lower()]
        if len(matches) != 1:
            return None
        folder = matches[0]
    entry = state.folders[folder]
    headers: dict[tuple[int, int], dict[str, Any]] = {}
    for rec in read_index(archive.index_path).records:
        if rec.get("type") == "msg" and rec.get("folder") == folder:
            try:
                if isinstance(rec.get("uidl"), str):
                    headers[(POP3_UIDVALIDITY, uid_for_uidl(rec["uidl"]))] = rec
                else:
                    headers[(int(rec["uidvalidity"]), int(rec["uid"]))] = rec
            except (KeyError, TypeError, ValueError, OverflowError):
                continue
    out: list[MessageLine] = []
    for key, m in entry.messages.items():
        if not m.counted:
            continue
        rec = headers.get(key, {})
        out.append(MessageLine(
            id=m.sha256[:12], date=rec.get("date") or rec.get("internaldate"),
            sender=rec.get("from"), subject=rec.get("subject"), size=m.size,
            flags=m.flags, gone=m.gone, path=m.path))
    out.sort(key=lambda line: (line.date or "", line.path))
    return out
