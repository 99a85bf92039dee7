"""``archiver verify`` on a pack: every checksum the container holds, then every message.

A pack has three layers of checksums: the index (SHA-256 in the footer), each
frame (SHA-256 of its bytes) and each file (SHA-256).  All are checked, and then
each message the archive's own index records is read back through the pack and
compared with its recorded SHA-256, as ``verify`` does for a directory.
"""

from __future__ import annotations

import hashlib

from archiver.errors import DestinationError
from archiver.offline.verify import CHANGED, MISSING, Check, VerifyReport
from archiver.pack.view import PackedArchive, PackStore


def verify_pack(archive: PackedArchive, report: VerifyReport) -> None:
    """Add what is wrong with the pack's files and messages to ``report``."""
    reader = archive.reader
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
    for folder in archive.state().folders.values():
        for entry in folder.messages.values():
            if not entry.counted or not entry.sha256:
                continue
            label = (f"{entry.path} @{entry.offset}" if archive.format == "mbox"
                     else entry.path)
            if archive.format != "mbox":
                path = store.locate(entry)
                if path in bad_files:
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
            ok = len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
            report.add(entry, Check(None if ok else CHANGED, label, size=len(data)))
