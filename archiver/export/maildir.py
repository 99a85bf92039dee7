"""A plain Maildir tree: the archive's own layout, byte-exact, flags in the file names.

Folder paths follow the archive's rule (:func:`archiver.names.assign_path`),
file names are ``<uidvalidity>.<uid>.archiver:2,<info>`` with the standard
info letters (``;2,`` where OUT's file system refuses ``:``, or with
``--portable-names``: :mod:`archiver.naming`), the mtime is the INTERNALDATE.  Keywords are
Dovecot's letters ``a``..``z`` named by each folder's ``dovecot-keywords``
(:mod:`archiver.stores.maildir_keywords`; past a folder's 26th keyword, or with
``;2,`` names, not exported).
"""

from __future__ import annotations

from pathlib import Path

from archiver.export.common import FolderJob, make_dirs, received, write_message_file
from archiver.export.framing import Message
from archiver.names import assign_path
from archiver.offline.catalog import Item
from archiver.stores.maildir import file_name
from archiver.stores.maildir_keywords import FolderLetters


class MaildirWriter:
    def __init__(self, out: Path, delimiter: str = ":") -> None:
        self.out = out
        self.delimiter = delimiter
        self.dirs: dict[str, Path] = {}
        self.current: Path = out
        self.letters: FolderLetters | None = None

    def folders(self, jobs: list[FolderJob]) -> None:
        taken: set[str] = set()
        for job in jobs:
            rel = assign_path(job.components, taken)
            taken.add(rel)
            d = self.out.joinpath(*rel.split("/"))
            self.dirs[job.name] = d
            make_dirs(d)
            if job.selectable:
                for sub in ("cur", "new", "tmp"):
                    make_dirs(d / sub)

    def begin(self, job: FolderJob) -> None:
        self.current = self.dirs[job.name] / "cur"
        # no letters with ";2," names (see MaildirStore.letters)
        self.letters = FolderLetters.load(self.dirs[job.name]) if self.delimiter == ":" else None
        if not self.current.is_dir():  # messages in a folder known only as a parent
            for sub in ("cur", "new", "tmp"):
                make_dirs(self.dirs[job.name] / sub)

    def add(self, item: Item, msg: Message) -> None:
        e = item.entry
        if self.letters is not None:
            self.letters.assign(e.keywords)
            self.letters.save()  # before a file name uses the letter
        write_message_file(self.current / file_name(e.uidvalidity, e.uid, e.flags, e.keywords,
                                                     self.delimiter, self.letters),
                           msg, received(item))

    def end(self) -> None:
        pass
