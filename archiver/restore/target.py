"""IMAP restore target: folders, a listing for deduplication, and a pipelined APPEND writer.

The connection (TLS/STARTTLS, login, errors with exit codes) is the source's
:class:`~archiver.sources.session.ImapSession`; this module adds what writing
needs.  imaplib sends one command and waits for its answer, so uploading
10,000 messages would cost 10,000 round trips.  :class:`AppendWriter`
instead writes APPEND commands straight onto the session's socket with
non-synchronizing literals (LITERAL+, or LITERAL- for small messages),
batches several messages into one command with MULTIAPPEND, and keeps a
window of commands in flight, reading the tagged answers as they come.
Without LITERAL+ every literal waits for the server's ``+``, but the next
command still goes out without waiting for the previous answer.

A literal's bytes are streamed from the archive in chunks (an item carries
its size, which the ``{n}`` announces, and a way to read its bytes), so a
large message is never held whole.  Once a literal has begun it cannot be
taken back: if the archive yields other than the announced number of bytes,
the last chunk is withheld, the answers to the commands before it are read,
and the connection is dropped (:class:`AppendAborted`) -- the server then
discards the unfinished APPEND instead of storing a wrong message.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import logging
import re
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

import imapclient.exceptions

from archiver.errors import ServerError
from archiver.headers import summarize
from archiver.i18n import _
from archiver.names import decode_mutf7
from archiver.restore.normal import Profile, Profiler, profile
from archiver.sources.base import SPECIAL_USES, ConnectionLost, FetchFailed, split_flags
from archiver.sources.responses import as_text
from archiver.sources.session import ImapSession, network, raw_fetch, uid_fetch

log = logging.getLogger("archiver.sink")

HEAD_BYTES = 2048  # prefix fetched to identify a message without Message-ID (see match.py)
BODY_BATCH = 4 << 20  # bytes of bodies per FETCH when they are compared (see body_profiles)
SCAN_EVERY = 1000  # messages per FETCH of a folder listing: its raw answer is held while parsed
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ATOM_SPECIALS = re.compile(rb'[\x00-\x20\x7f(){%*"\\\]]')
_TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)\b ?(.*)$", re.DOTALL | re.IGNORECASE)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([\d:,]+)\]", re.IGNORECASE)
_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n$")
_SEND = 256 * 1024  # bytes per send of a large literal (the meter is called after each)


@dataclass(frozen=True)
class TargetFolder:
    raw_name: bytes  # as listed (modified UTF-7)
    name: str  # decoded
    separator: Optional[str]
    attributes: tuple[str, ...]

    @property
    def selectable(self) -> bool:
        low = {a.lower() for a in self.attributes}
        return "\\noselect" not in low and "\\nonexistent" not in low

    @property
    def special_use(self) -> Optional[str]:
        low = {a.lower(): a for a in self.attributes}
        for use in SPECIAL_USES:
            if use.lower() in low:
                return use
        return None


@dataclass(frozen=True)
class Selected:
    uidvalidity: int
    exists: int
    permanent_flags: tuple[str, ...]

    @property
    def keywords_allowed(self) -> bool:
        """PERMANENTFLAGS with ``\\*``: any keyword can be stored."""
        return "\\*" in self.permanent_flags


@dataclass(frozen=True)
class TargetMessage:
    """One message already in a target folder, as far as deduplication needs it."""

    uid: int
    size: int
    internaldate: Optional[datetime]
    message_id: Optional[str]
    flags: tuple[str, ...]
    keywords: tuple[str, ...]
    head: Optional[bytes] = None  # first HEAD_BYTES, only when there is no Message-ID


@dataclass
class AppendItem:
    """A message to upload; ``token`` is the caller's (returned with the result).

    ``size`` is promised to the server before the first byte goes.  The bytes
    are ``data`` when the caller has read them already (small messages; let go
    once sent), else -- and again when a refused MULTIAPPEND is retried one by
    one -- whatever ``read()`` yields, chunk by chunk.
    """

    size: int
    flags: tuple[str, ...]
    internaldate: Optional[datetime]
    token: Any = None
    data: Optional[bytes] = None
    read: Optional[Callable[[], Iterable[bytes]]] = None

    @classmethod
    def of(cls, data: bytes, flags: tuple[str, ...] = (),
           internaldate: Optional[datetime] = None, token: Any = None) -> AppendItem:
        """An item whose bytes are all in memory (and stay there)."""
        return cls(len(data), flags, internaldate, token, data)

    def chunks(self) -> Iterable[bytes]:
        if self.data is not None:
            return (self.data,)
        if self.read is None:
            raise ValueError("an append item without bytes")
        return self.read()

    def sent(self) -> None:
        """The bytes went out: drop them if they can be read again for a retry."""
        if self.read is not None:
            self.data = None


class AppendAborted(ConnectionLost):
    """An item's bytes could not be read as announced mid-APPEND; the line was dropped.

    The commands before it were answered (and yielded); this one, and any
    others of its command, did not land.
    """

    def __init__(self, item: AppendItem, reason: str) -> None:
        super().__init__(f"APPEND abandoned: {reason}")
        self.item = item
        self.reason = reason


class _Unreadable(Exception):
    """Internal: an item's bytes failed while its literal was being sent."""

    def __init__(self, item: AppendItem, reason: str) -> None:
        super().__init__(reason)
        self.item = item
        self.reason = reason
        self.done: list[_Command] = []


