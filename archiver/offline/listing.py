"""``archiver ls``: what an archive holds, from the index alone (no server needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from archiver.archive import Archive
from archiver.offline.catalog import load


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
    catalog = load(archive)
    names = catalog.state.folders
    if folder not in names:
        matches = [n for n in names if n.lower() == folder.lower()]
        if len(matches) != 1:
            return None
        folder = matches[0]
    out = [MessageLine(id=item.id, date=item.date, sender=item.text("from") or None,
                       subject=item.text("subject") or None, size=item.entry.size,
                       flags=item.entry.flags, gone=item.entry.gone, path=item.entry.path)
           for item in catalog.items if item.folder == folder]
    out.sort(key=lambda line: (line.date or "", line.path))
    return out
