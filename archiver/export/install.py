"""``--to thunderbird``: the archive as one wrapped folder of a "Local Folders" tree.

Everything goes under one top-level folder (``--name``, default
``old-mail (USER)``): ``ROOT/<name>`` (an empty mbox file) and
``ROOT/<name>.sbd/`` holding the tree :mod:`archiver.export.thunderbird`
describes.  So the export never clashes with Thunderbird's own ``Inbox``,
``Trash`` or ``Sent``: used directly as Local Folders, an unwrapped ``INBOX``
file would lose to Thunderbird's ``Inbox`` (it showed 0 of 60 messages).

ROOT is OUT (new or empty), or a profile's Local Folders directory
(:mod:`archiver.export.profile`), where a rerun adds only what is new.  What
was exported is recorded in ``<name>.sbd/.archiver-export.jsonl`` (a dot-file:
Thunderbird ignores it), one JSON line each:

* ``{"t": "folder", "folder": F, "path": [...]}`` -- F's file, relative to
  the wrapper's ``.sbd`` (kept, so a later run never renames a folder);
* ``{"t": "begin", "folder": F, "offset": N}`` -- messages are about to be
  appended to F's file, which was N bytes long;
* ``{"t": "done", "folder": F, "shas": [...]}`` -- they were, and are durable.

Messages are known by identity (their sha256, counted per folder, so two
identical messages are two), never by offset: Thunderbird compacts mbox
files.  A message the user deleted in Thunderbird is therefore *not* added
again by a rerun.  The order makes a killed run harmless: ``begin`` is
durable before the first byte is appended; the file is fsynced, its ``.msf``
(Thunderbird's summary, stale now) removed, then ``done`` recorded.  A rerun
that finds a ``begin`` without its ``done`` cuts the file back to N bytes
(the torn or unrecorded messages go) and appends them again: no duplicate,
no torn message.  (If Thunderbird compacted the file below N in between, it
is left alone.)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

from archiver import durable, platform
from archiver.archive import Archive
from archiver.export.common import (
    FolderJob,
    asctime_utc,
    fold,
    received,
    safe_name,
    tree_names,
)
from archiver.export.framing import Message, Unreadable, write_mbox_entry
from archiver.export.plan import ExportReport, plan
from archiver.export.thunderbird import folder_file, mozilla_headers
from archiver.fsutil import hold_lock, translate_os_errors
from archiver.i18n import _
from archiver.offline.catalog import Item

RECORD = ".archiver-export.jsonl"
RESERVED = (".sbd", ".msf")


def default_name(archive: Archive) -> str:
    user = str((archive.meta.get("source") or {}).get("user") or "").strip()
    return f"old-mail ({user})" if user else "old-mail"


@dataclass
class InstallReport(ExportReport):
    already: int = 0  # messages a former run exported (or the user deleted since)
    repaired: list[str] = field(default_factory=list)  # folders cut back after a killed run
    wrapper: Optional[Path] = None
    profile: Optional[Path] = None  # into_profile: the Thunderbird profile written into
    added_local_folders: Optional[Path] = None  # into_profile: Local Folders made for it


@dataclass
class Record:
    """What former runs exported: folder paths, shas per folder, unfinished appends."""

    paths: dict[str, list[str]] = field(default_factory=dict)
    shas: dict[str, Counter[str]] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Record:
        rec = cls()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return rec
        for line in data.split(b"\n"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed run
            if not isinstance(obj, dict) or not isinstance(obj.get("folder"), str):
                continue
            name = obj["folder"]
            if obj.get("t") == "folder" and isinstance(obj.get("path"), list):
                rec.paths[name] = [str(p) for p in obj["path"]]
            elif obj.get("t") == "begin" and isinstance(obj.get("offset"), int):
                rec.pending[name] = obj["offset"]
            elif obj.get("t") == "done":
                rec.pending.pop(name, None)
                rec.shas.setdefault(name, Counter()).update(
                    s for s in obj.get("shas", ()) if isinstance(s, str))
        return rec


class Journal:
    """The record file, locked (one export at a time) and appended line by line, fsynced."""

    def __init__(self, path: Path) -> None:
        fresh = not path.exists()
        self.fh: IO[bytes] = hold_lock(path, _("another archiver export is writing into "
                                                "{path}: wait for it to finish").format(
                                                path=path.parent))
        if fresh:
            durable.fsync_dir(path.parent)
        size = self.fh.seek(0, os.SEEK_END)
        if size:  # a torn last line: cut back to the last whole one
            with open(path, "rb") as fh:
                data = fh.read()
            whole = data.rfind(b"\n") + 1
            if whole != size:
                durable.truncate_durably(path, whole)

    def add(self, **rec: Any) -> None:
        self.fh.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
        self.fh.flush()
        durable.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def install(archive: Archive, root: Path, name: str) -> InstallReport:
    """Export ``archive`` into ``root/<name>`` + ``root/<name>.sbd``, adding only what no
    former run there exported."""
    name = safe_name(name)  # a user name or --name may hold '/', ':' ...
    report = InstallReport(wrapper=root / name)
    jobs = plan(archive, "thunderbird")
    from archiver.stores import open_store

    with translate_os_errors(_("writing into {path}").format(path=root)):
        box = root / f"{name}.sbd"
        created = [d for d in (root, box) if not d.exists()]
        box.mkdir(mode=platform.DIR_MODE, parents=True, exist_ok=True)
        _touch(root / name)
        journal = Journal(box / RECORD)
        store = open_store(archive.dest, archive.format)
        try:
            record = Record.read(box / RECORD)
            _repair(box, record, journal, report)
            paths = _paths(jobs, record, box, journal)
            for job in jobs:
                report.folders += 1
                _append(job, folder_file(box, paths[job.name]), record, journal, store, report)
        finally:
            store.close()
            journal.close()
        durable.fsync_parents(created)
        durable.fsync_dir(root)
    return report


def into_profile(archive: Archive, choice: Optional[str], name: Optional[str]) -> InstallReport:
    """Install into a Thunderbird profile's Local Folders (``export DEST --to thunderbird``
    without OUT; the web page's "Open in Thunderbird"): the profile found (``choice``:
    ``--profile``, None: the default one), checked (no Maildir store, Thunderbird
    closed, held closed while we write), given Local Folders if it had none, then
    written (a rerun adds only new messages)."""
    from archiver.export.profile import (
        add_local_folders,
        find_profile,
        local_folders,
        thunderbird_kept_out,
    )

    prof = find_profile(choice)
    with thunderbird_kept_out(prof.path):
        lf = local_folders(prof.path)
        added = None
        if not lf.configured:
            add_local_folders(prof.path)
            added = lf.path
        report = install(archive, lf.path, name or default_name(archive))
    report.profile = prof.path
    report.added_local_folders = added
    return report


def _touch(path: Path) -> bool:
    if path.exists():
        return False
    durable.create_empty(path)
    return True


def _repair(box: Path, record: Record, journal: Journal, report: InstallReport) -> None:
    """Cut back each file a killed run was appending to (see the module's docstring)."""
    for name, offset in sorted(record.pending.items()):
        path = folder_file(box, record.paths.get(name, [name]))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > offset:
            durable.truncate_durably(path, offset)
            _drop_summary(path)
            report.repaired.append(name)
        journal.add(t="done", folder=name, shas=[])
    record.pending.clear()


def _paths(jobs: list[FolderJob], record: Record, box: Path,
           journal: Journal) -> dict[str, list[str]]:
    """Each folder's path under the wrapper: the recorded one, else a new unique name
    (every folder gets its file, parents and empty ones too)."""
    fresh = tree_names(jobs, reserve=RESERVED)
    taken = {tuple(fold(c) for c in p) for p in record.paths.values()}
    out: dict[str, list[str]] = {}
    for job in jobs:
        path = record.paths.get(job.name)
        if path is None:
            parent = job.components[:-1]
            base = [*out.get("/".join(parent), []), *fresh[job.name][-1:]] if parent \
                else fresh[job.name]
            path, n = base, 1
            # not a recorded folder, nor one the user made in Thunderbird meanwhile
            while tuple(fold(c) for c in path) in taken or folder_file(box, path).exists():
                n += 1
                path = [*base[:-1], f"{base[-1]} ({n})"]
            journal.add(t="folder", folder=job.name, path=path)  # recorded, then made
            record.paths[job.name] = path
        taken.add(tuple(fold(c) for c in path))
        out[job.name] = path
        file = folder_file(box, path)
        created = [p for p in file.parents if p != box and box in p.parents and not p.exists()]
        file.parent.mkdir(mode=platform.DIR_MODE, parents=True, exist_ok=True)
        durable.fsync_parents(created)
        _touch(file)
    return out


def _new_items(job: FolderJob, record: Record, report: InstallReport) -> list[Item]:
    seen = Counter(record.shas.get(job.name, Counter()))
    new = []
    for item in job.items:
        if seen[item.entry.sha256] > 0:
            seen[item.entry.sha256] -= 1
            report.already += 1
        else:
            new.append(item)
    return new


def _append(job: FolderJob, path: Path, record: Record, journal: Journal, store: Any,
            report: InstallReport) -> None:
    """Append ``job``'s new messages to ``path``: begin, append + fsync, drop .msf, done."""
    items = _new_items(job, record, report)
    if not items:
        return
    done: list[str] = []
    with open(path, "r+b", buffering=1 << 20, opener=_no_follow) as fh:
        offset = fh.seek(0, os.SEEK_END)
        journal.add(t="begin", folder=job.name, offset=offset)
        if offset:
            fh.seek(offset - 1)
            if fh.read(1) != b"\n":
                fh.write(b"\n")

        def write(data: bytes) -> None:
            fh.write(data)

        for item in items:
            start = fh.tell()
            try:
                msg = Message.archived(store, item.entry)
                write_mbox_entry(write, f"From - {asctime_utc(received(item))}", msg,
                                 mozilla_headers(item.entry.flags, item.entry.keywords))
            except Unreadable as exc:
                fh.flush()
                fh.truncate(start)
                fh.seek(start)
                report.problems.append(_("{folder}: message {id} ({path}) unreadable: "
                                         "{exc}").format(folder=item.folder, id=item.id,
                                                         path=item.entry.path, exc=exc))
                continue
            done.append(item.entry.sha256)
            report.messages += 1
            report.bytes += msg.copied
        fh.flush()
        durable.fsync(fh.fileno())
    _drop_summary(path)
    journal.add(t="done", folder=job.name, shas=done)
    record.shas.setdefault(job.name, Counter()).update(done)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, platform.file_flags(flags & ~os.O_CREAT & ~os.O_TRUNC))


def _drop_summary(path: Path) -> None:
    """Remove the folder's ``.msf``: Thunderbird rebuilds it from the mbox file."""
    msf = path.with_name(path.name + ".msf")
    try:
        msf.unlink()
    except FileNotFoundError:
        return
    durable.fsync_dir(path.parent)