@dataclass
class AppendResult:
    item: AppendItem
    ok: bool
    uid: Optional[int] = None  # APPENDUID, when the server has UIDPLUS
    uidvalidity: Optional[int] = None
    reason: str = ""


def imap_date(dt: datetime) -> str:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (locale-independent, unlike strftime's %b)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    off = dt.utcoffset()
    minutes = int(off.total_seconds() // 60) if off is not None else 0
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (f'"{dt.day:02d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} '
            f'{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{minutes // 60:02d}'
            f'{minutes % 60:02d}"')


def valid_keyword(flag: str) -> bool:
    """Can ``flag`` be sent as an IMAP atom?"""
    try:
        raw = flag.encode("ascii")
    except UnicodeEncodeError:
        return False
    return bool(raw) and not _ATOM_SPECIALS.search(raw)


def quote(name: bytes) -> bytes:
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _uids(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":", 1))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


class ImapTarget(ImapSession):
    """The account mail is restored into: list, create, select, scan, append."""

    protocol = "imap"

    def list_folders(self) -> list[TargetFolder]:
        client = self.client
        with network("LIST"):
            if "SPECIAL-USE" in self.capabilities:
                imap = client._imap
                typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
                if typ != "OK":
                    raise imapclient.exceptions.IMAPClientError(f"LIST failed: {data!r}")
                typ, data = imap._untagged_response(typ, data, "LIST")
                listing = client._proc_folder_list(data)
            else:
                listing = client.list_folders()
        out: list[TargetFolder] = []
        for flags, delim, raw in listing:
            raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
            out.append(TargetFolder(raw_bytes, decode_mutf7(raw_bytes),
                                    as_text(delim) if delim else None,
                                    tuple(as_text(f) for f in flags)))
        return out

    def create(self, raw_name: bytes) -> Optional[str]:
        """CREATE and SUBSCRIBE; returns the server's refusal text, or None when done."""
        client = self.client
        try:
            with network(f"CREATE {raw_name!r}"):
                client.create_folder(raw_name)
        except ServerError as exc:
            if "ALREADYEXISTS" not in str(exc).upper():
                return str(exc)
        with contextlib.suppress(ServerError), network("SUBSCRIBE"):
            client.subscribe_folder(raw_name)
        return None

    def select(self, raw_name: bytes, readonly: bool = False) -> Selected:
        with network(f"SELECT {raw_name!r}"):
            res = self.client.select_folder(raw_name, readonly=readonly)
        perm = tuple(as_text(f) for f in res.get(b"PERMANENTFLAGS", ()) or ())
        try:
            uidvalidity = int(res[b"UIDVALIDITY"])
        except (KeyError, TypeError, ValueError):
            raise ServerError(_("SELECT {raw_name}: no UIDVALIDITY from the target server").format(
                                raw_name=decode_mutf7(raw_name))) from None
        return Selected(uidvalidity, int(res.get(b"EXISTS", 0) or 0), perm)

    def sizes(self, exists: int) -> dict[int, int]:
        """UID -> RFC822.SIZE of every message in the selected folder (restore/recheck.py)."""
        if exists == 0:
            return {}
        with network("UID FETCH 1:* (UID RFC822.SIZE)"):
            res = uid_fetch(self.client, "1:*", "(UID RFC822.SIZE)")
        return {int(uid): int(data.get(b"RFC822.SIZE", 0) or 0) for uid, data in res.items()}

    def scan(self, exists: int) -> list[TargetMessage]:
        """Size, date, flags and Message-ID of every message in the selected folder.

        Fetched ``SCAN_EVERY`` messages (by sequence number) at a time: imaplib
        keeps a command's whole answer, and its parse, until the command ends.
        """
        out: dict[int, TargetMessage] = {}
        no_id: list[int] = []
        for lo in range(1, exists + 1, SCAN_EVERY):
            # the last range is open ("n:*"), so a folder that shrank meanwhile is no error
            hi = str(lo + SCAN_EVERY - 1) if lo + SCAN_EVERY <= exists else "*"
            with network(f"FETCH {lo}:{hi} (listing)"):
                res = self._fetch_range(f"{lo}:{hi}")
            for uid, data in res.items():
                head = b""
                for key, value in data.items():
                    if isinstance(key, bytes) and key.startswith(b"BODY[HEADER.FIELDS"):
                        head = value if isinstance(value, bytes) else b""
                mid = summarize(head).get("message_id") if head else None
                system, keywords = split_flags(tuple(as_text(f) for f in data.get(b"FLAGS", ())))
                idate = data.get(b"INTERNALDATE")
                out[int(uid)] = TargetMessage(
                    int(uid), int(data.get(b"RFC822.SIZE", 0) or 0),
                    idate if isinstance(idate, datetime) else None, mid, system, keywords)
                if mid is None:
                    no_id.append(int(uid))
        for start in range(0, len(no_id), 500):
            chunk = no_id[start:start + 500]
            with network("UID FETCH (head of messages without Message-ID)"):
                heads = uid_fetch(self.client, ",".join(map(str, chunk)),
                                   f"(UID BODY.PEEK[]<0.{HEAD_BYTES}>)")
            for uid, data in heads.items():
                for key, value in data.items():
                    if isinstance(key, bytes) and key.startswith(b"BODY[]"):
                        old = out.get(int(uid))
                        if old is not None:
                            out[int(uid)] = TargetMessage(
                                old.uid, old.size, old.internaldate, None, old.flags,
                                old.keywords, value if isinstance(value, bytes) else b"")
        return [out[uid] for uid in sorted(out)]

    def body_profiles(self, messages: Sequence[TargetMessage]) -> dict[int, Profile]:
        """Download messages of the selected folder and profile them (hashes; see normal.py).

        For ``restore --verify`` and ambiguous matches.  Messages go in batches of
        about BODY_BATCH bytes, a bigger one in BODY_BATCH pieces, so memory stays
        bounded.  A message the server does not return is left out (not matched).
        """
        out: dict[int, Profile] = {}
        batch: list[int] = []
        nbytes = 0
        for t in sorted(messages, key=lambda t: t.uid):
            if t.size > BODY_BATCH:
                p = Profiler()
                try:
                    self.fetch_stream(t.uid, t.size, p.update, chunk=BODY_BATCH)
                except FetchFailed:
                    continue
                out[t.uid] = p.finish()
                continue
            if batch and (nbytes + t.size > BODY_BATCH or len(batch) >= 500):
                out.update(self._profile_batch(batch))
                batch, nbytes = [], 0
            batch.append(t.uid)
            nbytes += t.size
        if batch:
            out.update(self._profile_batch(batch))
        return out

    def _profile_batch(self, uids: list[int]) -> dict[int, Profile]:
        return {uid: profile([body]) for uid, body in self.fetch(uids)
                if isinstance(body, bytes)}

    def _fetch_range(self, seq: str) -> dict[int, Any]:
        """``FETCH seq`` (sequence numbers) of what the listing needs, keyed by UID."""
        items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
        return raw_fetch(self.client, seq, items, uid=False)

    def writer(self, **options: Any) -> AppendWriter:
        return AppendWriter(self.client._imap, self.capabilities, **options)


@dataclass
class _Command:
    tag: bytes
    items: list[AppendItem]
    nbytes: int
    header_sent: bool = True
    awaiting_continuation: Optional[AppendItem] = None
    results: list[AppendResult] = field(default_factory=list)


class AppendWriter:
    """Pipelined APPEND / MULTIAPPEND over an imaplib connection's socket.

    Use :meth:`append`, which yields the results of each command as its
    tagged answer arrives (so the caller can journal them at once).  Every
    answer is read before :meth:`append` returns, so imaplib's own state is
    left as it was.  A MULTIAPPEND the server refuses (it is all or nothing)
    is retried message by message, so only the offending message is reported.
    """

    _tags = itertools.count(1)

    def __init__(self, imap: imaplib.IMAP4, capabilities: frozenset[str], *,
                 group_count: int = 50, group_bytes: int = 2 << 20,
                 window_commands: int = 8, window_bytes: int = 16 << 20,
                 meter: Optional[Callable[[int], None]] = None) -> None:
        self.imap = imap
        # Called with the bytes of each send as it goes (the restore's ByteMeter), so
        # the bar moves while a large message is uploaded, not when it has landed.
        self.meter = meter
        self.uidplus = "UIDPLUS" in capabilities
        if "LITERAL+" in capabilities:
            self.nonsync_max = 1 << 62
        elif "LITERAL-" in capabilities:
            self.nonsync_max = 4096
        else:
            self.nonsync_max = -1
        self.multi = "MULTIAPPEND" in capabilities and group_count > 1
        self.group_count = group_count if self.multi else 1
        self.group_bytes = group_bytes
        self.window_commands = max(1, window_commands)
        self.window_bytes = window_bytes

    # ------------------------------------------------------------ public

    def append(self, mailbox: bytes, items: Iterable[AppendItem]) -> Iterator[list[AppendResult]]:
        """Upload ``items`` into ``mailbox`` (modified UTF-7); yields result lists."""
        try:
            yield from self._append(mailbox, items)
        except (OSError, EOFError, ssl.SSLError, imaplib.IMAP4.abort) as exc:
            raise ConnectionLost(f"APPEND: {exc.__class__.__name__}: {exc}") from exc

    def _append(self, mailbox: bytes, items: Iterable[AppendItem]) -> Iterator[list[AppendResult]]:
        inflight: dict[bytes, _Command] = {}
        retry: deque[list[AppendItem]] = deque()
        source = self._groups(items)
        while True:
            group = retry.popleft() if retry else next(source, None)
            if group is None:
                if not inflight:
                    return
                done = self._read(inflight)
            else:
                nbytes = sum(i.size for i in group)
                while inflight and (len(inflight) >= self.window_commands or
                                    sum(c.nbytes for c in inflight.values()) + nbytes
                                    > self.window_bytes):
                    yield from self._settle(self._read(inflight), retry)
                try:
                    done = self._send(mailbox, group, nbytes, inflight)
                except _Unreadable as exc:
                    yield from self._abandon(exc, inflight, retry)
                    raise AppendAborted(exc.item, exc.reason) from None
            yield from self._settle(done, retry)

    def _abandon(self, exc: _Unreadable, inflight: dict[bytes, _Command],
                 retry: deque[list[AppendItem]]) -> Iterator[list[AppendResult]]:
        """Answers for the commands sent before the broken one, then drop the line.

        The broken command's literal is unfinished, so the server waits for the
        rest and answers nothing for it; the commands before it are complete and
        get their answers.  Nothing more may be sent: any byte would go into the
        literal.  Closing the socket makes the server discard the APPEND.
        """
        yield from self._settle(exc.done, retry)
        broken = next((t for t, c in inflight.items()
                       if any(i is exc.item for i in c.items)), None)
        while any(t != broken for t in inflight):
            yield from self._settle(self._read(inflight), retry)
        with contextlib.suppress(Exception):
            self.imap.shutdown()

    # ------------------------------------------------------------ internals

    def _groups(self, items: Iterable[AppendItem]) -> Iterator[list[AppendItem]]:
        group: list[AppendItem] = []
        size = 0
        for item in items:
            alone = (not item.size or item.size > self.nonsync_max
                     or item.size >= self.group_bytes)
            if group and (alone or len(group) >= self.group_count
                          or size + item.size > self.group_bytes):
                yield group
                group, size = [], 0
            if alone:
                yield [item]
                continue
            group.append(item)
            size += item.size
        if group:
            yield group

    def _settle(self, done: list[_Command], retry: deque[list[AppendItem]]
                ) -> Iterator[list[AppendResult]]:
        for cmd in done:
            failed = [r for r in cmd.results if not r.ok]
            if len(cmd.items) > 1 and failed:
                retry.extend([item] for item in cmd.items)  # find the one that is refused
                continue
            yield cmd.results

    def _part(self, item: AppendItem, sync: bool) -> bytes:
        flags = b"(" + " ".join(item.flags).encode("ascii") + b")"
        date = (b" " + imap_date(item.internaldate).encode("ascii")
                if item.internaldate is not None else b"")
        mark = b"" if sync else b"+"
        return flags + date + b" {" + str(item.size).encode() + mark + b"}\r\n"

    def _literal(self, item: AppendItem) -> Iterator[bytes]:
        """Exactly ``item.size`` bytes, or :class:`_Unreadable` before the last of them.

        One chunk is held back until the next one (or the end) is read, so a
        source longer or shorter than announced is found while the literal is
        still unfinished.
        """
        got = 0
        held = b""
        try:
            for chunk in item.chunks():
                if not chunk:
                    continue
                got += len(chunk)
                if got > item.size:
                    raise _Unreadable(item, _("the archive holds more than the {recorded} "
                                              "bytes recorded").format(recorded=item.size))
                if held:
                    yield held
                held = chunk
        except (OSError, ValueError) as exc:
            raise _Unreadable(item, getattr(exc, "strerror", None) or str(exc)) from exc
        if got != item.size:
            raise _Unreadable(item, _("the archive holds {size} bytes, not the {recorded} "
                                      "recorded").format(size=got, recorded=item.size))
        if held:
            yield held
        item.sent()

    def _pieces(self, head: bytes, group: list[AppendItem]) -> Iterator[bytes]:
        for i, item in enumerate(group):
            yield (head if i == 0 else b" ") + self._part(item, False)
            yield from self._literal(item)
        yield b"\r\n"

    def _send(self, mailbox: bytes, group: list[AppendItem], nbytes: int,
              inflight: dict[bytes, _Command]) -> list[_Command]:
        tag = b"ap%d" % next(self._tags)
        cmd = _Command(tag, group, nbytes)
        head = tag + b" APPEND " + quote(mailbox) + b" "
        sync = len(group) == 1 and group[0].size > self.nonsync_max
        inflight[tag] = cmd
        if not sync:
            self._write(self._pieces(head, group))
            return []
        item = group[0]
        self.imap.send(head + self._part(item, True))
        cmd.awaiting_continuation = item
        done: list[_Command] = []
        while cmd.awaiting_continuation is not None and tag in inflight:
            done.extend(self._read(inflight))
        if cmd.awaiting_continuation is None and tag in inflight:
            try:
                self._write(itertools.chain(self._literal(item), (b"\r\n",)))
            except _Unreadable as exc:
                exc.done = done
                raise
        return done

    def _write(self, pieces: Iterable[bytes]) -> None:
        buf: list[bytes] = []
        size = 0
        for piece in pieces:  # coalesce small pieces; send big ones in 256 kB sends
            if len(piece) > _SEND:
                if buf:
                    self._send_metered(b"".join(buf))
                    buf, size = [], 0
                for start in range(0, len(piece), _SEND):
                    self._send_metered(piece[start:start + _SEND])
                continue
            buf.append(piece)
            size += len(piece)
            if size > _SEND:
                self._send_metered(b"".join(buf))
                buf, size = [], 0
        if buf:
            self._send_metered(b"".join(buf))

    def _send_metered(self, data: bytes) -> None:
        self.imap.send(data)
        if self.meter is not None:
            self.meter(len(data))

    def _line(self) -> bytes:
        line: bytes = self.imap.readline()
        if not line:
            raise EOFError("the server closed the connection")
        while True:  # an untagged answer may carry literals: read them whole
            m = _LITERAL_END.search(line)
            if not m:
                return line
            line += self.imap.read(int(m.group(1)))
            more: bytes = self.imap.readline()
            if not more:
                raise EOFError("the server closed the connection")
            line += more

    def _read(self, inflight: dict[bytes, _Command]) -> list[_Command]:
        """Read one response line; returns the commands it completed (0 or 1)."""
        line = self._line()
        if line.startswith(b"+"):
            for cmd in inflight.values():
                if cmd.awaiting_continuation is not None:
                    cmd.awaiting_continuation = None
                    return []
            raise ServerError(_("unexpected continuation from the server: {line!r}").format(
                                line=line[:200]))
        if line.startswith(b"*"):
            if line[:6].upper() == b"* BYE ":
                raise EOFError(as_text(line.strip()))
            return []
        m = _TAGGED.match(line.rstrip(b"\r\n"))
        if not m or m.group(1) not in inflight:
            log.debug("ignored line %r", line[:200])
            return []
        cmd = inflight.pop(m.group(1))
        status, text = m.group(2).upper(), m.group(3)
        if status != b"OK":
            reason = as_text(text).strip() or as_text(status)
            cmd.results = [AppendResult(item, False, reason=reason) for item in cmd.items]
            return [cmd]
        uids: list[Optional[int]] = [None] * len(cmd.items)
        uidvalidity: Optional[int] = None
        found = _APPENDUID.search(text)
        if found and self.uidplus:
            got = _uids(found.group(2))
            if len(got) == len(cmd.items):
                uidvalidity = int(found.group(1))
                uids = list(got)
        cmd.results = [AppendResult(item, True, uid, uidvalidity)
                       for item, uid in zip(cmd.items, uids)]
        return [cmd]

