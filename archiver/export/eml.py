"""One ``.eml`` file per message: ``OUT/<folder path>/<YYYY-MM-DD HHMM> <subject>.eml``.

The date is the INTERNALDATE in this computer's time zone (what a mail
program shows as "received") -- the file's mtime too.  Names are safe on Windows and macOS (no
``<>:"/\\|?*``, no control characters, no trailing dot or space, at most 150
characters and 240 UTF-8 bytes); names equal up to case or Unicode
normalisation get `` (2)``, `` (3)``, ...  The bytes are the archived message, exactly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from archiver.export.common import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    FolderJob,
    NameSpace,
    make_dirs,
    received,
    safe_name,
    tree_names,
    write_message_file,
)
from archiver.export.framing import Message
from archiver.offline.catalog import Item

EXT = ".eml"


def eml_base(item: Item) -> str:
    """``YYYY-MM-DD HHMM subject`` made safe, leaving room for `` (n).eml``."""
    when = received(item)
    stamp = when.astimezone().strftime("%Y-%m-%d %H%M") if when is not None \
        else "0000-00-00 0000"
    subject = re.sub(r"\s+", " ", item.text("subject")).strip() or "(no subject)"
    room = MAX_NAME_CHARS - len(EXT) - 6  # " (999)"
    return safe_name(f"{stamp} {subject}", max_chars=room,
                     max_bytes=MAX_NAME_BYTES - len(EXT) - 6)


class EmlWriter:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.dirs: dict[str, Path] = {}
        self.current = out
        self.names = NameSpace()

    def folders(self, jobs: list[FolderJob]) -> None:
        names = tree_names(jobs)
        for job in jobs:
            d = self.out.joinpath(*names[job.name])
            make_dirs(d)
            self.dirs[job.name] = d

    def begin(self, job: FolderJob) -> None:
        self.current = self.dirs[job.name]
        self.names = NameSpace()
        # child folders are directories here: a message may not take their names
        for child in os.listdir(self.current):
            self.names.claim(child)

    def add(self, item: Item, msg: Message) -> None:
        name = self.names.claim(eml_base(item), EXT)
        write_message_file(self.current / name, msg, received(item))

    def end(self) -> None:
        pass
