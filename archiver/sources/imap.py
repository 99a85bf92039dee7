"""IMAP source: lists folders and messages and fetches their bytes, never writing.

Read-only by construction: folders are opened with EXAMINE, bodies fetched
with BODY.PEEK, and no command that changes the server (STORE, COPY, EXPUNGE,
CREATE, APPEND, SELECT) is ever sent.  Network failures surface as
:class:`ConnectionLost` so the engine can reconnect and resume; a server's
refusal to deliver one message surfaces as :class:`FetchFailed`.
"""

from __future__ import annotations

import imaplib
import logging
from collections.abc import Sequence
from typing import Any, Optional

from imapclient.response_parser import parse_response

from archiver.errors import ServerError
from archiver.i18n import _
from archiver.names import decode_mutf7
from archiver.namespaces import folder_name
from archiver.sources.base import (
    FetchFailed,
    Folder,
    FolderStatus,
    MessageMeta,
)
from archiver.sources.imap_listing import parse_listing, parse_sizes, sorted_unique
from archiver.sources.pipelined import status_many, uid_set
from archiver.sources.responses import (
    LISTING_ITEMS,
    as_text,
    status_from,
)
from archiver.sources.session import ImapSession, fetch_answers, network, uid_fetch

log = logging.getLogger("archiver.imap")


