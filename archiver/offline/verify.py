"""``archiver verify``: re-hash every archived message against the index.

Reports files that are missing, changed (hash differs) or extra (a message
file the index does not know; files mail programs and desktops put beside
mail, :mod:`archiver.sidefiles`, are not extra).  Read-only: it never repairs.  A backup does not
either (the index says those messages are archived); ``verify --repair``
(archiver/repair.py) fetches them again, using :func:`check_message` and the
report's ``damaged`` list.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from archiver.archive import Archive
from archiver.fsutil import hash_file
from archiver.i18n import _
from archiver.sidefiles import is_side_file
from archiver.state import MessageEntry

MISSING = "missing"
CHANGED = "changed"


@dataclass(frozen=True)
class Damage:
    """One message whose archived bytes are not what the index recorded."""

    entry: MessageEntry
    problem: str  # MISSING or CHANGED
    label: str  # how the report lists it: the path (mbox: ``path @offset``)


@dataclass(frozen=True)
class Check:
    """The outcome of re-reading one message: ``problem`` is None when it is intact."""

    problem: Optional[str]
    label: str
    detail: str = ""  # why it could not be read, if so
    size: int = 0  # bytes read
    found_as: str = ""  # Maildir: the file read, when not the recorded name (relative path)

    @property
    def text(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label


def check_message(archive: Archive, entry: MessageEntry) -> Check:
    """Re-read one archived message and compare it with its index record."""
    if archive.format == "mbox":
        from archiver.stores.mbox import MboxStore

        label = f"{entry.path} @{entry.offset}"
        try:
            data = MboxStore(archive.dest).read_message(entry)
        except (OSError, ValueError) as exc:
            return Check(MISSING, label, str(exc))
        ok = len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
        return Check(None if ok else CHANGED, label, size=len(data))
    from archiver.stores.maildir import MaildirStore

    path = os.path.join(archive.dest, *entry.path.split("/"))  # str: pathlib costs per file
    found_as = ""
    try:
        try:
            digest, size, _ = hash_file(path)
        except FileNotFoundError:  # by base name: a crash between a rename and its record
            located = MaildirStore(archive.dest, naming=archive.naming).locate(entry)
            digest, size, _ = hash_file(located)
            found_as = located.relative_to(archive.dest).as_posix()
    except FileNotFoundError:
        return Check(MISSING, entry.path)
    except OSError as exc:
        return Check(MISSING, entry.path, str(exc.strerror))
    return Check(None if digest == entry.sha256 else CHANGED, entry.path, size=size,
                 found_as=found_as)


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    index_problems: list[str] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)  # the missing and changed messages

    def add(self, entry: MessageEntry, check: Check) -> None:
        self.checked += 1
        self.bytes += check.size
        if check.problem is not None:
            (self.missing if check.problem == MISSING else self.changed).append(check.text)
            self.damaged.append(Damage(entry, check.problem, check.label))

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra or self.index_problems)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checked": self.checked, "bytes": self.bytes,
                "missing": self.missing, "changed": self.changed, "extra": self.extra,
                "index_problems": self.index_problems}


def _message_files(root: Path, folder_path: str) -> Iterator[str]:
    base = root.joinpath(*folder_path.split("/"))
    for sub in ("cur", "new"):
        try:
            names = os.listdir(base / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if not is_side_file(name):
                yield f"{folder_path}/{sub}/{name}"


def verify_archive(archive: Archive) -> VerifyReport:
    report = VerifyReport()
    archive.state()  # reads the index, noting a torn tail
    if archive.torn_tail:
        report.index_problems.append(
            _("the index ends with an incomplete frame (an interrupted run); rerun the backup "
            "to repair it"))
    note = archive.skipped_note()
    if note:
        report.index_problems.append(note)
    own_check = getattr(archive, "verify_stored", None)  # a pack checks its own way
    if own_check is not None:
        own_check(report)
    elif archive.format == "mbox":
        _verify_mbox(archive, report)
        _unknown_folders(archive, report)
    else:
        _verify_maildir(archive, report)
        _unknown_folders(archive, report)
    report.missing.sort()
    report.changed.sort()
    report.extra.sort()
    return report


def _verify_maildir(archive: Archive, report: VerifyReport) -> None:
    state = archive.state()
    expected: set[str] = set()
    for entry in state.messages():
        if not entry.counted:
            continue  # a POP3 sight linked to the IMAP copy, checked with it
        check = check_message(archive, entry)
        expected.add(check.found_as or entry.path)  # a newer name is not an extra file
        report.add(entry, check)
    for folder in state.folders.values():
        for rel in _message_files(archive.dest, folder.path):
            if rel not in expected:
                report.extra.append(rel)


def _unknown_folders(archive: Archive, report: VerifyReport) -> None:
    """Mail in places the index does not know (e.g. a crash before a folder's first frame)."""
    known = {f.path for f in archive.state().folders.values()}
    for dirpath, dirnames, filenames in os.walk(archive.dest):
        rel = os.path.relpath(dirpath, archive.dest).replace(os.sep, "/")
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != ".archiver"]
            rel = ""
        if archive.format == "mbox":
            for name in filenames:
                path = f"{rel}/{name}" if rel else name
                if (path not in known and not is_side_file(name)
                        and os.path.getsize(os.path.join(dirpath, name)) > 0):
                    report.extra.append(_("{path}: an mbox file the index does not know").format(
                                          path=path))
        elif os.path.basename(rel) in ("cur", "new") and os.path.dirname(rel) not in known:
            report.extra.extend(f"{rel}/{name}" for name in filenames if not is_side_file(name))


def _verify_mbox(archive: Archive, report: VerifyReport) -> None:
    from archiver.stores.mbox import MboxStore

    store = MboxStore(archive.dest)
    state = archive.state()
    for folder in state.folders.values():
        entries = [e for e in folder.messages.values() if e.counted]
        for entry in entries:
            report.add(entry, check_message(archive, entry))
        file = archive.dest.joinpath(*folder.path.split("/"))
        if entries and file.is_file():
            extra = file.stat().st_size - store.recorded_end(folder.path, entries)
            if extra > 0:
                report.extra.append(_("{path}: {extra} bytes after the last recorded message "
                                      "(rerun the backup to cut them)").format(
                                      path=folder.path, extra=extra))
