"""Keyword letters in Maildir file names, and the ``dovecot-keywords`` file that names them.

Dovecot (and Courier before it) keeps up to 26 IMAP keywords in a Maildir
file name as the lowercase letters ``a``..``z`` after the standard flags
(``…:2,PSab``); a ``dovecot-keywords`` file in the folder's directory says
which keyword each letter is, one ``<index> <keyword>`` line each (``0`` is
``a``).  Writing the letters that way lets Dovecot serve an archive as its
own mail store with the keywords (``$Forwarded`` included: Dovecot ignores
the ``P`` letter, mutt reads only ``P``, so a forwarded message gets both).

Rules (docs/FORMAT.md, "Message files"):

* The index stays the authority for keywords; the letters are a copy for
  other readers (and let ``reindex`` recover keywords without the index).
* A letter, once given in a folder, keeps its meaning for ever: the file is
  read back and only extended.  Letters go to keywords by first use
  (in the order messages are written, a message's keywords sorted).
* At most 26 keywords per folder get a letter; a keyword beyond that stays
  in the index only (the run's notes say so once per folder).
* The file is written durably and atomically *before* any file name uses a
  new letter, so a crash never leaves a letter nobody can read.
* Keywords are matched case-insensitively (IMAP keywords are; Dovecot reads
  the file so): the first spelling seen names the letter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from archiver.durable import atomic_write

KEYWORDS_FILE = "dovecot-keywords"
MAX_LETTERS = 26
FIRST = ord("a")


def letter(index: int) -> str:
    return chr(FIRST + index)


def is_keyword_letter(ch: str) -> bool:
    return "a" <= ch <= "z"


def parse(text: str) -> dict[int, str]:
    """``dovecot-keywords`` text -> {index: keyword}; lines Dovecot would skip are skipped."""
    out: dict[int, str] = {}
    seen: set[str] = set()
    for line in text.splitlines():
        number, sep, name = line.partition(" ")
        if not sep or not number.isdigit() or not name:
            continue
        index = int(number)
        if index >= MAX_LETTERS or index in out or name.lower() in seen:
            continue
        out[index] = name
        seen.add(name.lower())
    return out


def read_letters(folder_dir: Path) -> dict[int, str]:
    """The folder's ``dovecot-keywords`` mapping ({} when there is none)."""
    try:
        return parse((folder_dir / KEYWORDS_FILE).read_text(encoding="utf-8",
                                                            errors="surrogateescape"))
    except FileNotFoundError:
        return {}


def keywords_of(info: str, mapping: dict[int, str]) -> list[str]:
    """Keywords named by the lowercase letters of a file's info part (unmapped ones dropped)."""
    out: list[str] = []
    for ch in info:
        if is_keyword_letter(ch):
            name = mapping.get(ord(ch) - FIRST)
            if name is not None and name not in out:
                out.append(name)
    return out


@dataclass
class FolderLetters:
    """One folder's letters: loaded from its ``dovecot-keywords``, extended, saved first."""

    folder_dir: Path
    by_index: dict[int, str] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)  # lower-cased keyword -> index
    dirty: bool = False
    overflow: list[str] = field(default_factory=list)  # keywords left without a letter
    warned: bool = False
    # letters file names use but the file does not name (it was lost): never given again
    reserved: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, folder_dir: Path, names: Iterable[str] = ()) -> FolderLetters:
        """The folder's letters; ``names`` (its message file names) guard a lost file.

        A letter a file name carries that ``dovecot-keywords`` does not name
        (the file was deleted or is from elsewhere) is reserved, so it is never
        given to another keyword: its old meaning is unknown, not changed.
        """
        mapping = read_letters(folder_dir)
        used = {ord(ch) - FIRST for name in names for ch in _info(name)
                if is_keyword_letter(ch)}
        return cls(folder_dir, mapping, {n.lower(): i for i, n in mapping.items()},
                   reserved=used - set(mapping))

    def assign(self, keywords: Iterable[str]) -> None:
        """Give each keyword not yet known the lowest free letter (none past the 26th)."""
        for kw in sorted(keywords):
            key = kw.lower()
            if key in self.by_name or not kw or any(c in kw for c in " \r\n"):
                continue
            free = next((i for i in range(MAX_LETTERS)
                         if i not in self.by_index and i not in self.reserved), None)
            if free is None:
                if kw not in self.overflow:
                    self.overflow.append(kw)
                continue
            self.by_index[free] = kw
            self.by_name[key] = free
            self.dirty = True

    def letters(self, keywords: Iterable[str]) -> str:
        """The keyword letters of a file name (only keywords already given one)."""
        return "".join(letter(self.by_name[k.lower()]) for k in keywords
                       if k.lower() in self.by_name)

    def save(self) -> None:
        """Write ``dovecot-keywords`` durably and atomically, if a letter was added."""
        if not self.dirty:
            return
        text = "".join(f"{i} {self.by_index[i]}\n" for i in sorted(self.by_index))
        atomic_write(self.folder_dir / KEYWORDS_FILE,
                     text.encode("utf-8", errors="surrogateescape"))
        self.dirty = False

    def take_warning(self) -> list[str]:
        """Keywords beyond 26 to mention in the run's notes (once per folder)."""
        if self.warned or not self.overflow:
            return []
        self.warned = True
        return list(self.overflow)


def _info(name: str) -> str:
    """The info letters after ``:2,`` of a file name ("" if none)."""
    at = name.find(":2,")
    return name[at + 3:] if at >= 0 else ""


def sort_info(info: str) -> str:
    """Maildir wants the info letters in ASCII order: uppercase flags, then keyword letters."""
    return "".join(sorted(set(info)))


def exists(folder_dir: Path) -> bool:
    return os.path.exists(folder_dir / KEYWORDS_FILE)
