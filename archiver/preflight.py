"""The start of a backup, before DEST is created: folders, patterns, new mail, space.

``backup`` and ``check`` ask the server the same things in the same order:
the folder listing (LIST, with LIST-STATUS where offered), the STATUS of the
selected folders (one round trip), then -- only for folders that changed
since their last complete pass -- the sizes of the messages not yet
archived.  The listing and the STATUS answers are handed on to the backup
(:class:`archiver.engine.BackupOptions` ``preflight``) so it does not ask
again: a no-op rerun costs no extra round trip.

How "not yet archived" is found without reading the index: a folder whose
counters (``folders.json``) equal its STATUS has nothing new; one with the
same UIDVALIDITY has new mail only at UIDs from the cached UIDNEXT on, so
only those are listed (``UID FETCH n:* (RFC822.SIZE)``).  Any other folder
is listed whole and compared with the index (read then, as the backup would
read it anyway).  A UIDVALIDITY change or a POP3 sight of mail archived over
IMAP is counted in full: the estimate errs on the safe side.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from archiver.errors import ConnectionFailed, ServerError
from archiver.i18n import _
from archiver.namespaces import Recorded, choose
from archiver.patterns import Candidate, check_patterns
from archiver.plan import folder_selected
from archiver.sources.base import ConnectionLost, FetchFailed, Folder, FolderStatus
from archiver.space import FolderNew
from archiver.survey import statuses

T = TypeVar("T")


class RecordedFolders(Mapping[str, Recorded]):
    """The archived folders' names and namespaces, read from the index only when asked
    (archiver.namespaces.distinct asks only when a name could clash)."""

    def __init__(self, archive: Any) -> None:
        self._archive = archive
        self._map: Optional[dict[str, Recorded]] = None

    def _load(self) -> dict[str, Recorded]:
        if self._map is None:
            self._map = {}
            if self._archive is not None and self._archive.index_path.exists():
                self._map = {e.name: Recorded(e.server_name, e.namespace)
                             for e in list(self._archive.state().folders.values())}
        return self._map

    def __getitem__(self, name: str) -> Recorded:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


@dataclass
class Preflight:
    """What the start of a run asked the server (handed on to the backup)."""

    listed: list[Folder]  # source.folders(), as listed
    selected: list[Folder]  # after namespaces, --folder and --exclude
    statuses: dict[str, Optional[FolderStatus]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an --exclude that matched nothing


RETRIES = 3  # reconnects of the start-of-run questions (all read-only, so simply asked again)


def _retrying(source: Any, ask: Callable[[], T], backoff: float = 1.0) -> T:
    """``ask()``, reconnecting and asking again when the line drops (as the backup's own
    reconnects would); ConnectionFailed when it keeps dropping."""
    attempt = 0
    while True:
        try:
            return ask()
        except ConnectionLost as exc:
            attempt += 1
            if attempt > RETRIES:
                raise ConnectionFailed(_("lost the connection ({reason}); run the same "
                                         "command again").format(reason=exc)) from None
            time.sleep(backoff * 2 ** (attempt - 1))
            source.close()
            source.connect()


def select(source: Any, archive: Any, include: Sequence[str], exclude: Sequence[str],
           all_namespaces: bool, listing_hint: str = "", maps: Sequence[str] = ()
           ) -> Preflight:
    """List the folders, check the patterns against them (UsageError when an include
    or a ``--map`` OLD matches nothing) and ask the selected folders' STATUS."""
    listed = _retrying(source, source.folders)
    choice = choose(listed, all_namespaces, RecordedFolders(archive))
    candidates = [Candidate(f.name, f.special_use, f.server_name) for f in choice.folders]
    notes = check_patterns(candidates, include, exclude, maps, where="server",
                           listing_hint=listing_hint)
    selected = [f for f in choice.folders if folder_selected(f.name, include, exclude)]
    return Preflight(listed, selected, _retrying(source, lambda: statuses(source, selected)),
                     notes)


def new_mail(source: Any, pre: Preflight, archive: Any) -> list[FolderNew]:
    """The messages of the selected folders not yet in ``archive`` (None: no archive)."""
    exists = archive is not None and archive.meta_path.exists()
    counters: dict[str, Any] = archive.folder_counters() if exists else {}
    out: list[FolderNew] = []
    for folder in pre.selected:
        if not folder.selectable:
            continue
        st = pre.statuses.get(folder.name)
        cached = counters.get(folder.name)
        low = 1
        if st is not None and isinstance(cached, dict):
            if st.messages == 0 or (st.highestmodseq is not None and cached == st.as_dict()):
                continue
            if cached.get("uidvalidity") == st.uidvalidity \
                    and isinstance(cached.get("uidnext"), int):
                if st.uidnext <= cached["uidnext"]:
                    continue  # flag changes or expunges only
                low = cached["uidnext"]
        elif st is not None and st.messages == 0:
            continue
        try:
            uidvalidity, sizes = _retrying(source, functools.partial(_sizes, source, folder,
                                                                     low))
        except (FetchFailed, ServerError):
            continue  # the server will not open or list it: the backup reports it
        entry = archive.state().folders.get(folder.name) \
            if exists and archive.index_path.exists() else None
        if low == 1 and entry is not None:
            known = entry.current(uidvalidity)
            sizes = {uid: n for uid, n in sizes.items() if uid not in known}
        if sizes:
            out.append(FolderNew(folder.name, sizes, fresh=entry is None))
    return out


