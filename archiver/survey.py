"""What a source server holds, folder by folder, before anything is archived.

``archiver folders`` shows it, so a user can see the server's real folder
names (``送信済み``, not ``Sent``) before choosing ``--folder``; the backup's
start-of-run checks (:mod:`archiver.preflight`) use the same listing.  Sizes
come from STATUS (SIZE) where the server offers it (RFC 8438, Dovecot), else
from the sum of a read-only RFC822.SIZE listing; POP3 has one INBOX whose
STAT gives both numbers.  Never writes to the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from archiver.errors import ServerError
from archiver.namespaces import PERSONAL
from archiver.sources.base import FetchFailed, Folder, FolderStatus


@dataclass(frozen=True)
class FolderInfo:
    """One folder as ``archiver folders`` lists it (``as_dict`` is its ``--json``)."""

    name: str  # the decoded, '/'-separated name --folder and --exclude match
    server_name: str  # decoded, as the server spells it (namespace prefix, separator)
    messages: Optional[int]  # None: \Noselect, or the server would not say
    bytes: Optional[int]
    noselect: bool
    special_use: Optional[str]  # \Sent, \Drafts, ... (RFC 6154)
    namespace: str = PERSONAL

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "server_name": self.server_name,
                "messages": self.messages, "bytes": self.bytes, "noselect": self.noselect,
                "special_use": self.special_use, "namespace": self.namespace}


@dataclass
class Survey:
    folders: list[FolderInfo]
    left_out: int  # selectable folders of other namespaces not listed (no --all-namespaces)


def in_scope(listed: Sequence[Folder], all_namespaces: bool) -> tuple[list[Folder], int]:
    """The listed folders a backup would consider (personal ones unless
    ``all_namespaces``), and how many selectable others were left out."""
    own = [f for f in listed if f.namespace == PERSONAL or all_namespaces]
    left_out = sum(1 for f in listed if f not in own and f.selectable)
    return own, left_out


def statuses(source: Any, folders: Sequence[Folder]) -> dict[str, Optional[FolderStatus]]:
    """STATUS of every selectable folder: one round trip on IMAP (``status_many``,
    answered from LIST-STATUS when the listing carried it); None on POP3."""
    selectable = [f for f in folders if f.selectable]
    many = getattr(source, "status_many", None)
    if many is not None:
        out: dict[str, Optional[FolderStatus]] = many(selectable)
        return out
    return {f.name: source.status(f) for f in selectable}


def survey(source: Any, all_namespaces: bool = False) -> Survey:
    """Every folder of a connected source with its message count and size."""
    folders, left_out = in_scope(source.folders(), all_namespaces)
    status = statuses(source, folders)
    out: list[FolderInfo] = []
    for f in sorted(folders, key=lambda f: (f.name != "INBOX", f.name)):
        messages: Optional[int] = None
        size: Optional[int] = None
        if f.selectable:
            st = status.get(f.name)
            if st is not None and st.size is not None:
                messages, size = st.messages, st.size
            elif st is not None and st.messages == 0:
                messages, size = 0, 0
            else:
                try:
                    messages, size = source.mailbox_size(f)
                except (FetchFailed, ServerError):  # listed, but will not be opened or listed
                    pass
        out.append(FolderInfo(f.name, f.server_name, messages, size, not f.selectable,
                              f.special_use, f.namespace))
    return Survey(out, left_out)
