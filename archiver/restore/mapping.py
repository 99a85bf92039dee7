"""Which archived messages go, and where: a folder's name on the target.

Split from :mod:`archiver.restore.upload` (which runs the uploads): the
mapping rules (``--map``, ``--special-use``, ``--prefix``, the target's
namespace prefix and separator) are pure functions of the options and the
target's listing, so they are kept apart from the connection handling.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Optional

from archiver.i18n import _
from archiver.names import logical_name
from archiver.patterns import ROLE_NAMES
from archiver.state import FolderEntry, MessageEntry

if TYPE_CHECKING:
    from archiver.restore.options import RestoreOptions
    from archiver.restore.target import TargetFolder

# Well-known names of special folders (top level, case-insensitive) when the old
# server did not mark them with SPECIAL-USE attributes: archiver.patterns.ROLE_NAMES.
_ROLE_NAMES = ROLE_NAMES



def wanted(entry: FolderEntry, include_deleted: bool) -> tuple[list[MessageEntry], int]:
    """The folder's messages to put on the target, and how many \\Deleted ones are left out."""
    out: list[MessageEntry] = []
    deleted = 0
    for m in entry.messages.values():
        if not m.counted:
            continue
        if "\\Deleted" in m.flags and not include_deleted:
            deleted += 1
            continue
        out.append(m)
    out.sort(key=lambda m: (m.uidvalidity, m.uid))
    return out, deleted


def parse_date(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


class FolderMapper:
    """Archive folder name -> target folder (components, server name, wire name)."""

    def __init__(self, options: RestoreOptions, listing: list[TargetFolder],
                 ns_prefix: str, separator: Optional[str],
                 sources: dict[str, FolderEntry]) -> None:
        self.options = options
        self.prefix = ns_prefix
        self.sep = separator or next((f.separator for f in listing if f.separator), None) or "/"
        self.sources = sources
        self.maps = sorted(((tuple(a.strip("/").split("/")), tuple(b.strip("/").split("/")))
                            for a, b in options.maps), key=lambda p: -len(p[0]))
        self.roles: dict[str, tuple[str, ...]] = {}
        for f in listing:
            use = f.special_use
            if use and use not in self.roles and f.selectable:
                self.roles[use] = self.components(f.name)
        self.notes: list[str] = []

    def components(self, server_name: str) -> tuple[str, ...]:
        """A target folder's name as a logical name (the backup's rule: INBOX.Inbox stays
        INBOX/Inbox, so it maps back to itself)."""
        return logical_name(server_name, self.sep, self.prefix)

    def _role(self, name: str) -> Optional[str]:
        entry = self.sources.get(name)
        attrs = {a.lower() for a in (entry.attributes if entry else ())}
        for role in _ROLE_NAMES:
            if role.lower() in attrs:
                return role
        if "/" not in name:
            for role, names in _ROLE_NAMES.items():
                if name.lower() in names:
                    return role
        return None

    def target(self, name: str) -> tuple[str, ...]:
        comps = tuple(name.split("/"))
        for src, dst in self.maps:
            if comps[:len(src)] == src:
                return dst + comps[len(src):]
        if self.options.special_use:
            for i in range(len(comps), 0, -1):
                role = self._role("/".join(comps[:i]))
                if role and role in self.roles:
                    return self.roles[role] + comps[i:]
        pre = tuple(p for p in self.options.prefix.strip("/").split("/") if p)
        return pre + comps

    def server_name(self, comps: tuple[str, ...], note: bool = True) -> str:
        fixed = []
        for c in comps:
            if self.sep != "/" and self.sep in c:
                if note:
                        self.notes.append(_("'{c}' contains the target's separator '{sep}': "
                                            "it is written as '_'").format(c=c, sep=self.sep))
                c = c.replace(self.sep, "_")
            fixed.append(c)
        if fixed[0].upper() == "INBOX":
            return self.sep.join(["INBOX", *fixed[1:]])
        return self.prefix + self.sep.join(fixed)
