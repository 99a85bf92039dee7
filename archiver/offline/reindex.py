"""Rebuild a lost or damaged index from the message files (``archiver reindex``).

A Maildir archive is readable without its index, and most of the index can
be recovered from it:

* folders: every directory under DEST (``.archiver`` aside) holding ``cur/``;
  the folder name is the path with each component's escapes reversed
  (:func:`archiver.names.decode_component`);
* messages: ``<uidvalidity>.<uid>.archiver:2,<info>`` (or ``;2,``) gives UIDVALIDITY, UID
  and the flags (``P`` is the keyword ``$Forwarded``), and the keywords
  through the folder's ``dovecot-keywords`` (letters ``a``..``z``); the bytes
  give size, SHA-256 and the decoded headers; the file's mtime is the INTERNALDATE.

Only the index knows keywords past a folder's 26th letter, the real name of a
folder whose path was cut (over 200 bytes) or suffixed, a folder's server
name, separator and attributes (``\\Noselect`` folders have no ``cur/``), POP3
UIDLs (a POP3 file is named by a hash of its UIDL), the IMAP/POP3 ``link``s
and which messages are ``gone`` from the server.  :func:`write_snapshot` saves
exactly those facts, compactly, in ``.archiver/snapshot.json.zst``;
:func:`rebuild_index` uses the snapshot when present.

The old index is never deleted: it is renamed ``index.jsonl.zst.damaged-<UTC
time>``.  The new one is written with :class:`archiver.index.IndexWriter` in
batches into a temporary file and renamed into place, under the archive lock.
``folders.json`` (a cache) is removed, so the next backup re-lists every
folder and brings back flags, keywords and gone marks of what is still on
the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from archiver.archive import META_DIR, Archive
from archiver.durable import fsync_dir, replace
from archiver.errors import UsageError
from archiver.fsutil import hash_file, translate_os_errors
from archiver.headers import summarize
from archiver.i18n import _
from archiver.index import (
    POP3_UIDVALIDITY,
    IndexWriter,
    gone_record,
    message_key,
    msg_record,
    uid_for_uidl,
)
from archiver.names import decode_component
from archiver.sidefiles import is_side_file
from archiver.snapshot import (
    emit_folders,
    emit_links,
    folders_by_dir,
    name_folders,
    read_snapshot,
)
from archiver.state import IndexState
from archiver.stores.maildir import flags_from_info
from archiver.stores.maildir_keywords import keywords_of, read_letters

BATCH = 1000  # records per index frame
HEAD_BYTES = 256 * 1024
# either info separator: ":2," or the portable ";2," (archiver.naming)
_FILE_RE = re.compile(r"^(\d+)\.(\d+)\.archiver(?:[:;]2,([A-Za-z]*))?$")



# ---------------------------------------------------------------- rebuild


@dataclass
class ReindexReport:
    folders: int = 0
    messages: int = 0
    moved_aside: Optional[Path] = None
    snapshot_time: Optional[str] = None
    skipped: list[str] = field(default_factory=list)  # files that are not archiver's


def _index_is_sound(archive: Archive) -> bool:
    """Whole frames only, and every record makes sense (no rebuild needed)."""
    state, res = IndexState.read(archive.index_path)
    return res.good_length > 0 and not res.torn and not state.skipped


def folder_dirs(dest: Path) -> list[str]:
    """Every folder directory (holding ``cur``) under DEST, relative, '/'-separated."""
    found: list[str] = []
    for root, dirs, _files in os.walk(dest):
        rel = Path(root).relative_to(dest)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d != META_DIR]
        if "cur" in dirs and Path(root, "cur").is_dir():
            found.append(rel.as_posix())
        dirs[:] = sorted(d for d in dirs if d not in ("cur", "new", "tmp"))
    return [f for f in found if f != "."]


def _keywords(info: str, letters: dict[int, str], noted: list[Any]) -> list[str]:
    """A message's keywords: its file name's letters (``dovecot-keywords``), ``P``, and
    what the snapshot knows of keywords that have no letter (past the 26th)."""
    out = keywords_of(info, letters)
    lettered = {k.lower() for k in letters.values()}
    out += [k for k in noted if isinstance(k, str) and k.lower() not in lettered
            and k not in out]
    if "P" in info and "$Forwarded" not in out:
        out.insert(0, "$Forwarded")
    return out


def _msg_records(dest: Path, name: str, rel: str, notes: dict[tuple[int, int], dict[str, Any]],
                 report: ReindexReport) -> list[dict[str, Any]]:
    """The ``msg`` (and ``gone``) records of one folder directory."""
    from archiver.stores.base import norm_hash

    out: list[dict[str, Any]] = []
    folder_dir = dest.joinpath(*rel.split("/"))
    letters = read_letters(folder_dir)
    for sub in ("cur", "new"):
        try:
            names = sorted(os.listdir(folder_dir / sub))
        except FileNotFoundError:
            continue
        for fname in names:
            if is_side_file(fname):
                continue  # a desktop's or mail program's file, not mail (archiver.sidefiles)
            path = folder_dir / sub / fname
            match = _FILE_RE.match(fname)
            if match is None or not path.is_file():
                report.skipped.append(_("{rel}/{sub}/{fname} (not a file archiver wrote)").format(
                                        rel=rel, sub=sub, fname=fname))
                continue
            uidvalidity, uid, info = int(match.group(1)), int(match.group(2)), match.group(3)
            info = info or ""
            st = path.stat()
            sha, size, head = hash_file(path, HEAD_BYTES)
            note = notes.get((uidvalidity, uid))
            if note is not None and note.get("sha256") not in (None, sha):
                note = None  # the snapshot speaks of other bytes
            keywords = _keywords(info, letters, (note or {}).get("keywords") or [])
            pop3 = uidvalidity == POP3_UIDVALIDITY
            uidl = (note or {}).get("uidl") if pop3 else None
            if not (isinstance(uidl, str) and uid_for_uidl(uidl) == uid):
                uidl = None
            extra: dict[str, Any] = {}
            if pop3:
                extra["flags_known"] = False
                extra["internaldate_source"] = (note or {}).get("internaldate_source")
                extra["sha256_norm"] = norm_hash(path.read_bytes())
            extra.update(summarize(head))
            key = message_key(uidvalidity, uid, uidl)
            out.append(msg_record(
                name, key, path=f"{rel}/{sub}/{fname}", size=size, sha256=sha,
                internaldate=datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(),
                flags=flags_from_info(info), keywords=keywords, **extra, reindexed=True))
            if note is not None and note.get("gone"):
                out.append(gone_record(name, key, "expunged", reindexed=True))
    return out


def rebuild_index(archive: Archive, *, force: bool = False) -> ReindexReport:
    """Rebuild ``archive``'s index from its Maildir files (and snapshot, if any)."""
    if archive.format not in ("maildir", "mbox"):
        raise UsageError(_("{dest} is an archive in {format} format: reindex supports only "
                           "maildir and mbox archives").format(
                           dest=archive.dest, format=archive.format))
    report = ReindexReport()
    archive.acquire_lock()
    try:
        if archive.index_path.exists() and not force and _index_is_sound(archive):
            raise UsageError(_("the index of {dest} reads cleanly: nothing to repair (--force "
                               "rebuilds it anyway, keeping the old one)").format(
                               dest=archive.dest))
        snap = read_snapshot(archive)
        if snap is not None:
            report.snapshot_time = str(snap.get("t"))
        with translate_os_errors(_("rebuilding {path}").format(path=archive.index_path)):
            tmp = archive.index_path.with_name(archive.index_path.name + ".reindex-tmp")
            if tmp.exists():
                tmp.unlink()
            writer = IndexWriter(tmp, 0)
            try:
                _write_records(archive, snap, writer, report)
            finally:
                writer.close()
            if archive.index_path.exists():
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                aside = archive.index_path.with_name(f"{archive.index_path.name}.damaged-{stamp}")
                n = 1
                while aside.exists():
                    n += 1
                    aside = aside.with_name(f"{archive.index_path.name}.damaged-{stamp}-{n}")
                replace(archive.index_path, aside)
                report.moved_aside = aside
            replace(tmp, archive.index_path)
            try:
                os.unlink(archive.folders_path)  # a cache: the next backup re-lists all
            except FileNotFoundError:
                pass
            fsync_dir(archive.meta_dir)
    finally:
        archive.close()
    return report


