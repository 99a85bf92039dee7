"""POP3 source: the INBOX of a POP-only user, read without changing anything.

Never DELE.  Messages are read with ``TOP n <huge>``, which Dovecot (and
most servers) serve without marking the message seen, unlike RETR; if TOP
is missing the user must allow RETR with ``--allow-seen``.  Commands are
pipelined when the server offers PIPELINING (RFC 2449).  A POP3 message is
keyed by its UIDL; the engine sees it as UIDVALIDITY 0 and a UID derived from
a hash of the UIDL (see :func:`uid_for_uidl`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from typing import Callable, Optional

from archiver.account import Endpoint, ssl_context
from archiver.errors import ConnectionFailed, ServerError, TLSError, UsageError
from archiver.i18n import _
from archiver.index import POP3_UIDVALIDITY, uid_for_uidl
from archiver.sources.base import (
    ConnectionLost,
    FetchFailed,
    Folder,
    FolderStatus,
    MessageMeta,
)
from archiver.sources.connection import (
    DROPS,
    connect_error,
    dropped,
    login_refused,
    retry_dropped,
    unencrypted,
    wrong_protocol,
)

log = logging.getLogger("archiver.pop3")

TOP_ALL_LINES = 2**31 - 1
_CHUNK = 1 << 20
_MAX_LINE = 64 * 1024
_MAX_PENDING = 4 * _CHUNK  # bytes of one message line held before passing them on


class ErrReply(ServerError):
    """A ``-ERR`` answer, with the server's own words (a refused login's reason)."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


