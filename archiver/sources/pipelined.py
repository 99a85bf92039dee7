"""Several IMAP commands in flight on one connection, so a slow link never idles.

Over a home link every command costs a round trip (40 ms on the benchmark's
20 ms each way) before its first byte arrives.  Sent one at a time, thirty
STATUS commands are 1.2 s of waiting, and every FETCH batch adds a pause in
which the line carries nothing.  RFC 3501 (5.5) lets a client send commands
without waiting; this module does that on top of imaplib's tagged-response
bookkeeping (``_command`` sends, ``_command_complete`` reads up to one tag):

* :func:`status_many` sends every STATUS, then reads the answers;
* :class:`FetchPipe` keeps UID FETCH commands in flight up to a byte budget
  (at least two batches, and at least twice what the line holds in one round
  trip), handing each batch's bodies over as its tagged OK arrives.

Answers are matched by UID (a FETCH response names its message), never by
position, and bodies that arrive under an earlier command's tag are kept for
the command that asked for them.  A batch the server refuses is fetched one
message at a time *after* the pipe is empty, so those answers cannot mix with
the in-flight ones.
"""

from __future__ import annotations

import collections
import imaplib
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

import imapclient
from imapclient.response_parser import parse_response

Result = tuple[int, Any]  # (uid, bytes | FetchFailed)


def status_many(client: imapclient.IMAPClient, names: Sequence[bytes],
                items: Sequence[bytes]) -> list[Optional[dict[bytes, Any]]]:
    """STATUS of every folder in ``names`` with one round trip; None where refused.

    Servers answer in order, so each tag's untagged STATUS is read by itself;
    the folder name in the answer is checked, and an answer that names
    another folder (a server that reorders) counts as refused for this one
    (the caller then asks again on its own).
    """
    imap = client._imap
    what = b"(" + b" ".join(items) + b")"
    tags: list[Optional[bytes]] = []
    for raw in names:
        try:
            tags.append(imap._command("STATUS", client._normalise_folder(raw), what))
        except UnicodeError:  # a raw 8-bit name imapclient cannot send back
            tags.append(None)
    out: list[Optional[dict[bytes, Any]]] = []
    for raw, tag in zip(names, tags):
        if tag is None:
            out.append(None)
            continue
        try:
            typ, data = imap._command_complete("STATUS", tag)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # BAD
            typ = "BAD"
        # Popped whatever the outcome: imaplib leaves a NO's untagged data behind,
        # and it must not be read as the next folder's answer.
        data = imap.untagged_responses.pop("STATUS", [])
        out.append(_status_items(data, raw) if typ == "OK" else None)
    return out


def _status_items(data: list[Any], raw: bytes) -> Optional[dict[bytes, Any]]:
    if not data or data == [None]:
        return None
    try:
        parsed = parse_response(data)
    except Exception:  # noqa: BLE001 - a garbled answer is a refusal, asked again
        return None
    if len(parsed) < 2:
        return None
    name = parsed[0]
    name_b = name if isinstance(name, bytes) else str(name).encode()
    if name_b != raw:
        return None
    pairs = parsed[-1]
    return {pairs[i].upper(): pairs[i + 1] for i in range(0, len(pairs) - 1, 2)
            if isinstance(pairs[i], bytes)}


@dataclass
class _InFlight:
    uids: list[int]
    tag: bytes
    nbytes: int


class FetchPipe:
    """UID FETCH BODY.PEEK[] batches kept in flight up to a byte budget.

    ``send``/``parse`` are the session's own command and lean parser, so the
    wire format lives in one place (archiver/sources/session.py, responses.py).
    """

    max_depth = 16

    def __init__(self, client: imapclient.IMAPClient, rtt: float,
                 parse: Callable[[list[Any]], dict[int, Any]]) -> None:
        self._imap = client._imap
        self._rtt = rtt
        self._parse = parse
        self._stash: dict[int, Any] = {}  # bodies that came in under another tag
        self._rate = 0.0  # bytes per second, measured while reading
        self.refused: list[list[int]] = []  # batches the server answered NO/BAD
        self.abandoned = False

    def budget(self, batch_bytes: int) -> int:
        """Bytes to keep asked for: two batches, and twice the line's bytes per round trip."""
        return max(4 * batch_bytes, int(2 * self._rtt * self._rate))

    def run(self, groups: Iterable[tuple[list[int], int]], batch_bytes: int
            ) -> Generator[tuple[list[int], dict[int, Any]], None, None]:
        """``(uids, nbytes)`` batches in, ``(uids, {uid: BODY[] data})`` out, in order.

        A refused batch yields nothing here and is listed in :attr:`refused`
        for the caller to fetch one message at a time once this has ended.
        """
        pending: collections.deque[_InFlight] = collections.deque()
        inflight = 0
        try:
            for uids, nbytes in groups:
                tag = self._imap._command("UID", "FETCH", uid_set(uids), "(UID BODY.PEEK[])")
                pending.append(_InFlight(uids, tag, nbytes))
                inflight += nbytes
                while pending and (inflight > self.budget(batch_bytes)
                                   or len(pending) >= self.max_depth):
                    done = pending.popleft()
                    inflight -= done.nbytes
                    got = self._complete(done)
                    if got is not None:
                        yield done.uids, got
            while pending:
                done = pending.popleft()
                got = self._complete(done)
                if got is not None:
                    yield done.uids, got
        finally:
            # Left early (Ctrl-C, a stop): answers are still due on this connection,
            # so it must not carry another command; the engine closes it.
            self.abandoned = bool(pending)

    def _complete(self, item: _InFlight) -> Optional[dict[int, Any]]:
        start = time.monotonic()
        try:
            typ, data = self._imap._command_complete("FETCH", item.tag)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # BAD: this batch only
            typ = "BAD"
        data = self._imap.untagged_responses.pop("FETCH", [])  # also after a NO
        answers = self._parse(data) if data else {}
        wanted = set(item.uids)
        for uid in list(answers):
            if uid not in wanted:
                self._stash[uid] = answers.pop(uid)
        for uid in item.uids:
            if uid not in answers and uid in self._stash:
                answers[uid] = self._stash.pop(uid)
        if typ != "OK":
            self.refused.append(item.uids)
            return None
        elapsed = time.monotonic() - start
        if elapsed > 0 and item.nbytes:
            rate = item.nbytes / elapsed
            self._rate = rate if not self._rate else 0.7 * self._rate + 0.3 * rate
        return answers


def uid_set(uids: list[int]) -> str:
    """Compact ``1:5,7,9:12`` form of a UID list (keeps command lines short)."""
    out: list[str] = []
    ordered = sorted(uids)
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)
