"""``--folder``, ``--exclude`` and ``--map`` checked against the folders that exist.

A ``--folder Sent`` on a server whose folder is ``送信済み`` used to select
nothing and end "0 folders, 0 new messages" with exit 0 -- a silent
success, and DEST tied to the account.  Now an include or map pattern that
matches no folder is an error (exit 2, before DEST is created) naming the
nearest folders: by SPECIAL-USE first (``Sent`` -> ``送信済み (\\Sent)``),
then by well-known names in either language, then by spelling (difflib on
the decoded names).  An ``--exclude`` that matches nothing only earns a note.

Pure: the callers hand over the folder names (the server's for backup and
migrate, the archive's for restore).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from archiver.errors import UsageError
from archiver.i18n import _
from archiver.plan import folder_selected
from archiver.sources.base import special_use_of

# Well-known names of special folders, lower case (what a user types for one).
ROLE_NAMES = {
    "\\Sent": ("sent", "sent items", "sent messages", "sent mail", "送信済み", "送信済みメール",
               "送信箱"),
    "\\Drafts": ("drafts", "draft", "下書き"),
    "\\Trash": ("trash", "deleted items", "deleted messages", "ゴミ箱", "ごみ箱"),
    "\\Junk": ("junk", "spam", "junk e-mail", "junk mail", "迷惑メール"),
    "\\Archive": ("archive", "archives", "アーカイブ"),
}


@dataclass(frozen=True)
class Candidate:
    """A folder a pattern may have meant."""

    name: str  # decoded, '/'-separated (what the patterns match)
    special_use: Optional[str] = None
    server_name: Optional[str] = None

    def label(self) -> str:
        extra = [s for s in (self.server_name if self.server_name not in (None, self.name)
                             else None, self.special_use) if s]
        return f"{self.name} ({', '.join(extra)})" if extra else self.name


def role_named(name: str) -> Optional[str]:
    """The special use a folder name stands for (``Sent``, ``送信済み`` -> ``\\Sent``)."""
    low = name.strip("/").lower()
    for role, names in ROLE_NAMES.items():
        if low in names or low == role[1:].lower():
            return role
    return None


def nearest(pattern: str, folders: Sequence[Candidate], n: int = 3) -> list[Candidate]:
    """The folders ``pattern`` most likely meant, best first."""
    out: list[Candidate] = []

    def add(c: Candidate) -> None:
        if c not in out:
            out.append(c)

    last = pattern.strip("/").split("/")[-1]
    role = role_named(last)
    if role is not None:
        for c in folders:
            if c.special_use == role:
                add(c)
        for c in folders:
            if role_named(c.name.split("/")[-1]) == role:
                add(c)
    for c in folders:
        if c.name.lower() == pattern.lower():
            add(c)
    by_lower = {c.name.lower(): c for c in folders}
    for name in difflib.get_close_matches(pattern.lower(), list(by_lower), n=n, cutoff=0.5):
        add(by_lower[name])
    parts = pattern.strip("/").split("/")
    for i in range(len(parts) - 1, 0, -1):  # the pattern's parent exists, its child not
        parent = by_lower.get("/".join(parts[:i]).lower())
        if parent is not None:
            add(parent)
    for name in difflib.get_close_matches(last, [c.name.split("/")[-1] for c in folders],
                                          n=n, cutoff=0.5):
        for c in folders:
            if c.name.split("/")[-1] == name:
                add(c)
    return out[:n]


def matches_map(old: str, name: str) -> bool:
    """Does ``--map OLD=…`` apply to folder ``name`` (it or a child)?  The rule of
    archiver.restore.mapping: whole components, from the top."""
    src = tuple(old.strip("/").split("/"))
    return tuple(name.split("/"))[:len(src)] == src


def check_patterns(folders: Sequence[Candidate], include: Sequence[str] = (),
                   exclude: Sequence[str] = (), maps: Sequence[str] = (),
                   where: str = "server", listing_hint: str = "") -> list[str]:
    """Raise UsageError for the first include or map pattern that matches no folder;
    return the notes for exclude patterns that match none.

    ``maps`` are the OLD sides of ``--map OLD=NEW``; ``where`` says whose folders
    they are ("server" or "archive"); ``listing_hint`` is the command that lists
    them all (added to the message).
    """
    names = [c.name for c in folders]
    for pattern in include:
        if not any(folder_selected(n, [pattern], []) for n in names):
            raise UsageError(_unmatched("--folder", pattern, folders, where, listing_hint))
    for old in maps:
        if not any(matches_map(old, n) for n in names):
            raise UsageError(_unmatched("--map", old, folders, where, listing_hint))
    notes = []
    for pattern in exclude:
        if not any(folder_selected(n, [], [pattern]) is False for n in names):
            notes.append(_("--exclude '{pattern}' matches no folder on the {where}: "
                           "nothing was left out by it").format(pattern=pattern,
                                                                 where=_where(where)))
    return notes


def check_archived(archive: Any, include: Sequence[str], exclude: Sequence[str],
                   maps: Sequence[tuple[str, str]], listing_hint: str = "") -> list[str]:
    """:func:`check_patterns` against an archive's folders (restore: ``--folder``,
    ``--exclude`` and ``--map`` OLD name archived folders)."""
    if not (include or exclude or maps):
        return []
    folders = [Candidate(e.name, special_use_of(e.attributes), e.server_name)
               for e in archive.state().folders.values()]
    return check_patterns(folders, include, exclude, [old for old, _new in maps],
                          where="archive", listing_hint=listing_hint)


def _where(where: str) -> str:
    return _("archive") if where == "archive" else _("server")


def _unmatched(option: str, pattern: str, folders: Sequence[Candidate], where: str,
               hint: str) -> str:
    near = nearest(pattern, folders)
    if near:
        listed = _("nearest: {names}").format(names=", ".join(c.label() for c in near))
    elif folders:
        listed = _("its folders: {names}").format(
            names=", ".join(c.label() for c in folders[:8]) + (", …" if len(folders) > 8
                                                               else ""))
    else:
        listed = _("it has no folders")
    text = _("{option} '{pattern}' matches no folder on the {where} ({listed})").format(
        option=option, pattern=pattern, where=_where(where), listed=listed)
    if hint:
        text = _("{text}; '{command}' lists them all").format(text=text, command=hint)
    return text