def _write_records(archive: Archive, snap: Optional[dict[str, Any]], writer: IndexWriter,
                   report: ReindexReport) -> None:
    pending: list[dict[str, Any]] = []

    def emit(recs: list[dict[str, Any]]) -> None:
        pending.extend(recs)
        if len(pending) >= BATCH:
            writer.append(pending)
            pending.clear()

    if archive.format == "mbox":
        from archiver.offline.reindex_mbox import write_mbox_records

        write_mbox_records(archive, snap, emit, report)
    else:
        _write_maildir_records(archive, snap, emit, report)
    if pending:
        writer.append(pending)


def _write_maildir_records(archive: Archive, snap: Optional[dict[str, Any]],
                           emit: Callable[[list[dict[str, Any]]], None],
                           report: ReindexReport) -> None:
    dest = archive.dest
    by_dir = folders_by_dir(snap)
    notes: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    if snap is not None:
        for note in snap.get("messages") or []:
            try:
                notes.setdefault(str(note["folder"]), {})[
                    (int(note["uidvalidity"]), int(note["uid"]))] = note
            except (KeyError, TypeError, ValueError):
                continue
    on_disk = folder_dirs(dest)
    names, taken = name_folders(  # dir -> folder name
        on_disk, by_dir, lambda rel: "/".join(decode_component(c) for c in rel.split("/")))
    # \Noselect folders (plain directories) are known only from the snapshot.
    for rel, frec in by_dir.items():
        if rel not in names and isinstance(frec.get("folder"), str) \
                and dest.joinpath(*rel.split("/")).is_dir():
            names[rel] = frec["folder"]
    report.folders += emit_folders(names, by_dir, emit)
    for rel in on_disk:
        name = names[rel]
        recs = _msg_records(dest, name, rel, notes.get(name, {}), report)
        report.messages += sum(1 for r in recs if r["type"] == "msg")
        emit(recs)
    if snap is not None:
        emit_links(snap, taken, emit)