def _sizes(source: Any, folder: Folder, low: int) -> tuple[int, dict[int, int]]:
    """(UIDVALIDITY, UID -> size) of the folder's messages from UID ``low`` on."""
    sizes = getattr(source, "message_sizes", None)  # IMAP: sizes only, read-only
    if sizes is not None:
        opened, found = sizes(folder, low)
        return opened.uidvalidity, found
    opened = source.open_folder(folder)  # POP3: STAT, then LIST and UIDL
    return opened.uidvalidity, {m.uid: m.size for m in source.list_messages(opened.messages)}


@dataclass(frozen=True)
class Rate:
    """A short measured transfer: how fast the server delivers bodies.

    The sample is fetched a few messages per command, each command waiting
    one round trip; the backup pipelines its batches, so the round trips are
    taken out of the sample's time and added back once per folder and per
    1,000 messages (the backup's batch) in :meth:`estimate`.
    """

    bytes: int
    seconds: float
    commands: int = 0
    rtt: float = 0.0

    def estimate(self, total: int, messages: int = 0, folders: int = 0) -> Optional[float]:
        """Seconds to fetch ``total`` bytes (None: the sample got nothing)."""
        if total <= 0:
            return 0.0
        if self.bytes <= 0 or self.seconds <= 0:
            return None
        transfer = max(self.seconds - self.commands * self.rtt, self.seconds / 4)
        return (total * transfer / self.bytes
                + (2 * folders + messages / 1000) * self.rtt)


def measure_rate(source: Any, new: Sequence[FolderNew], folders: Sequence[Folder],
                 max_bytes: int = 2_000_000, max_seconds: float = 3.0,
                 batch: int = 10) -> Rate:
    """Fetch some of the messages not yet archived (read-only: EXAMINE and BODY.PEEK,
    bodies thrown away) until about ``max_bytes`` or ``max_seconds``, from the
    folders with the most new bytes first."""
    by_name = {f.name: f for f in folders}
    imap = getattr(source, "message_sizes", None) is not None
    got = commands = 0
    spent = 0.0
    try:
        for sample in sorted(new, key=lambda f: -sum(f.sizes.values())):
            if got >= max_bytes or spent >= max_seconds:
                break
            uids = sorted(u for u, n in sample.sizes.items() if n <= max_bytes - got)
            if not uids:
                continue
            try:
                if imap:
                    source.open_folder(by_name[sample.name])  # EXAMINE (POP3: listed)
            except FetchFailed:
                continue
            start = time.monotonic()
            for i in range(0, len(uids), batch):
                commands += 1
                for _uid, body in source.fetch(uids[i:i + batch]):
                    if isinstance(body, bytes):
                        got += len(body)
                if got >= max_bytes or spent + time.monotonic() - start >= max_seconds:
                    break
            spent += time.monotonic() - start
    except (ConnectionLost, ServerError):
        pass  # the sample ends here: an estimate from what came, or none
    return Rate(got, spent, commands, float(getattr(source, "rtt", 0.0) or 0.0))


def space_needed(source: Any, pre: Preflight, archive: Any, fmt: str,
                 dest: Any, quick: bool = False) -> tuple[Any, Any]:
    """(SpaceNeed, Volume): what the mail not yet archived takes on DEST, and DEST's room.

    ``quick`` (backup): when the STATUS answers give every selected folder's size
    and even the worst case of all of it being new fits, that bound is returned
    without listing each message's size (``SpaceNeed.folders`` is then empty).
    """
    from archiver.space import SpaceNeed, disk_need, upper_bound, volume_of

    volume = volume_of(dest)
    if quick:
        sizes = [pre.statuses.get(f.name) for f in pre.selected if f.selectable]
        if all(st is not None and st.size is not None for st in sizes):
            bound = upper_bound([(st.messages, st.size or 0) for st in sizes if st is not None],
                                fmt, volume.cluster)
            if bound <= volume.free:
                return SpaceNeed(needed_bytes=bound, cluster=volume.cluster), volume
    fresh = archive is None or not archive.meta_path.exists()
    return disk_need(new_mail(source, pre, archive), fmt, volume.cluster, fresh), volume


def start_checks(source: Any, archive: Any, dest: Any, fmt: str, include: Sequence[str],
                 exclude: Sequence[str], all_namespaces: bool, space_check: bool = True,
                 listing_hint: str = "") -> Preflight:
    """A backup's checks before DEST is made: the folder patterns (UsageError, exit 2) and
    the space check (DestinationError, exit 6).  Shared by ``archiver backup`` and the
    web page's backup, so both refuse the same runs with the same words."""
    from archiver.errors import DestinationError
    from archiver.space import too_big

    pre = select(source, archive, include, exclude, all_namespaces, listing_hint=listing_hint)
    if space_check:
        need, volume = space_needed(source, pre, archive, fmt, dest, quick=True)
        if need.needed_bytes > volume.free:
            raise DestinationError(too_big(need, volume, dest))
    return pre
