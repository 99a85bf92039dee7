"""The index snapshot: what only the index knows, kept beside it for a rebuild.

Every backup that changes the index refreshes ``.archiver/snapshot.json.zst``
(one zstd-compressed JSON object, written atomically): the folder records,
and for each message that has any, its keywords (other than ``$Forwarded``),
UIDL, POP3 date source and gone mark, plus the IMAP/POP3 ``link`` records.
For an mbox archive it lists every message (where it is, its flags), since
an mbox file alone cannot say where one message ends.  ``archiver reindex``
(:mod:`archiver.offline.reindex`) reads it back; docs/FORMAT.md describes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import zstandard

from archiver.archive import Archive
from archiver.durable import atomic_write
from archiver.errors import UsageError
from archiver.fsutil import translate_os_errors
from archiver.i18n import _
from archiver.index import FORMAT_VERSION, folder_record, link_record, timestamp
from archiver.state import MessageEntry

SNAPSHOT_NAME = "snapshot.json.zst"


# ---------------------------------------------------------------- snapshot


@dataclass
class SnapshotInfo:
    path: Path
    folders: int
    messages: int  # message notes (keywords, UIDL, gone) saved
    size: int


def folders_by_dir(snap: Optional[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The snapshot's folder records by their path in DEST (none without a snapshot)."""
    by_dir: dict[str, dict[str, Any]] = {}
    for frec in (snap or {}).get("folders") or []:
        if isinstance(frec, dict) and isinstance(frec.get("dir"), str):
            by_dir[frec["dir"]] = frec
    return by_dir


def name_folders(rels: Iterable[str], by_dir: dict[str, dict[str, Any]],
                 decode: Callable[[str], str]) -> tuple[dict[str, str], set[str]]:
    """Folder name of each path on disk: the snapshot's, else ``decode(path)``.

    Two cut or suffixed paths may decode alike; the second keeps its path as
    its name.  Returns (path -> name, the names taken); shared by both formats.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for rel in rels:
        frec = by_dir.get(rel)
        if frec is not None and isinstance(frec.get("folder"), str):
            name = frec["folder"]
        else:
            name = decode(rel)
            if name in taken:
                name = rel
        taken.add(name)
        names[rel] = name
    return names, taken


def emit_folders(names: dict[str, str], by_dir: dict[str, dict[str, Any]],
                 emit: Callable[[list[dict[str, Any]]], None]) -> int:
    """Folder records for the rebuilt index, parents first; shared by both formats."""
    for rel in sorted(names, key=lambda r: (r.count("/"), r)):
        name = names[rel]
        frec = by_dir.get(rel) or {}
        # another user's or a shared folder stays marked so (restore never creates it)
        extra = {"namespace": frec["namespace"]} if frec.get("namespace") else {}
        emit([folder_record(name, rel, frec.get("server_name") or name, frec.get("separator"),
                            frec.get("attributes") or [], reindexed=True, **extra)])
    return len(names)


def emit_links(snap: dict[str, Any], taken: set[str],
               emit: Callable[[list[dict[str, Any]]], None]) -> None:
    """The snapshot's IMAP/POP3 links, for folders the rebuilt index has."""
    links: list[dict[str, Any]] = []
    for link in snap.get("links") or []:
        if not isinstance(link, dict) or link.get("folder") not in taken:
            continue
        to, uidl = link.get("to"), link.get("uidl")
        if (isinstance(to, list) and len(to) == 2 and all(type(x) is int for x in to)
                and isinstance(uidl, str)):
            links.append(link_record(link["folder"], uidl, (to[0], to[1]), reindexed=True))
    emit(links)


def snapshot_path(archive: Archive) -> Path:
    return archive.meta_dir / SNAPSHOT_NAME