class _Reader:
    """Buffered reads of lines and dot-terminated blocks from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(_CHUNK)
        if not data:
            raise ConnectionLost("the server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while True:
            cut = self.buf.find(b"\r\n")
            if cut >= 0:
                out = bytes(self.buf[:cut])
                del self.buf[: cut + 2]
                return out
            if len(self.buf) > _MAX_LINE:
                raise ServerError(_("the POP3 server sent an over-long status line"))
            self._fill()

    def block(self, write: Callable[[bytes], None]) -> int:
        """Read a multi-line response body up to ``.CRLF``, dot-unstuffed; returns its size.

        Works chunk by chunk (memory stays flat for huge messages): the text is
        cut just before a CRLF, so every ``CRLF..`` stuffing sits inside one piece.
        """
        total = 0
        at_start = True
        while True:
            if at_start:
                while len(self.buf) < 3:
                    self._fill()
                if self.buf[:3] == b".\r\n":
                    del self.buf[:3]
                    return total
                if self.buf[:2] == b"..":
                    del self.buf[:1]
                at_start = False
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                piece = bytes(self.buf[: end + 2])
                del self.buf[: end + 5]
                piece = piece.replace(b"\r\n..", b"\r\n.")
                write(piece)
                return total + len(piece)
            cut = self.buf.rfind(b"\r\n", 0, max(0, len(self.buf) - 4))
            if cut > 0:
                piece = bytes(self.buf[:cut]).replace(b"\r\n..", b"\r\n.")
                del self.buf[:cut]
                write(piece)
                total += len(piece)
            elif len(self.buf) > _MAX_PENDING:
                # One endless line (no CRLF to cut at): without this the whole of it
                # was buffered, and a hostile server could exhaust memory.  Pass on
                # all but the last bytes, which might begin a "CRLF." sequence.
                keep = len(self.buf) - 4
                while keep > 0 and self.buf[keep - 1] == 0x0D:
                    keep -= 1
                piece = bytes(self.buf[:keep]).replace(b"\r\n..", b"\r\n.")
                del self.buf[:keep]
                write(piece)
                total += len(piece)
            self._fill()


class Pop3Source:
    """One POP3 session on the account's INBOX (the engine's one folder)."""

    protocol = "pop3"

    def __init__(self, endpoint: Endpoint, password: str, timeout: float = 60.0,
                 allow_seen: bool = False) -> None:
        self.endpoint = endpoint
        self._password = password
        self.timeout = timeout
        self.allow_seen = allow_seen
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[_Reader] = None
        self.capabilities: frozenset[str] = frozenset()
        self.warnings: list[str] = []
        self._numbers: dict[int, int] = {}  # uid -> message number in this session
        self._sizes: dict[int, int] = {}
        self._uidls: dict[int, str] = {}
        self._list_sizes: dict[int, int] = {}
        self.use_top = True
        self.prefix = ""
        self._connected_once = False
        # Called with each piece of a message as it arrives (the engine's ByteMeter),
        # so a long RETR/TOP moves the progress while it is read, not at its end.
        self.meter: Optional[Callable[[int], None]] = None

    # ------------------------------------------------------------ connection

    # As for IMAP: the first connect of a run retries a line dropped mid-setup; a
    # reconnect does not (the engine's reconnect loop already retries).
    connect_attempts = 3
    connect_backoff = 1.0  # seconds before the 2nd attempt, doubling

    def connect(self) -> None:
        """Connect, secure, log in; every failure is an :class:`ArchiverError`.

        A line dropped during the TLS handshake, greeting or login used to escape
        as a bare ConnectionLost (a traceback, and on a reconnect the end of the
        run) or read as "TLS failed, check the port"; it is now
        :class:`ConnectionDropped`, retried on the first connect.
        """
        attempts = 1 if self._connected_once else max(1, self.connect_attempts)
        retry_dropped(self._connect_once, attempts, self.connect_backoff)
        self._connected_once = True

    def _connect_once(self) -> None:
        ep = self.endpoint
        ctx = ssl_context(ep.tls, ep.options)
        try:
            raw = socket.create_connection((ep.host, ep.port), timeout=self.timeout)
            sock: socket.socket = raw
            if ep.implicit_tls:
                sock = ctx.wrap_socket(raw, server_hostname=ep.host)
        except DROPS as exc:
            raise dropped(ep, "the TLS handshake", exc) from None
        except (OSError, ssl.SSLError) as exc:
            raise connect_error(ep, exc) from None
        self._sock, self._reader = sock, _Reader(sock)
        try:
            greeting = self._line("greeting")
            if not greeting.startswith(b"+OK"):
                raise wrong_protocol(ep, "POP3", greeting)
            self._read_capa()
            if not ep.implicit_tls:
                self._stls(ctx)
            self._login()
            self._read_capa()
            self._choose_fetch()
        except ConnectionLost as exc:
            self.close(quit_=False)
            raise dropped(ep, "the greeting or login", exc) from None
        except BaseException:
            self.close(quit_=False)
            raise

    def _line(self, what: str) -> bytes:
        assert self._reader is not None
        try:
            return self._reader.line()
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionLost(f"{what}: {exc.__class__.__name__}: {exc}") from exc

    def _send(self, text: str) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(text.encode("utf-8") + b"\r\n")
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionLost(f"sending {text.split(' ', 1)[0]}: {exc}") from exc

    def _command(self, text: str, what: Optional[str] = None) -> bytes:
        self._send(text)
        reply = self._line(what or text.split(" ", 1)[0])
        if not reply.startswith(b"+OK"):
            said = reply.decode('utf-8', 'replace')[:200]
            raise ErrReply(_("{command}: the server said {reply}").format(
                command=what or text.split(' ', 1)[0], reply=said), said)
        return reply

    def _multiline(self, text: str) -> list[bytes]:
        self._command(text)
        lines: list[bytes] = []
        assert self._reader is not None
        try:
            self._reader.block(lines.append)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionLost(f"{text}: {exc}") from exc
        return b"".join(lines).split(b"\r\n")

    def _read_capa(self) -> None:
        try:
            lines = self._multiline("CAPA")
        except ServerError:
            self.capabilities = frozenset()
            return
        self.capabilities = frozenset(
            line.decode("ascii", "replace").strip().upper() for line in lines if line.strip())

    def _stls(self, ctx: ssl.SSLContext) -> None:
        ep = self.endpoint
        if "STLS" not in self.capabilities:
            if not ep.tls.plaintext:
                raise TLSError(unencrypted(ep, "STLS", "pop3s", 995))
            self.warnings.append(_("WARNING: {host} offers no STLS; logging in over an "
                                   "UNENCRYPTED connection (--plaintext)").format(host=ep.host))
            return
        self._command("STLS")
        assert self._sock is not None
        try:
            self._sock = ctx.wrap_socket(self._sock, server_hostname=ep.host)
        except DROPS as exc:
            raise dropped(ep, "the STLS handshake", exc) from None
        except (OSError, ssl.SSLError) as exc:
            raise connect_error(ep, exc) from None
        self._reader = _Reader(self._sock)

    def _login(self) -> None:
        ep = self.endpoint
        master = ep.master
        try:
            if master is not None and master.mode == "authzid":
                self._auth_plain(ep.user, master.name)
            else:
                self._command(f"USER {ep.login}", "USER")
                self._command(f"PASS {self._password}", "PASS")
        except ServerError as exc:
            text = str(exc)
            if "IN-USE" in text.upper() or "SYS/TEMP" in text.upper():
                raise ConnectionFailed(_("{host} refused the login for now ({text}); wait a "
                                         "moment and rerun").format(host=ep.host, text=text),
                                       "unavailable") from None
            raise login_refused(ep, exc.reply if isinstance(exc, ErrReply) else text) from None

    def _auth_plain(self, authorization: str, authentication: str) -> None:
        """``AUTH PLAIN`` (RFC 5034) with an authorization identity: the admin's
        login for another user's mailbox.  The credentials go after the server's
        ``+`` (not as an initial response), which every POP3 SASL server takes."""
        import base64

        blob = f"{authorization}\0{authentication}\0{self._password}".encode()
        self._send("AUTH PLAIN")
        reply = self._line("AUTH")
        if not reply.startswith(b"+") or reply.startswith(b"+OK"):
            raise ServerError(_("{command}: the server said {reply}").format(
                command="AUTH PLAIN", reply=reply.decode("utf-8", "replace")[:200]))
        self._command(base64.b64encode(blob).decode("ascii"), "AUTH PLAIN")

    def _choose_fetch(self) -> None:
        if "TOP" in self.capabilities:
            return
        # No CAPA (or TOP not listed): probe it on the first message, if any.
        stat = self._command("STAT").split()
        if len(stat) >= 2 and stat[1] != b"0":
            try:
                self._multiline("TOP 1 0")
                return
            except ServerError:
                pass
        else:
            return
        if not self.allow_seen:
            raise UsageError(
                _("{host} has no usable TOP command, so reading mail would mark it read on "
                  "the server: rerun with --allow-seen to accept that").format(
                  host=self.endpoint.host))
        self.use_top = False
        self.warnings.append(_("note: the server has no TOP; messages were read with RETR, "
                             "which marks them read on the server (--allow-seen)"))

    def close(self, quit_: bool = True) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if quit_:
            with contextlib.suppress(Exception):
                sock.sendall(b"QUIT\r\n")
                sock.recv(512)
        with contextlib.suppress(Exception):
            sock.close()

    # ------------------------------------------------------------ engine API

    def folders(self) -> list[Folder]:
        return [Folder("INBOX", b"INBOX", None, (), ("INBOX",))]

    def status(self, folder: Folder) -> Optional[FolderStatus]:
        return None  # listing UIDLs is the cheap check on POP3

    def open_folder(self, folder: Folder) -> FolderStatus:
        stat = self._command("STAT").split()
        try:
            count = int(stat[1])
        except (IndexError, ValueError):
            raise ServerError(_("STAT: the server's answer did not parse")) from None
        return FolderStatus(uidvalidity=POP3_UIDVALIDITY, uidnext=0, messages=count)

    def mailbox_size(self, folder: Folder) -> tuple[int, int]:
        """(messages, bytes) of the INBOX, from STAT."""
        stat = self._command("STAT").split()
        try:
            return int(stat[1]), int(stat[2])
        except (IndexError, ValueError):
            raise ServerError(_("STAT: the server's answer did not parse")) from None

    def list_messages(self, count: int) -> list[MessageMeta]:
        if count == 0:
            return []
        sizes: dict[int, int] = {}
        for line in self._multiline("LIST"):
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                sizes[int(parts[0])] = int(parts[1])
        self._list_sizes = sizes
        uidls: dict[int, str] = {}
        if "UIDL" in self.capabilities or not self.capabilities:
            try:
                for line in self._multiline("UIDL"):
                    parts = line.split(None, 1)
                    if len(parts) == 2 and parts[0].isdigit():
                        uidls[int(parts[0])] = parts[1].strip().decode("utf-8", "surrogateescape")
            except ServerError:
                uidls = {}
        if not uidls:
            uidls = self._content_keys(sorted(sizes))
        self._numbers.clear()
        self._sizes.clear()
        out: list[MessageMeta] = []
        seen: Counter[str] = Counter()
        for num in sorted(uidls):
            uidl = uidls[num]
            seen[uidl] += 1
            if seen[uidl] > 1:
                # A server listing one UIDL twice (or two identical messages keyed by
                # content): both are kept, the later ones as "UIDL#2", "UIDL#3", ...
                uidl = f"{uidl}#{seen[uidl]}"
            uid = uid_for_uidl(uidl)
            self._numbers[uid] = num
            self._uidls[uid] = uidl
            self._sizes[uid] = sizes.get(num, 0)
            out.append(MessageMeta(uid=uid, flags=(), keywords=(), internaldate=None,
                                   size=sizes.get(num, 0), uidl=uidl))
        return out

    def _content_keys(self, numbers: list[int]) -> dict[int, str]:
        """Keys for a server without UIDL: a hash of each message's header block and size.

        Costs one ``TOP n 0`` per message and run; said once, so the user knows.
        """
        if not self.use_top:
            raise ServerError(_("the POP3 server supports neither UIDL nor TOP, so archiver "
                              "cannot tell which messages it already has"))
        self.warnings.append(_("note: the server has no UIDL; messages are recognised by a hash "
                             "of their headers and size instead"))
        keys: dict[int, str] = {}
        assert self._reader is not None
        for num in numbers:
            self._send(f"TOP {num} 0")
            reply = self._line("TOP")
            if not reply.startswith(b"+OK"):
                continue
            pieces: list[bytes] = []
            try:
                self._reader.block(pieces.append)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionLost(f"TOP {num} 0: {exc}") from exc
            digest = hashlib.sha256(b"".join(pieces)).hexdigest()
            keys[num] = f"hdr-sha256:{digest}:{self._list_sizes.get(num, 0)}"
        return keys

    def _fetch_command(self, uid: int) -> str:
        num = self._numbers[uid]
        return f"TOP {num} {TOP_ALL_LINES}" if self.use_top else f"RETR {num}"

    def fetch_headers(self, uids: list[int]) -> dict[int, bytes]:
        """None: a UIDL that names another message is told by its LIST size alone, and the
        message is fetched whole (archiver.renumber never asks a POP3 source for headers)."""
        return {}

    def fetch(self, uids: list[int]) -> Iterator[tuple[int, bytes | FetchFailed]]:
        """Pipelined TOP (or RETR) for a batch; one reply per message, in order."""
        if "PIPELINING" in self.capabilities:
            assert self._sock is not None
            try:
                self._sock.sendall("".join(self._fetch_command(u) + "\r\n"
                                           for u in uids).encode())
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionLost(f"sending TOP: {exc}") from exc
            for uid in uids:
                yield uid, self._read_message(uid)
        else:
            for uid in uids:
                self._send(self._fetch_command(uid))
                yield uid, self._read_message(uid)

    def _read_message(self, uid: int,
                      write: Optional[Callable[[bytes], None]] = None) -> bytes | FetchFailed:
        reply = self._line("TOP")
        label = f"message {self._uidls.get(uid, uid)} (UIDL)"
        if not reply.startswith(b"+OK"):
            return FetchFailed(uid, _("the server said {reply}").format(
                                      reply=reply.decode("utf-8", "replace")[:200]),
                               label)
        pieces: list[bytes] = []
        sink = write or pieces.append
        meter = self.meter
        if meter is not None:
            keep = sink

            def sink(piece: bytes) -> None:
                meter(len(piece))
                keep(piece)
        assert self._reader is not None
        try:
            size = self._reader.block(sink)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionLost(f"reading a message: {exc}") from exc
        expected = self._sizes.get(uid, 0)
        # +2: a message without a final newline must be ended with CRLF on the wire.
        if expected and size not in (expected, expected + 2):
            return FetchFailed(uid, _("the server announced {expected} bytes but sent {size}; "
                                      "not saved").format(expected=expected, size=size), label)
        return b"" if write else b"".join(pieces)

    def fetch_stream(self, uid: int, size_hint: int, write: Callable[[bytes], None],
                     chunk: int = 0, offset: int = 0, overlap: bytes = b"") -> int:
        """RETR/TOP into ``write``.  POP3 cannot start in the middle of a message, so a
        cut message is fetched again whole (the engine gives POP3 no resumable spool)."""
        if offset:
            raise ValueError("POP3 cannot resume a message in the middle")
        self._send(self._fetch_command(uid))
        result = self._read_message(uid, write)
        if isinstance(result, FetchFailed):
            raise result
        return size_hint
