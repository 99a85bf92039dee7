"""A scripted, plain-text IMAP server for what a real server will not do.

Only for hostile or broken behaviour (tests/test_hostile.py): malformed FETCH
answers, lying sizes, BYE mid-fetch, odd UIDs, huge lines, dangerous folder
names.  Everything else is tested against the real Dovecot.

``FakeImap(mailbox)`` serves ``mailbox`` (folder raw name -> {uid: body}) on
127.0.0.1 in a thread, one connection at a time, with just enough IMAP4rev1
for archiver (CAPABILITY, LOGIN, LIST, STATUS, EXAMINE, UID FETCH of the listing,
``BODY[]``, ``BODY[]<start.length>`` and ``BODY[HEADER]``, LOGOUT).
Subclass and override a ``reply_*`` method, or set ``hooks``, to misbehave;
``self.connections`` counts accepted connections (1-based in hooks).
Use with ``--plaintext`` and ``imap://``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from typing import Optional

Mailbox = dict[bytes, dict[int, bytes]]


class Closed(Exception):
    """The script closed the connection on purpose."""


class FakeImap:
    uidvalidity = 777
    separator = b"/"
    # The NAMESPACE answer's body, e.g. b'(("INBOX." ".")) NIL NIL' (Courier): with it the
    # server announces the NAMESPACE capability and answers the command.
    namespace: Optional[bytes] = None
    noselect: frozenset[bytes] = frozenset()  # folders listed \Noselect

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.connections = 0
        self.commands: list[bytes] = []
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.2)
        self.port: int = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.selected: Optional[bytes] = None

    def __enter__(self) -> FakeImap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._srv.close()

    # ------------------------------------------------------------ plumbing

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.settimeout(10)
            try:
                self._session(conn)
            except (Closed, OSError):
                pass
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

    def _read_command(self, conn: socket.socket, buf: bytearray) -> bytes:
        """One command line, literals included (we answer '+' to each)."""
        out = b""
        while True:
            while b"\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    raise Closed()
                buf += data
            cut = buf.index(b"\r\n")
            line = bytes(buf[:cut])
            del buf[:cut + 2]
            out += line
            lit = re.search(rb"\{(\d+)\}$", line)
            if not lit:
                return out
            conn.sendall(b"+ go ahead\r\n")
            n = int(lit.group(1))
            while len(buf) < n:
                data = conn.recv(65536)
                if not data:
                    raise Closed()
                buf += data
            out += b"\r\n" + bytes(buf[:n])
            del buf[:n]

    def _session(self, conn: socket.socket) -> None:
        self.selected = None
        conn.sendall(self.greeting())
        buf = bytearray()
        while not self._stop.is_set():
            line = self._read_command(conn, buf)
            self.commands.append(line)
            tag, _, rest = line.partition(b" ")
            cmd = rest.split(b" ", 1)[0].upper()
            if cmd == b"UID":
                cmd = b"UID " + rest.split(b" ", 2)[1].upper()
            handler = self.handlers().get(cmd, lambda t, r: t + b" BAD unknown\r\n")
            conn.sendall(handler(tag, rest))
            if cmd == b"LOGOUT":
                return

    # ------------------------------------------------------------ replies

    def handlers(self) -> dict[bytes, Callable[[bytes, bytes], bytes]]:
        """Command -> reply(tag, rest); a subclass adds commands (e.g. APPEND for a target)."""
        return {
            b"CAPABILITY": self.reply_capability, b"LOGIN": self.reply_login,
            b"LIST": self.reply_list, b"STATUS": self.reply_status,
            b"EXAMINE": self.reply_examine, b"SELECT": self.reply_examine,
            b"UID FETCH": self.reply_fetch, b"FETCH": self.reply_seq_fetch,
            b"LOGOUT": self.reply_logout, b"NAMESPACE": self.reply_namespace,
            b"NOOP": lambda t, r: t + b" OK noop\r\n",
        }

    def caps(self) -> bytes:
        return b"IMAP4rev1 AUTH=PLAIN" + (b" NAMESPACE" if self.namespace else b"")

    def greeting(self) -> bytes:
        return b"* OK [CAPABILITY " + self.caps() + b"] fake ready\r\n"

    def reply_capability(self, tag: bytes, rest: bytes) -> bytes:
        return b"* CAPABILITY " + self.caps() + b"\r\n" + tag + b" OK done\r\n"

    def reply_namespace(self, tag: bytes, rest: bytes) -> bytes:
        if not self.namespace:
            return tag + b" BAD unknown\r\n"
        return b"* NAMESPACE " + self.namespace + b"\r\n" + tag + b" OK done\r\n"

    def reply_login(self, tag: bytes, rest: bytes) -> bytes:
        return tag + b" OK logged in\r\n"

    def reply_logout(self, tag: bytes, rest: bytes) -> bytes:
        return b"* BYE bye\r\n" + tag + b" OK done\r\n"

    def list_line(self, name: bytes) -> bytes:
        attrs = b"\\Noselect" if name in self.noselect else b"\\HasNoChildren"
        if any(c in name for c in b'"\\\x00\r\n') or any(c > 0x7E for c in name):
            return b'* LIST (%s) "%s" {%d}\r\n%s\r\n' % (attrs, self.separator, len(name), name)
        return b'* LIST (%s) "%s" "%s"\r\n' % (attrs, self.separator, name)

    def reply_list(self, tag: bytes, rest: bytes) -> bytes:
        return b"".join(self.list_line(n) for n in self.mailbox) + tag + b" OK done\r\n"

    def folder_arg(self, rest: bytes) -> bytes:
        """The mailbox argument of STATUS/EXAMINE, quoted or literal."""
        arg = rest.split(b" ", 1)[1]
        lit = re.match(rb"\{(\d+)\}\r\n", arg)
        if lit:
            return arg[lit.end():lit.end() + int(lit.group(1))]
        if arg.startswith(b'"'):
            end = 1
            out = bytearray()
            while end < len(arg) and arg[end:end + 1] != b'"':
                if arg[end:end + 1] == b"\\":
                    end += 1
                out += arg[end:end + 1]
                end += 1
            return bytes(out)
        return arg.split(b" ", 1)[0]

    def reply_status(self, tag: bytes, rest: bytes) -> bytes:
        name = self.folder_arg(rest)
        msgs = self.mailbox.get(name, {})
        nxt = max(msgs, default=0) + 1
        return (b"* STATUS {%d}\r\n%s (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
                % (len(name), name, len(msgs), nxt, self.uidvalidity) + tag + b" OK done\r\n")

    def reply_examine(self, tag: bytes, rest: bytes) -> bytes:
        name = self.folder_arg(rest)
        if name not in self.mailbox:
            return tag + b" NO no such folder\r\n"
        self.selected = name
        msgs = self.mailbox[name]
        return (b"* %d EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                % (len(msgs), self.uidvalidity, max(msgs, default=0) + 1)
                + tag + b" OK [READ-ONLY] done\r\n")

    def uids(self, spec: bytes) -> list[int]:
        msgs = self.mailbox.get(self.selected or b"", {})
        out: list[int] = []
        for part in spec.split(b","):
            if part.endswith(b":*"):  # n:* is n..highest, or the highest alone past it
                low = int(part[:-2])
                out += [u for u in sorted(msgs) if u >= low] or sorted(msgs)[-1:]
            elif b":" in part:
                a, b = part.split(b":")
                out += [u for u in sorted(msgs) if int(a) <= u <= int(b)]
            else:
                out.append(int(part))
        return out

    def reply_seq_fetch(self, tag: bytes, rest: bytes) -> bytes:
        """``FETCH seq-set items`` (sequence numbers, as restore's listing asks): answered
        as the UID FETCH of the same messages."""
        _, spec, items = rest.split(b" ", 2)
        order = sorted(self.mailbox.get(self.selected or b"", {}))
        uids: list[int] = []
        for part in spec.split(b","):
            lo, _, hi = part.partition(b":")
            first = int(lo)
            last = len(order) if hi == b"*" else int(hi or lo)
            uids += order[first - 1:last]
        if not uids:
            return tag + b" OK done\r\n"
        as_uids = b",".join(b"%d" % u for u in uids)
        return self.reply_fetch(tag, b"UID FETCH " + as_uids + b" " + items)

    def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return (b'* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE "01-Jan-2024 10:00:00 +0900" '
                b"RFC822.SIZE %d)\r\n" % (seq, uid, len(body)))

    def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n" % (seq, uid, len(body), body)

    def partial_item(self, seq: int, uid: int, body: bytes, start: int, length: int) -> bytes:
        """``BODY.PEEK[]<start.length>``: the bytes from ``start``, answered as ``BODY[]<start>``
        (``self.served`` counts the body bytes sent this way)."""
        piece = body[start:start + length]
        self.served = getattr(self, "served", 0) + len(piece)
        return b"* %d FETCH (UID %d BODY[]<%d> {%d}\r\n%s)\r\n" % (seq, uid, start, len(piece),
                                                                   piece)

    def header_item(self, seq: int, uid: int, body: bytes) -> bytes:
        cut = body.find(b"\r\n\r\n")
        head = body[:cut + 4] if cut >= 0 else body
        return b"* %d FETCH (UID %d BODY[HEADER] {%d}\r\n%s)\r\n" % (seq, uid, len(head), head)

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        parts = rest.split(b" ", 3)  # UID FETCH set items
        uids, items = self.uids(parts[2]), parts[3]
        msgs = self.mailbox.get(self.selected or b"", {})
        order = sorted(msgs)
        out = []
        for uid in uids:
            if uid not in msgs:
                continue
            seq = order.index(uid) + 1
            partial = re.search(rb"BODY\.PEEK\[\]<(\d+)\.(\d+)>", items, re.IGNORECASE)
            if b"BODY.PEEK[HEADER]" in items.upper():
                out.append(self.header_item(seq, uid, msgs[uid]))
            elif partial:
                out.append(self.partial_item(seq, uid, msgs[uid], int(partial.group(1)),
                                             int(partial.group(2))))
            elif b"BODY" in items.upper():
                out.append(self.body_item(seq, uid, msgs[uid]))
            else:
                out.append(self.listing_item(seq, uid, msgs[uid]))
        return b"".join(out) + tag + b" OK done\r\n"
