"""How an archive names its message files, decided once when DEST is created.

A Maildir file name carries its flags after an *info separator*: ``:2,`` by
the Maildir specification, which Dovecot, mutt and notmuch read.  Windows
(Win32 names: NTFS, and ntfs-3g's ``windows_names``) and exFAT refuse ``:``
in a file name, so there the separator is ``;2,`` -- the value mbsync's
``InfoDelimiter`` takes on such systems.  A new DEST is probed once, with
temporary files inside ``DEST/.archiver`` (can it hold ``:``?  is it
case-insensitive?  how long may a name be?), and the answer is recorded in
``archive.json`` as ``"naming"`` (docs/FORMAT.md, "Message files"), so an
archive keeps one scheme for ever even when it is later copied elsewhere.
An archive whose ``archive.json`` has no ``naming`` (written before this
existed) keeps ``:``.  ``--portable-names`` records ``;`` anywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver import platform

COLON = ":"
PORTABLE = ";"
DELIMITERS = (COLON, PORTABLE)


@dataclass(frozen=True)
class Naming:
    """The archive's file-naming facts (the ``naming`` object of ``archive.json``)."""

    delimiter: str = COLON  # between the base name and "2,<info>"
    case_insensitive: bool = False
    name_max: int = platform.DEFAULT_NAME_MAX
    why: str = "legacy"  # probed | portable | windows | legacy (no naming field)

    @property
    def info_sep(self) -> str:
        return self.delimiter + "2,"

    def to_json(self) -> dict[str, Any]:
        return {"info_delimiter": self.delimiter, "case_insensitive": self.case_insensitive,
                "name_max": self.name_max, "why": self.why}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Naming:
        """The naming ``archive.json`` recorded; an archive without one keeps ``:``."""
        raw = meta.get("naming")
        if not isinstance(raw, dict):
            return LEGACY
        delimiter = raw.get("info_delimiter")
        name_max = raw.get("name_max")
        return cls(delimiter=delimiter if delimiter in DELIMITERS else COLON,
                   case_insensitive=bool(raw.get("case_insensitive", False)),
                   name_max=name_max if isinstance(name_max, int) and name_max > 0
                   else platform.DEFAULT_NAME_MAX,
                   why=str(raw.get("why", "probed")))


LEGACY = Naming()


def probe(directory: Path, portable: bool = False) -> Naming:
    """Probe ``directory`` (an empty directory on DEST's file system) for its naming.

    Temporary files only; none is left behind.  ``portable`` asks for ``;``
    whatever the file system takes (an archive that will be copied to a stick).
    """
    stem = f".naming-probe-{os.getpid()}"
    insensitive = platform.case_insensitive(directory, stem)
    name_max = platform.name_max(directory)
    if portable:
        return Naming(PORTABLE, insensitive, name_max, "portable")
    if platform.WINDOWS:  # pragma: no cover - a probe there would make a stream
        return Naming(PORTABLE, insensitive, name_max, "windows")
    colon = platform.holds_colon(directory, stem)
    return Naming(COLON if colon else PORTABLE, insensitive, name_max, "probed")


def read_naming(dest: Path) -> Naming:
    """The naming of the archive at ``dest`` (:data:`LEGACY` when there is none to read)."""
    try:
        meta = json.loads((dest / ".archiver" / "archive.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return LEGACY
    return Naming.from_meta(meta) if isinstance(meta, dict) else LEGACY
