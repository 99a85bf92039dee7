"""IMAP namespaces (RFC 2342): whose folder a name is, and its logical name in the archive.

A server's NAMESPACE answer has three parts: the user's own (personal)
folders, other users' folders shared with the user (Cyrus ``Other Users.``,
Dovecot ``shared/``), and shared folders (Cyrus ``Shared Folders.``, Dovecot
``public/``).  Only personal folders are the user's to back up and to create
on a restore target; the others are archived only when asked
(``--all-namespaces``), under a first component that no personal folder of a
normal account has (``#other``, ``#shared``), and never restored.

Everything here is pure (no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

from archiver.i18n import _, ngettext
from archiver.names import logical_name
from archiver.sources.base import Folder

PERSONAL = "personal"
OTHER = "other"
SHARED = "shared"
# The first component of an archived folder of another namespace (docs/FORMAT.md).
MARKS = {OTHER: "#other", SHARED: "#shared"}


@dataclass(frozen=True)
class Namespace:
    prefix: str  # decoded from modified UTF-7
    separator: Optional[str]
    kind: str  # PERSONAL, OTHER or SHARED

    def holds(self, name: str) -> bool:
        """Is ``name`` in this namespace (its root, ``Other Users``, included)?

        The empty prefix holds every name, and loses to any longer one
        (:meth:`Namespaces.foreign`): Cyrus with Debian's defaults has the shared
        namespace ``""`` beside the personal ``INBOX.`` and the other users' ``user.``.
        """
        if not self.prefix:
            return True
        if name.startswith(self.prefix):
            return True
        sep = self.separator
        if not sep or not self.prefix.endswith(sep):
            return False
        return name == self.prefix[:-len(sep)]


@dataclass(frozen=True)
class Namespaces:
    """A server's namespaces; empty (everything personal) without the NAMESPACE capability."""

    entries: tuple[Namespace, ...] = ()

    @property
    def personal(self) -> Optional[Namespace]:
        return next((n for n in self.entries if n.kind == PERSONAL), None)

    def foreign(self, name: str) -> Optional[Namespace]:
        """The other-users or shared namespace ``name`` is in (longest prefix), or None.

        A personal namespace with a longer matching prefix wins, so a personal
        ``INBOX.`` keeps ``INBOX.Other Users`` personal when the shared prefix is ``Other ``.
        """
        best: Optional[Namespace] = None
        for ns in self.entries:
            if ns.holds(name) and (best is None or len(ns.prefix) > len(best.prefix)):
                best = ns
        return best if best is not None and best.kind != PERSONAL else None


def folder_name(server_name: str, separator: Optional[str],
                namespaces: Namespaces) -> tuple[tuple[str, ...], str]:
    """(logical name, namespace kind) of a listed folder.

    A personal folder keeps the name :func:`archiver.names.logical_name` gives
    it (unchanged from earlier versions).  A folder of another namespace is
    ``#other`` or ``#shared`` followed by its name after that namespace's
    prefix, split at that namespace's separator: ``Other Users.dora.Sent`` is
    ``#other/dora/Sent``.
    """
    ns = namespaces.foreign(server_name)
    if ns is None:
        personal = namespaces.personal
        return logical_name(server_name, separator, personal.prefix if personal else ""), PERSONAL
    rest = server_name[len(ns.prefix):] if server_name.startswith(ns.prefix) else ""
    sep = ns.separator or separator
    parts = tuple(rest.split(sep)) if rest and sep else ((rest,) if rest else ())
    return (MARKS[ns.kind],) + parts, ns.kind


@dataclass(frozen=True)
class Recorded:
    """What the index already says about a logical name."""

    server_name: str
    namespace: str = PERSONAL


def distinct(folders: Iterable[Folder], recorded: Mapping[str, Recorded]
             ) -> tuple[list[Folder], list[tuple[Folder, str]]]:
    """Keep one server folder per logical name; the others are problems, not merged.

    Two server folders with one logical name would share one directory and one
    set of UIDs: messages overwritten or mixed, or the run aborted.  The one
    the index already knows under that name keeps it (so a rerun never
    switches), else a personal folder, else the first listed; the others are
    returned with the reason they are not archived.  A folder whose name the
    index holds for a folder of another namespace is refused too.
    """
    listed = list(folders)
    by_name: dict[str, list[tuple[int, Folder]]] = {}
    for i, f in enumerate(listed):
        by_name.setdefault(f.name, []).append((i, f))
    keep: set[int] = set()
    problems: list[tuple[Folder, str]] = []
    for name, group in by_name.items():
        # The index can only hold another folder under this name if two folders
        # share it now, or the name is (under) an #other/#shared root: a lone
        # personal folder elsewhere needs no look, so a no-op rerun reads no index.
        lone_personal = len(group) == 1 and group[0][1].namespace == PERSONAL \
            and name.split("/", 1)[0] not in MARKS.values()
        rec = None if lone_personal else recorded.get(name)

        def rank(item: tuple[int, Folder], rec: Optional[Recorded] = rec) -> tuple[int, int, int]:
            i, f = item
            known = rec is not None and rec.server_name == f.server_name \
                and rec.namespace == f.namespace
            return (0 if known else 1, 0 if f.namespace == PERSONAL else 1, i)

        group.sort(key=rank)
        first_i, first = group[0]
        if rec is not None and rec.namespace != first.namespace:
            problems.append((first, _("folder {folder!r} would be archived as {name!r}, which "
                                      "already holds {kind} folder {other!r}; not archived, so "
                                      "they are not mixed: rename it on the server").format(
                                          folder=first.server_name, name=name,
                                          kind=_kind(rec.namespace), other=rec.server_name)))
        else:
            keep.add(first_i)
        for _i, other in group[1:]:
            problems.append((other, _("folder {folder!r} and {first!r} have the same name in "
                                      "the archive ({name!r}); {folder!r} was not archived: "
                                      "rename one of them on the server").format(
                                          folder=other.server_name, first=first.server_name,
                                          name=name)))
    return [f for i, f in enumerate(listed) if i in keep], problems


def _kind(namespace: str) -> str:
    return {OTHER: _("another user's"), SHARED: _("a shared")}.get(namespace, _("the personal"))


@dataclass
class Choice:
    """The folders a backup takes, and what it says about the others."""

    folders: list[Folder]
    skipped: int  # selectable folders of other namespaces left out (no --all-namespaces)
    problems: list[str]

    @property
    def note(self) -> Optional[str]:
        if not self.skipped:
            return None
        return ngettext("{n} folder in other users' or shared namespaces was not archived: "
                        "use --all-namespaces to include it",
                        "{n} folders in other users' or shared namespaces were not archived: "
                        "use --all-namespaces to include them", self.skipped).format(
                            n=self.skipped)


def choose(folders: Iterable[Folder], all_namespaces: bool,
           recorded: Mapping[str, Recorded]) -> Choice:
    """The listed folders a backup archives: the personal ones (all with ``all_namespaces``),
    one per logical name (:func:`distinct`)."""
    own: list[Folder] = []
    skipped = 0
    for f in folders:
        if f.namespace == PERSONAL or all_namespaces:
            own.append(f)
        elif f.selectable:
            skipped += 1
    kept, refused = distinct(own, recorded)
    return Choice(kept, skipped, [reason for _, reason in refused])
