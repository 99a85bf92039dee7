"""``archiver verify``: re-hash every archived message against the index.

Reports files that are missing, changed (hash differs) or extra (a message
file the index does not know).  Read-only: it never repairs; rerunning the
backup does (a missing message is fetched again while it is on the server).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archiver.archive import Archive
from archiver.fsutil import hash_file


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    index_problems: list[str] = field(default_factory=list)

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
            yield f"{folder_path}/{sub}/{name}"


def verify_archive(archive: Archive) -> VerifyReport:
    report = VerifyReport()
    archive.state()  # reads the index, noting a torn tail
    if archive.torn_tail:
        report.index_problems.append(
            "the index ends with an incomplete frame (an interrupted run); rerun the backup "
            "to repair it")
    note = archive.skipped_note()
    if note:
        report.index_problems.append(note)
    if archive.format == "mbox":
        _verify_mbox(archive, report)
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
        expected.add(entry.path)
        path = archive.dest.joinpath(*entry.path.split("/"))
        report.checked += 1
        try:
            digest, size, _ = hash_file(path)
        except FileNotFoundError:
            report.missing.append(entry.path)
            continue
        except OSError as exc:
            report.missing.append(f"{entry.path} ({exc.strerror})")
            continue
        report.bytes += size
        if digest != entry.sha256:
            report.changed.append(entry.path)
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
                if path not in known and os.path.getsize(os.path.join(dirpath, name)) > 0:
                    report.extra.append(f"{path}: an mbox file the index does not know")
        elif os.path.basename(rel) in ("cur", "new") and os.path.dirname(rel) not in known:
            for name in filenames:
                report.extra.append(f"{rel}/{name}")


def _verify_mbox(archive: Archive, report: VerifyReport) -> None:
    from archiver.stores.mbox import MboxStore

    store = MboxStore(archive.dest)
    state = archive.state()
    for folder in state.folders.values():
        entries = [e for e in folder.messages.values() if e.counted]
        for entry in entries:
            label = f"{entry.path} @{entry.offset}"
            report.checked += 1
            try:
                data = store.read_message(entry)
            except (OSError, ValueError) as exc:
                report.missing.append(f"{label} ({exc})")
                continue
            report.bytes += len(data)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                report.changed.append(label)
        file = archive.dest.joinpath(*folder.path.split("/"))
        if entries and file.is_file():
            extra = file.stat().st_size - store.recorded_end(folder.path, entries)
            if extra > 0:
                report.extra.append(f"{folder.path}: {extra} bytes after the last recorded "
                                    "message (rerun the backup to cut them)")
