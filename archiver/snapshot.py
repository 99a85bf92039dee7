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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import zstandard

from archiver.archive import Archive
from archiver.durable import atomic_write
from archiver.errors import UsageError
from archiver.fsutil import translate_os_errors
from archiver.index import FORMAT_VERSION, folder_record, link_record, timestamp
from archiver.state import IndexState, MessageEntry, read_checked

SNAPSHOT_NAME = "snapshot.json.zst"


# ---------------------------------------------------------------- snapshot


@dataclass
class SnapshotInfo:
    path: Path
    folders: int
    messages: int  # message notes (keywords, UIDL, gone) saved
    size: int


def emit_folders(names: dict[str, str], by_dir: dict[str, dict[str, Any]],
                 emit: Callable[[list[dict[str, Any]]], None]) -> int:
    """Folder records for the rebuilt index, parents first; shared by both formats."""
    for rel in sorted(names, key=lambda r: (r.count("/"), r)):
        name = names[rel]
        frec = by_dir.get(rel) or {}
        emit([folder_record(name, rel, frec.get("server_name") or name, frec.get("separator"),
                            frec.get("attributes") or [], reindexed=True)])
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


def write_snapshot(archive: Archive, state: Optional[IndexState] = None) -> SnapshotInfo:
    """Save what only the index knows, so a later :func:`rebuild_index` recovers it.

    One zstd-compressed JSON object: the folder records, and for each message
    that has any, its keywords (other than ``$Forwarded``), UIDL, POP3 date
    source, gone mark, plus the ``link`` records.  Written atomically.

    ``state``: the index already folded (a backup just did), so it is not built
    a second time; the records are then only scanned for folders and links.
    """
    folders: dict[str, dict[str, Any]] = {}
    sources: dict[tuple[str, str], Any] = {}
    links: list[dict[str, Any]] = []
    seen = 0

    def take(rec: dict[str, Any]) -> None:
        """Note one record as it is read: no list of every record (memory stays low)."""
        nonlocal seen
        seen += 1
        kind = rec.get("type")
        if kind == "folder" and isinstance(rec.get("folder"), str):
            old = folders.get(rec["folder"], {})
            folders[rec["folder"]] = {k: rec.get(k, old.get(k)) for k in
                                      ("folder", "dir", "server_name", "separator",
                                       "attributes")}
            if old.get("dir"):
                folders[rec["folder"]]["dir"] = old["dir"]  # a folder's path never changes
        elif kind == "msg" and isinstance(rec.get("uidl"), str):
            sources[(str(rec.get("folder")), rec["uidl"])] = rec.get("internaldate_source")
        elif kind == "link":
            links.append({k: rec.get(k) for k in ("folder", "uidl", "to")})

    if state is None:
        state, res = IndexState.read(archive.index_path, also=take)
    else:  # the backup's fold: only scan the (sensible) records, no second fold
        res, _ = read_checked(archive.index_path, take)
    if not seen:
        raise UsageError(f"{archive.index_path} is missing or empty: nothing to snapshot "
                         "(rebuild it first with 'archiver reindex')")
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
            notes.append(encode(_mbox_note(m, sources)))
            continue
        if not (keywords or m.uidl or m.gone):
            continue
        note: dict[str, Any] = {"folder": m.folder, "uidvalidity": m.uidvalidity, "uid": m.uid,
                                "sha256": m.sha256}
        if keywords:
            note["keywords"] = keywords
        if m.uidl is not None:
            note["uidl"] = m.uidl
            note["internaldate_source"] = sources.get((m.folder, m.uidl))
        if m.gone:
            note["gone"] = True
        notes.append(encode(note))
    head = encode({"v": FORMAT_VERSION, "type": "snapshot", "t": timestamp(),
                   "index_bytes": res.good_length, "folders": list(folders.values()),
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
    with translate_os_errors(f"writing {path}"):
        atomic_write(path, data)
    return SnapshotInfo(path, len(folders), count, len(data))


def _mbox_note(m: MessageEntry, sources: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Everything an mbox message's record holds that its bytes do not: where it is, flags."""
    note: dict[str, Any] = {"folder": m.folder, "uidvalidity": m.uidvalidity, "uid": m.uid,
                            "sha256": m.sha256, "path": m.path, "offset": m.offset,
                            "length": m.length, "size": m.size, "flags": list(m.flags),
                            "keywords": list(m.keywords), "internaldate": m.internaldate}
    if m.uidl is not None:
        note["uidl"] = m.uidl
        note["internaldate_source"] = sources.get((m.folder, m.uidl))
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
