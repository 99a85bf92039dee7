"""What every source (IMAP, POP3) hands the engine: typed records, no protocol details."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Protocol

# ``__slots__`` where the Python has them (3.10+): a 200,000-message listing is
# 200,000 of these at once, and a per-instance ``__dict__`` doubled their size.
SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}

# IMAP system flags we map to Maildir info letters; everything else is a keyword.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
# SPECIAL-USE attributes (RFC 6154) a folder may carry in its LIST answer.
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged")


@dataclass(frozen=True)
class Folder:
    """One folder as the server lists it, with its logical (namespace-relative) name."""

    server_name: str  # decoded from modified UTF-7, as the server spells it
    raw_name: bytes  # exactly as listed, for EXAMINE/STATUS
    separator: Optional[str]
    attributes: tuple[str, ...]
    components: tuple[str, ...]  # hierarchy relative to the personal namespace
    # "personal", or "other"/"shared" (archiver/namespaces.py): whose folder this is
    namespace: str = "personal"

    @property
    def name(self) -> str:
        return "/".join(self.components)

    @property
    def selectable(self) -> bool:
        lowered = {a.lower() for a in self.attributes}
        return "\\noselect" not in lowered and "\\nonexistent" not in lowered

    @property
    def special_use(self) -> Optional[str]:
        """Its SPECIAL-USE attribute (``\\Sent``, ...), if the server marked it."""
        return special_use_of(self.attributes)


def special_use_of(attributes: tuple[str, ...]) -> Optional[str]:
    """The first SPECIAL-USE attribute among a LIST answer's attributes, spelled ours."""
    low = {a.lower() for a in attributes}
    return next((use for use in SPECIAL_USES if use.lower() in low), None)


@dataclass(frozen=True)
class FolderStatus:
    """Cheap per-folder counters (STATUS) used to skip unchanged folders."""

    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: Optional[int] = None
    size: Optional[int] = None  # STATUS=SIZE (RFC 8438): only for progress estimates

    def as_dict(self) -> dict[str, Optional[int]]:
        return {"uidvalidity": self.uidvalidity, "uidnext": self.uidnext,
                "messages": self.messages, "highestmodseq": self.highestmodseq}


@dataclass(frozen=True, **SLOTS)
class MessageMeta:
    """A message's listing entry: enough to plan without fetching the body."""

    uid: int
    flags: tuple[str, ...]  # system flags, sorted
    keywords: tuple[str, ...]  # everything else, sorted
    internaldate: Optional[datetime]
    size: int
    uidl: Optional[str] = None  # POP3: the real key (``uid`` is derived from it)


def split_flags(raw: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Separate IMAP system flags from keywords; drop the session-only ``\\Recent``."""
    system: set[str] = set()
    keywords: set[str] = set()
    canonical = {f.lower(): f for f in SYSTEM_FLAGS}
    for flag in raw:
        low = flag.lower()
        if low == "\\recent":
            continue
        if low in canonical:
            system.add(canonical[low])
        else:
            keywords.add(flag)
    return tuple(sorted(system)), tuple(sorted(keywords))


class FetchFailed(Exception):
    """The server did not deliver one message; the run goes on and reports it."""

    def __init__(self, uid: int, reason: str, label: str = "") -> None:
        super().__init__(f"{label or f'UID {uid}'}: {reason}")
        self.uid = uid
        self.reason = reason


class ResumeMismatch(FetchFailed):
    """A resumed fetch found other bytes than the ones already on disk: start over."""


class ConnectionLost(Exception):
    """The connection dropped or timed out mid-run; the engine reconnects and resumes."""


class Source(Protocol):
    """What the backup engine asks of a source (IMAP, POP3)."""


    def connect(self) -> None: ...
    def close(self) -> None: ...
    def folders(self) -> list[Folder]: ...
    def status(self, folder: Folder) -> Optional[FolderStatus]: ...
    def open_folder(self, folder: Folder) -> FolderStatus: ...
    def list_messages(self, count: int) -> list[MessageMeta]: ...
    def fetch(self, uids: list[int]) -> Any: ...
    def fetch_headers(self, uids: list[int]) -> dict[int, bytes]: ...
    def fetch_stream(self, uid: int, size_hint: int, write: Callable[[bytes], None],
                     chunk: int = ..., offset: int = ..., overlap: bytes = ...) -> int: ...
