"""Thunderbird "Local Folders" tree: one extension-less mbox file per folder.

Folder ``A/B`` is ``OUT/A.sbd/B``; a folder with children has both ``A`` (its
messages, maybe empty) and ``A.sbd/``.  Each message is written as
Thunderbird writes it: ``From - <asctime UTC>`` then ``X-Mozilla-Status``
(Read 0x0001, Replied 0x0002, Marked 0x0004, Forwarded 0x1000; never
Expunged 0x0008 -- a message with ``\\Deleted`` is exported as a normal
one), ``X-Mozilla-Status2: 00000000`` and ``X-Mozilla-Keys`` (the keywords,
padded to 80 characters so Thunderbird can rewrite them in place) at the top
of the header, then the message mboxrd-quoted.  No ``.msf`` files:
Thunderbird builds them on first open.

``--to thunderbird`` itself is written by :mod:`archiver.export.install`
(the tree wrapped in one folder, appended to by reruns) with these headers;
:class:`ThunderbirdWriter` writes the plain tree the ``mbox`` form builds on.
"""

from __future__ import annotations

from pathlib import Path

from archiver.export.common import (
    FolderFiles,
    FolderJob,
    asctime_utc,
    make_dirs,
    received,
    touch,
    tree_names,
)
from archiver.export.framing import Message, write_mbox_entry
from archiver.offline.catalog import Item

READ, REPLIED, MARKED, FORWARDED = 0x0001, 0x0002, 0x0004, 0x1000
KEYS_WIDTH = 80


def mozilla_status(flags: tuple[str, ...], keywords: tuple[str, ...]) -> int:
    status = 0
    if "\\Seen" in flags:
        status |= READ
    if "\\Answered" in flags:
        status |= REPLIED
    if "\\Flagged" in flags:
        status |= MARKED
    if "$Forwarded" in keywords:
        status |= FORWARDED
    return status


def mozilla_headers(flags: tuple[str, ...], keywords: tuple[str, ...]) -> list[str]:
    keys = " ".join(k for k in keywords if k != "$Forwarded" and k.isprintable() and " " not in k)
    return [f"X-Mozilla-Status: {mozilla_status(flags, keywords):04x}",
            "X-Mozilla-Status2: 00000000",
            f"X-Mozilla-Keys: {keys:<{KEYS_WIDTH}}"]


def folder_file(out: Path, components: list[str]) -> Path:
    return out.joinpath(*[c + ".sbd" for c in components[:-1]], components[-1])


class ThunderbirdWriter:
    from_style = "thunderbird"

    def __init__(self, out: Path) -> None:
        self.out = out
        self.paths: dict[str, Path] = {}
        self.files = FolderFiles()

    def folders(self, jobs: list[FolderJob]) -> None:
        names = tree_names(jobs, reserve=[".sbd", ".msf"])
        for job in jobs:
            path = folder_file(self.out, names[job.name])
            make_dirs(path.parent)
            touch(path)  # every folder has its file, even with no messages
            self.paths[job.name] = path

    def begin(self, job: FolderJob) -> None:
        self.files.open(self.paths[job.name])

    def add(self, item: Item, msg: Message) -> None:
        e = item.entry
        with self.files.entry():
            write_mbox_entry(self.files.write, f"From - {asctime_utc(received(item))}", msg,
                             mozilla_headers(e.flags, e.keywords))

    def end(self) -> None:
        self.files.close()