class ImapSource(ImapSession):
    """One IMAP connection to the account being archived (never writes, see above)."""

    protocol = "imap"

    # ------------------------------------------------------------ folders

    def folders(self) -> list[Folder]:
        """Every folder; with LIST-STATUS (RFC 5819) their STATUS counters come along
        and :meth:`status` answers from them (10,000 folders: one command, not 10,001)."""
        self._listed = {}
        listed = self._list_with_status() if "LIST-STATUS" in self.capabilities else None
        if listed is None:
            with network("LIST"):
                listed = self.client.list_folders()
        out: list[Folder] = []
        seen: set[bytes] = set()
        for flags, delim, raw in listed:
            raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
            if raw_bytes in seen:
                continue
            seen.add(raw_bytes)
            name = decode_mutf7(raw_bytes)
            sep = as_text(delim) if delim else None
            attrs = tuple(as_text(f) for f in flags)
            components, kind = folder_name(name, sep, self.namespaces)
            out.append(Folder(name, raw_bytes, sep, attrs, components, kind))
        return out

    def _status_items(self) -> list[bytes]:
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"]
        if "CONDSTORE" in self.capabilities:
            items.append(b"HIGHESTMODSEQ")
        if "STATUS=SIZE" in self.capabilities:
            items.append(b"SIZE")
        return items

    def _list_with_status(self) -> Optional[list[Any]]:
        """``LIST "" "*" RETURN (STATUS (...))``: the folders as ``list_folders`` gives
        them, their counters kept for :meth:`status`; None when the server refuses it."""
        imap = self.client._imap
        items = b" ".join(self._status_items()).decode()
        # With RETURN options a server gives only the attributes asked for: SPECIAL-USE
        # keeps \Sent & co., which a plain LIST carries (folders command, --folder hints).
        special = "SPECIAL-USE " if "SPECIAL-USE" in self.capabilities else ""
        try:
            with network("LIST RETURN (STATUS)"):
                typ, _ = imap._simple_command("LIST", '""', '"*"', "RETURN",
                                              f"({special}STATUS ({items}))")
                lists = imap.untagged_responses.pop("LIST", [])
                stats = imap.untagged_responses.pop("STATUS", [])
        except ServerError as exc:
            log.info("LIST-STATUS refused (%s): one STATUS per folder", exc)
            return None
        if typ != "OK":
            return None
        listed: list[Any] = self.client._proc_folder_list(lists)
        parsed = parse_response([s for s in stats if s not in (b"", None)])
        for i in range(0, len(parsed) - 1, 2):
            name, values = parsed[i], parsed[i + 1]
            if not isinstance(values, tuple) or len(values) % 2:
                continue
            raw = name if isinstance(name, bytes) else str(name).encode("utf-8")
            st = status_from(dict(zip(values[::2], values[1::2])))
            if st is not None:
                self._listed[raw] = st
        return listed

    def status(self, folder: Folder) -> Optional[FolderStatus]:
        """STATUS counters, or None if the server will not give them for this folder.

        Answered once from the last :meth:`folders` listing when it carried them
        (LIST-STATUS); asked again (STATUS) after that, e.g. after a reconnect.
        """
        listed = self._listed.pop(folder.raw_name, None)
        if listed is not None:
            return listed
        try:
            with network(f"STATUS {folder.server_name}"):
                res = self.client.folder_status(folder.raw_name, self._status_items())
        except (ServerError, UnicodeError):  # UnicodeError: see open_folder
            return None
        return status_from(res)

    def status_many(self, folders: Sequence[Folder]) -> dict[str, Optional[FolderStatus]]:
        """STATUS of every folder in one round trip (see archiver.sources.pipelined);
        a folder whose answer did not come back right is asked again on its own."""
        out: dict[str, Optional[FolderStatus]] = {}
        ask: list[Folder] = []
        for folder in folders:  # LIST-STATUS may have answered already
            listed = self._listed.pop(folder.raw_name, None)
            if listed is not None:
                out[folder.name] = listed
            else:
                ask.append(folder)
        if not ask:
            return out
        with network(f"STATUS ({len(ask)} folders)"):
            answers = status_many(self.client, [f.raw_name for f in ask], self._status_items())
        for folder, res in zip(ask, answers):
            out[folder.name] = (status_from(res) if res is not None
                                else self.status(folder))
        return out

    def open_folder(self, folder: Folder) -> FolderStatus:
        """EXAMINE (read-only) the folder; returns its UIDVALIDITY etc.

        A name the server listed with raw 8-bit bytes (UTF-8 without UTF8=ACCEPT)
        cannot be sent back through imapclient, which raised UnicodeDecodeError:
        a traceback that ended the whole run.  Such a folder is now one reported
        problem (exit 3) and the other folders are archived.
        """
        try:
            with network(f"EXAMINE {folder.server_name}"):
                res = self.client.select_folder(folder.raw_name, readonly=True)
        except ServerError as exc:
            raise _examine_refused(folder, str(exc)) from None
        except UnicodeError:
            raise FetchFailed(0, _("the server lists this folder with raw 8-bit bytes in its "
                                 "name, which cannot be sent back to it; not archived"),
                              label=f"folder {folder.server_name!r}") from None
        st = status_from(res, exists_key=b"EXISTS")
        if st is None:
            raise ServerError(_("EXAMINE {server_name}: no UIDVALIDITY from the server").format(
                                server_name=folder.server_name))
        self._uidnext = st.uidnext  # sizes the listing's UID ranges
        return st

    # ------------------------------------------------------------ messages

    # Messages per listing command (about): a 200,000-message folder listed with one
    # ``UID FETCH 1:*`` held every answer line and its parse at once (imaplib keeps a
    # command's untagged answers until it completes); in ranges memory stays flat.
    listing_range = 20_000

    def list_messages(self, count: int) -> list[MessageMeta]:
        """UID, flags, INTERNALDATE and size of every message in the open folder.

        Asked in UID ranges of about :attr:`listing_range` messages (UID ranges,
        not sequence numbers: an expunge between two commands cannot shift a
        message out of the listing).  The width assumes the UIDs below UIDNEXT
        are evenly used, so a folder with sparse UIDs costs no more commands;
        the last range is open-ended (``n:*``) and takes what arrived meanwhile.
        """
        if count == 0:
            return []
        uidnext = self._uidnext if self._uidnext > 0 else 0
        width = max(self.listing_range,
                    -(-self.listing_range * uidnext // count) if uidnext else 0)
        out: list[MessageMeta] = []
        flag_cache: dict[bytes, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        low = 1
        while True:
            last = uidnext == 0 or count <= self.listing_range or low + width >= uidnext
            uid_set = f"{low}:*" if last else f"{low}:{low + width - 1}"
            with network(f"UID FETCH {uid_set} (UID FLAGS INTERNALDATE RFC822.SIZE)"):
                parse_listing(fetch_answers(self.client, uid_set, LISTING_ITEMS), out,
                              flag_cache)
            if last:
                break
            low += width
        return sorted_unique(out)

    def open_and_list(self, folder: Folder, expected: Optional[FolderStatus]
                      ) -> tuple[FolderStatus, list[MessageMeta]]:
        """EXAMINE and the listing in one round trip (both sent, then both read).

        Only when STATUS said the folder has messages: ``UID FETCH 1:*`` on an
        empty folder is an error on some servers.  If the EXAMINE fails, the
        listing's answer (an error, or on a lax server the previous folder's
        messages) is read and dropped.
        """
        if expected is None or not 0 < expected.messages <= self.listing_range:
            opened = self.open_folder(folder)  # a big folder is listed in UID ranges
            return opened, self.list_messages(opened.messages)
        client = self.client
        imap = client._imap
        try:
            name = client._normalise_folder(folder.raw_name)
        except UnicodeError:
            opened = self.open_folder(folder)  # reports the unsendable name
            return opened, self.list_messages(opened.messages)
        with network(f"EXAMINE {folder.server_name}"):
            imap.untagged_responses = {}
            imap.is_readonly = True
            examine = imap._command("EXAMINE", name)
            imap.state = "SELECTED"  # imaplib would refuse UID FETCH before the answer
            list_tag = imap._command("UID", "FETCH", "1:*", LISTING_ITEMS)
            try:
                typ, data = imap._command_complete("EXAMINE", examine)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                typ, data = "BAD", [str(exc).encode()]
            selected = client._process_select_response(imap.untagged_responses)
            imap.untagged_responses = {}
            try:
                ltyp, _answer = imap._command_complete("FETCH", list_tag)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                ltyp = "BAD"
            answers = imap.untagged_responses.pop("FETCH", [])
        if typ != "OK":
            imap.state = "AUTH"
            raise _examine_refused(folder, as_text(data[-1] if data else typ))
        st = status_from(selected, exists_key=b"EXISTS")
        if st is None:
            raise ServerError(_("EXAMINE {server_name}: no UIDVALIDITY from the server").format(
                                server_name=folder.server_name))
        self._uidnext = st.uidnext
        if ltyp != "OK":
            if st.messages == 0:
                return st, []
            raise ServerError(_("UID FETCH 1:* in {server_name}: refused").format(
                                server_name=folder.server_name))
        out: list[MessageMeta] = []
        parse_listing(answers, out, {})
        return st, sorted_unique(out)

    def message_sizes(self, folder: Folder, low: int = 1
                      ) -> tuple[FolderStatus, dict[int, int]]:
        """UID -> RFC822.SIZE of the folder's messages from UID ``low`` on, read-only
        (EXAMINE): what the space check (archiver.space) counts.  Only the sizes, so
        it costs a fraction of the backup's own listing; ``low`` limits a rerun to the
        messages that arrived since the last complete pass."""
        opened = self.open_folder(folder)
        if opened.messages == 0 or (opened.uidnext and low >= opened.uidnext):
            return opened, {}
        with network(f"UID FETCH {low}:* (RFC822.SIZE) in {folder.server_name}"):
            sizes = parse_sizes(fetch_answers(self.client, f"{low}:*", "(UID RFC822.SIZE)"))
        return opened, {uid: n for uid, n in sizes.items() if uid >= low}  # n:* names the last

    def mailbox_size(self, folder: Folder) -> tuple[int, int]:
        """(messages, bytes) of a folder whose STATUS gave no SIZE (no STATUS=SIZE)."""
        _, sizes = self.message_sizes(folder)
        return len(sizes), sum(sizes.values())

    def fetch_headers(self, uids: list[int], chunk: int = 1000) -> dict[int, bytes]:
        """``BODY.PEEK[HEADER]`` of ``uids`` (one round trip per ``chunk`` UIDs): enough to
        tell which archived message a renumbered UID now names, without the bodies.
        A chunk the server refuses is left out: those messages are fetched whole."""
        out: dict[int, bytes] = {}
        ordered = sorted(uids)
        for start in range(0, len(ordered), chunk):
            part = ordered[start:start + chunk]
            try:
                with network(f"UID FETCH ({len(part)} messages) BODY.PEEK[HEADER]"):
                    res = uid_fetch(self.client, uid_set(part), "(UID BODY.PEEK[HEADER])")
            except ServerError as exc:
                log.info("no headers for %d messages (%s): their bodies decide", len(part), exc)
                continue
            for uid, data in res.items():
                for key, value in data.items():
                    if isinstance(key, bytes) and key.startswith(b"BODY[HEADER]"):
                        out[int(uid)] = value if isinstance(value, bytes) else b""
        return out


def _examine_refused(folder: Folder, said: str) -> FetchFailed:
    """A folder the server listed but will not open (deleted meanwhile, no rights):
    that folder's problem, reported, while the others are archived."""
    return FetchFailed(0, _("the server would not open it ({said}); not archived this time").format(
                            said=said),
                       label=f"folder {folder.server_name!r}")