def write_snapshot(archive: Archive) -> SnapshotInfo:
    """Save what only the index knows, so a later :func:`rebuild_index` recovers it.

    One zstd-compressed JSON object: the folder records, and for each message
    that has any, its keywords (other than ``$Forwarded``), UIDL, POP3 date
    source, gone mark, plus the IMAP/POP3 links.  Written atomically.

    Everything comes from the folded index (:meth:`Archive.state`): after a
    backup it is already in memory, so the index is not read a second time.
    """
    state = archive.state()
    index_bytes = archive.index_bytes
    if not index_bytes:
        raise UsageError(_("{index_path} is missing or empty: nothing to snapshot (rebuild it "
                           "first with 'archiver reindex')").format(
                           index_path=archive.index_path))
    folders = [{"folder": f.name, "dir": f.path, "server_name": f.server_name,
                "separator": f.separator, "attributes": list(f.attributes),
                **({} if f.namespace == "personal" else {"namespace": f.namespace})}
               for f in state.folders.values()]
    links = [{"folder": m.folder, "uidl": m.uidl, "to": list(m.linked_to)}
             for m in state.messages() if m.linked_to is not None]
    # Each note is encoded as soon as it is made: 20,000 small strings weigh far
    # less than 20,000 dicts (peak memory of the backup that writes the snapshot).
    notes: list[str] = []

    def encode(note: dict[str, Any]) -> str:
        return json.dumps(note, ensure_ascii=False, separators=(",", ":"))

    mbox = archive.format == "mbox"
    for m in state.messages():
        if not m.sha256:
            continue  # a linked POP3 sight: kept as its link
        keywords = [k for k in m.keywords if k != "$Forwarded"]
        if mbox:
            notes.append(encode(_mbox_note(m)))
            continue
        if not (keywords or m.uidl or m.gone):
            continue
        note: dict[str, Any] = {"folder": m.folder, "uidvalidity": m.uidvalidity, "uid": m.uid,
                                "sha256": m.sha256}
        if keywords:
            note["keywords"] = keywords
        if m.uidl is not None:
            note["uidl"] = m.uidl
            note["internaldate_source"] = m.internaldate_source
        if m.gone:
            note["gone"] = True
        notes.append(encode(note))
    head = encode({"v": FORMAT_VERSION, "type": "snapshot", "t": timestamp(),
                   "index_bytes": index_bytes, "folders": folders,
                   "links": links})
    count = len(notes)
    cobj = zstandard.ZstdCompressor(level=9).compressobj()
    parts = [cobj.compress((head[:-1] + ',"messages":[').encode("utf-8"))]
    for i, encoded in enumerate(notes):  # streamed: no second copy of the whole text
        parts.append(cobj.compress(((", " if i else "") + encoded).encode("utf-8")))
    parts.append(cobj.compress(b"]}"))
    parts.append(cobj.flush())
    del notes
    data = b"".join(parts)
    path = snapshot_path(archive)
    with translate_os_errors(_("writing {path}").format(path=path)):
        atomic_write(path, data)
    return SnapshotInfo(path, len(folders), count, len(data))


def _mbox_note(m: MessageEntry) -> dict[str, Any]:
    """Everything an mbox message's record holds that its bytes do not: where it is, flags."""
    note: dict[str, Any] = {"folder": m.folder, "uidvalidity": m.uidvalidity, "uid": m.uid,
                            "sha256": m.sha256, "path": m.path, "offset": m.offset,
                            "length": m.length, "size": m.size, "flags": list(m.flags),
                            "keywords": list(m.keywords), "internaldate": m.internaldate}
    if m.uidl is not None:
        note["uidl"] = m.uidl
        note["internaldate_source"] = m.internaldate_source
    if m.sha256_norm:
        note["sha256_norm"] = m.sha256_norm
    if m.rfc822_size is not None:
        note["rfc822_size"] = m.rfc822_size
    if m.gone:
        note["gone"] = True
    return note


def read_snapshot(archive: Archive) -> Optional[dict[str, Any]]:
    """The snapshot, or None if there is none or it cannot be read."""
    path = snapshot_path(archive)
    try:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
        snap = json.loads(raw)
    except (OSError, ValueError, zstandard.ZstdError):
        return None
    return snap if isinstance(snap, dict) and snap.get("type") == "snapshot" else None
