"""One logged-in IMAP connection, shared by the source and the restore target.

TLS or STARTTLS, the login (with [ALERT]s kept for its error), capabilities,
the namespace, the round trip that decides compression and connections,
COMPRESS=DEFLATE, and the body fetches both ends need (batches pipelined,
large messages in resumable pieces).  Network failures surface as
:class:`ConnectionLost`, a server's NO/BAD as :class:`ServerError`.
"""


from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

import imapclient
import imapclient.exceptions
from imapclient.response_parser import parse_fetch_response

from archiver.account import Endpoint, ssl_context
from archiver.errors import ConnectionFailed, LoginError, ServerError, TLSError
from archiver.i18n import _
from archiver.names import decode_mutf7
from archiver.namespaces import OTHER, PERSONAL, SHARED, Namespace, Namespaces
from archiver.sources.alerts import AlertWatch
from archiver.sources.base import (
    ConnectionLost,
    FetchFailed,
    FolderStatus,
    ResumeMismatch,
)
from archiver.sources.connection import (
    DROPS,
    connect_error,
    dropped,
    is_imap_greeting,
    login_refused,
    read_greeting,
    retry_dropped,
    unencrypted,
    wrong_protocol,
)
from archiver.sources.pipelined import FetchPipe, uid_set
from archiver.sources.responses import (
    as_text,
    body_of,
    parse_bodies,
    partial_body,
)

log = logging.getLogger("archiver.imap")

_NETWORK_ERRORS = (OSError, imaplib.IMAP4.abort, EOFError, ssl.SSLError)


class ServerUnavailable(ConnectionFailed):
    """Temporary refusal (too many connections, [UNAVAILABLE]): worth a retry later."""

    reason: str | None = "unavailable"


@contextlib.contextmanager
def network(what: str) -> Iterator[None]:
    """Turn a dropped line into ConnectionLost and a NO/BAD into ServerError, naming ``what``."""
    try:
        yield
    except imapclient.exceptions.IMAPClientError as exc:
        if isinstance(exc, imaplib.IMAP4.abort):
            raise ConnectionLost(f"{what}: {exc}") from exc
        raise ServerError(_("{what}: the server said {exc}").format(
                            what=what, exc=as_text(exc))) from exc
    except _NETWORK_ERRORS as exc:
        raise ConnectionLost(f"{what}: {exc.__class__.__name__}: {exc}") from exc


def _unquoted(text: str) -> str:
    """The server's words out of imaplib's ``b'[AUTHENTICATIONFAILED] ...'`` (a repr)."""
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        return text[2:-1]
    return text


class ImapSession:
    """One logged-in IMAP connection: TLS or STARTTLS, login, capabilities, namespace.

    Shared by the read-only :class:`ImapSource` and the restore target
    (:mod:`archiver.restore.target`), so the TLS and error rules live in one place.
    """

    # A round trip above this is a real network link: worth compressing and
    # spreading over several connections (loopback and a LAN are far below).
    slow_link_rtt = 0.005

    def __init__(self, endpoint: Endpoint, password: str, timeout: float = 60.0,
                 trace: bool = False, compress: str = "auto") -> None:
        self.endpoint = endpoint
        self._password = password
        self.timeout = timeout
        self.trace = trace
        self.compress = compress  # "auto" (on a slow link), "on", "off"
        self.compressed = False
        self.rtt = 0.0  # seconds, measured by the CAPABILITY after login
        self._client: Optional[imapclient.IMAPClient] = None
        self.capabilities: frozenset[str] = frozenset()
        self.prefix = ""
        self.separator: Optional[str] = None
        self.namespaces = Namespaces()
        # [ALERT]s (RFC 3501 7.1): the caller sets alert_watch.on_alert to show them at once
        self.alert_watch = AlertWatch(endpoint.host)
        self.warnings: list[str] = []
        self._connected_once = False
        self._uidnext = 0  # of the folder last opened (ImapSource.list_messages)
        # Called with each piece of a message body as it comes off the line (the
        # engine's ByteMeter), only inside the body fetches (see _metered).
        self.meter: Optional[Callable[[int], None]] = None
        self._metering = False
        self._listed: dict[bytes, FolderStatus] = {}  # LIST-STATUS answers (ImapSource)

    # ------------------------------------------------------------ connection

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            raise ConnectionLost("not connected")
        return self._client

    # The first connect of a run retries a line dropped mid-setup by itself; a
    # reconnect does not, because the engine's reconnect loop already retries
    # (with its own back-off and attempt budget).
    connect_attempts = 3
    connect_backoff = 1.0  # seconds before the 2nd attempt, doubling

    def connect(self) -> None:
        """Connect, secure (TLS or STARTTLS), log in, read capabilities and namespace.

        Every failure is an :class:`ArchiverError`; a line dropped during setup
        is :class:`ConnectionDropped` and, on the first connect, retried.
        """
        attempts = 1 if self._connected_once else max(1, self.connect_attempts)
        retry_dropped(self._connect_once, attempts, self.connect_backoff)
        self._connected_once = True

    def _connect_once(self) -> None:
        ep = self.endpoint
        ctx = ssl_context(ep.tls, ep.options)
        try:
            client = imapclient.IMAPClient(
                ep.host, port=ep.port, ssl=ep.implicit_tls, ssl_context=ctx,
                timeout=imapclient.SocketTimeout(connect=self.timeout, read=self.timeout),
            )
        except DROPS as exc:
            # imaplib also "aborts" on a whole greeting that is not IMAP at all (an
            # SMTP server, say): that is no drop to retry, and imaplib keeps no line.
            if isinstance(exc, imaplib.IMAP4.abort) and "unexpected response" in str(exc):
                greeting = read_greeting(ep, self.timeout)
                if greeting and not is_imap_greeting(greeting):
                    raise wrong_protocol(ep, "IMAP", greeting) from None
            raise dropped(ep, "the TLS handshake or greeting", exc) from None
        except (OSError, ssl.SSLError) as exc:
            raise connect_error(ep, exc) from None
        except imapclient.exceptions.IMAPClientError:
            # imaplib keeps nothing of a greeting it cannot parse ("None"): read it again
            raise wrong_protocol(ep, "IMAP", read_greeting(ep, self.timeout)) from None
        if not self.trace:
            client._imap.debug = 0  # skip imaplib's per-line trace formatting
        self.alert_watch.watch(client._imap)
        self._meter_literals(client._imap)
        client.folder_encode = False
        client.normalise_times = False
        self._client = client
        try:
            if not ep.implicit_tls:
                self._starttls(client, ctx)
            self._login(client)
            self.alert_watch.connected()  # a refused login carried them in its error
            try:
                with network("CAPABILITY"):
                    caps = client.capabilities()
                self.rtt = self._round_trip(client)
                self.capabilities = frozenset(as_text(c).upper() for c in caps)
                self._maybe_compress(client)
                self._read_namespace(client)
            except ConnectionLost as exc:
                raise dropped(ep, "the login", exc) from None
        except BaseException as exc:
            if not isinstance(exc, LoginError):
                self.alert_watch.connected()  # the greeting's alerts are still worth seeing
            self.close()
            raise

    def _meter_literals(self, imap: Any) -> None:
        """Count a body's bytes while its literal arrives, not when it is complete.

        imaplib reads every literal with ``self.read(size)``, which waits for all
        of it: a 20 MB message moved the bar once, at its end.  Within the body
        fetches this instance's ``read`` takes the literal in pieces as they come
        off the line (``read1``: whatever one read of the socket, TLS record or
        inflated block gives) and calls :attr:`meter` with each.  It reads
        ``imap.file`` at each call, so the COMPRESS layer (which swaps the file)
        is metered too, after inflating: the bytes counted are the message's.
        """
        plain_read = imap.read

        def read(size: int) -> bytes:
            meter = self.meter if self._metering else None
            if meter is None or size <= 0:
                data: bytes = plain_read(size)
                return data
            return _metered_read(imap.file, size, meter)

        imap.read = read

    @contextlib.contextmanager
    def _metered(self) -> Iterator[None]:
        """Body fetches: their literals go to :attr:`meter` (headers, listings do not)."""
        before, self._metering = self._metering, True
        try:
            yield
        finally:
            self._metering = before

    def _starttls(self, client: imapclient.IMAPClient, ctx: ssl.SSLContext) -> None:
        ep = self.endpoint
        caps = {as_text(c).upper() for c in client.capabilities()}
        if "STARTTLS" in caps:
            try:
                client.starttls(ctx)
            except (OSError, ssl.SSLError) as exc:
                raise connect_error(ep, exc) from None
            return
        if not ep.tls.plaintext:
            raise TLSError(unencrypted(ep, "STARTTLS", "imaps", 993))
        self.warnings.append(_("WARNING: {host} offers no STARTTLS; logging in over an "
                               "UNENCRYPTED connection (--plaintext)").format(host=ep.host))

    @property
    def alerts(self) -> list[str]:
        """The server's distinct [ALERT] texts so far (sanitised)."""
        return self.alert_watch.alerts

    def alert_notes(self) -> list[str]:
        """``server alert from HOST: TEXT`` for each alert: for a summary's notes."""
        return self.alert_watch.notes()

    def _login(self, client: imapclient.IMAPClient) -> None:
        ep = self.endpoint
        try:
            master = ep.master
            if master is not None and master.mode == "authzid":
                # SASL PLAIN (RFC 4616): act as ep.user, authenticated as the admin
                client.plain_login(master.name, self._password,
                                   authorization_identity=ep.user)
            else:
                client.login(ep.login, self._password)
        except imapclient.exceptions.LoginError as exc:
            # imapclient turns *any* error during LOGIN into LoginError, a dead
            # line included: that is not a refusal of the password.
            if isinstance(exc.__context__, DROPS + _NETWORK_ERRORS):
                raise dropped(ep, "the login", exc.__context__) from None
            text = _unquoted(as_text(exc))
            # [LIMIT] (RFC 5530): Dovecot's "Maximum number of connections from user+IP
            # exceeded" -- the user is busy elsewhere, not refused
            if any(word in text.upper() for word in ("UNAVAILABLE", "TOO MANY", "[LIMIT]")):
                raise ServerUnavailable(_("{host} refused the login for now ({text}); wait a "
                                          "moment and rerun").format(host=ep.host, text=text)
                                        ) from None
            alert = "; ".join(self.alert_watch.since_connect())
            raise login_refused(ep, text, alert) from None
        except DROPS as exc:
            raise dropped(ep, "the login", exc) from None
        except _NETWORK_ERRORS as exc:
            raise connect_error(ep, exc) from None

    @staticmethod
    def _round_trip(client: imapclient.IMAPClient) -> float:
        """Seconds for a NOOP: the link's round trip, which decides compression and
        connections.  (CAPABILITY cannot tell: imapclient answers it from the
        login response.)"""
        started = time.monotonic()
        with network("NOOP"):
            client._imap._simple_command("NOOP")
        return time.monotonic() - started

    @property
    def slow_link(self) -> bool:
        return self.rtt >= self.slow_link_rtt

    def clone(self) -> ImapSession:
        """A new, unconnected session to the same account with the same settings."""
        return type(self)(self.endpoint, self._password, self.timeout, self.trace,
                          self.compress)

    def _maybe_compress(self, client: imapclient.IMAPClient) -> None:
        """COMPRESS=DEFLATE (RFC 4978) when offered and the link is slow (or asked for)."""
        if self.compress == "off" or "COMPRESS=DEFLATE" not in self.capabilities:
            return
        if self.compress == "auto" and not self.slow_link:
            return
        from archiver.sources.compress import enable

        imap = client._imap
        try:
            with network("COMPRESS DEFLATE"):
                typ, _ = imap._command_complete("COMPRESS", imap._command("COMPRESS", "DEFLATE"))
        except ServerError:
            return
        if typ == "OK":
            enable(imap)
            self.compressed = True

    def _read_namespace(self, client: imapclient.IMAPClient) -> None:
        """Personal prefix and separator, and every namespace (without NAMESPACE: all personal)."""
        if "NAMESPACE" not in self.capabilities:
            return
        with network("NAMESPACE"):
            ns = client.namespace()
        entries: list[Namespace] = []
        for kind, part in ((PERSONAL, ns.personal), (OTHER, ns.other), (SHARED, ns.shared)):
            for item in part or ():
                prefix, sep = item[0], item[1]
                entries.append(Namespace(decode_mutf7(prefix) if prefix else "",
                                         as_text(sep) if sep else None, kind))
        self.namespaces = Namespaces(tuple(entries))
        personal = self.namespaces.personal
        if personal is not None:
            self.prefix, self.separator = personal.prefix, personal.separator

    # ------------------------------------------------------------ bodies (read-only)

    def fetch(self, uids: list[int]) -> Iterator[tuple[int, bytes | FetchFailed]]:
        """Bodies of ``uids`` (one round trip, the caller bounds the batch by bytes)."""
        if not uids:
            return
        try:
            with network(f"UID FETCH ({len(uids)} messages) BODY.PEEK[]"), self._metered():
                res = _uid_fetch_bodies(self.client, uid_set(uids))
        except ServerError as exc:
            if len(uids) == 1:
                yield uids[0], FetchFailed(uids[0], str(exc))
                return
            # One bad message can make the server refuse the whole batch:
            # fetch one by one so only that message is reported.
            for uid in uids:
                yield from self.fetch([uid])
            return
        for uid in uids:
            yield uid, body_of(uid, res.get(uid))

    def fetch_many(self, groups: Sequence[tuple[list[int], int]], batch_bytes: int
                   ) -> Iterator[list[tuple[int, bytes | FetchFailed]]]:
        """Bodies of several batches (``(uids, expected bytes)``), pipelined: one list of
        ``(uid, body or FetchFailed)`` per batch, a refused batch retried one by one last."""
        pipe = FetchPipe(self.client, self.rtt, parse_bodies)
        what = f"UID FETCH ({sum(len(u) for u, _ in groups)} messages) BODY.PEEK[]"
        try:
            with network(what), self._metered(), \
                    contextlib.closing(pipe.run(groups, batch_bytes)) as answered:
                for uids, answers in answered:
                    yield [(uid, body_of(uid, answers.get(uid))) for uid in uids]
        finally:
            if pipe.abandoned:  # answers still due: this connection cannot be reused
                self.abort()
        for uids in pipe.refused:
            yield [got for uid in uids for got in self.fetch([uid])]

    def fetch_stream(self, uid: int, size_hint: int, write: Callable[[bytes], None],
                     chunk: int = 4 << 20, offset: int = 0, overlap: bytes = b"") -> int:
        """Fetch one large message in ``BODY.PEEK[]<start.length>`` pieces from ``offset``;
        returns the message's length (``offset`` + the bytes written).

        Resuming (``offset`` > 0), the first piece starts ``len(overlap)`` bytes
        early and must repeat ``overlap`` -- the bytes already on disk -- or
        :class:`ResumeMismatch` is raised: the server's message is not the one
        the spool holds, and a splice of two messages is never written.  A piece
        counts only when the server names the origin asked for (``BODY[]<start>``);
        another origin, or more bytes than asked, is refused (FetchFailed), never
        appended.  A short piece ends the message only at or past ``size_hint``
        (RFC822.SIZE); before it the next piece is asked for, and an empty answer
        ends it.
        """
        if len(overlap) > min(offset, chunk):
            raise ValueError("overlap longer than the bytes before offset or than a piece")
        start = offset - len(overlap)
        check = overlap
        while True:
            what = f"UID FETCH {uid} BODY.PEEK[]<{start}.{chunk}>"
            with network(what), self._metered():
                res = uid_fetch(self.client, str(uid), f"(BODY.PEEK[]<{start}.{chunk}>)")
            piece, origin = partial_body(res.get(uid) or {})
            if origin is None and piece is not None:
                if start != 0 or check:
                    raise FetchFailed(uid, _("asked for bytes from {start}, the server sent "
                                             "the whole message instead; not appended").format(
                                             start=start))
                write(piece)  # no partial support: the whole message, at once
                return len(piece)
            if piece is None:
                if start == 0:
                    raise FetchFailed(uid, _("the server did not return the message"))
                if check:
                    raise ResumeMismatch(uid, _("nothing at byte {start}, where the part "
                                                "already fetched ends").format(start=start))
                return start
            if origin != start:
                raise FetchFailed(uid, _("asked for bytes from {start}, the server answered "
                                         "from {origin}; not appended").format(
                                         start=start, origin=origin))
            if len(piece) > chunk:
                raise FetchFailed(uid, _("asked for {chunk} bytes from {start}, the server "
                                         "sent {n}; not appended").format(
                                         chunk=chunk, start=start, n=len(piece)))
            if check:
                if piece[: len(check)] != check:
                    raise ResumeMismatch(uid, _("the bytes before {offset} differ from the "
                                                "part already fetched").format(offset=offset))
                data, check = piece[len(check):], b""
            else:
                data = piece
            if data:
                write(data)
            start += len(piece)
            if not piece or (len(piece) < chunk and start >= size_hint):
                return start
            if start > 2 * size_hint + chunk:  # a server that never ends the message
                raise FetchFailed(uid, _("the server sent {start} bytes of a message it "
                                         "listed as {size_hint}; not archived").format(
                                         start=start, size_hint=size_hint))

    def abort(self) -> None:
        """Drop the connection without LOGOUT (which would first read every answer
        still due); the next use reconnects."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.logout()
        with contextlib.suppress(Exception):
            client.shutdown()



_METER_PIECE = 256 << 10  # at most this much between two meter calls


def _metered_read(file: Any, size: int, meter: Callable[[int], None]) -> bytes:
    """``size`` bytes of ``file``, read as they arrive, each piece passed to ``meter``."""
    read1 = getattr(file, "read1", None) or file.read
    pieces: list[bytes] = []
    left = size
    while left > 0:
        piece = read1(min(left, _METER_PIECE))
        if not piece:
            break  # EOF: short, as file.read(size) would be; imaplib then aborts
        pieces.append(piece)
        left -= len(piece)
        meter(len(piece))
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def uid_fetch(client: imapclient.IMAPClient, id_set: str, items: str) -> dict[int, Any]:
    """``UID FETCH`` returning every FETCH response keyed by UID.

    imapclient's own ``fetch`` cannot take ``1:*`` (it filters its result by the
    ids given); this uses the same parser on the raw response.
    """
    return raw_fetch(client, id_set, items, uid=True)


def fetch_answers(client: imapclient.IMAPClient, id_set: str, items: str,
                  uid: bool = True) -> list[Any]:
    """The untagged answers of ``[UID] FETCH id_set items`` as imaplib hands them over
    (imapclient's ``fetch`` filters by the ids given, so ``n:*`` would lose answers)."""
    imap = client._imap
    args = ("UID", "FETCH", id_set, items) if uid else ("FETCH", id_set, items)
    tag = imap._command(*args)
    typ, data = imap._command_complete("FETCH", tag)
    if typ != "OK":
        raise imapclient.exceptions.IMAPClientError(
            f"{'UID ' if uid else ''}FETCH failed: {as_text(data[0] if data else typ)}")
    typ, data = imap._untagged_response(typ, data, "FETCH")
    answers: list[Any] = data
    return answers


def raw_fetch(client: imapclient.IMAPClient, id_set: str, items: str,
              uid: bool) -> dict[int, Any]:
    """``[UID] FETCH id_set items``, every answer parsed and keyed by UID."""
    parsed: dict[int, Any] = parse_fetch_response(fetch_answers(client, id_set, items, uid),
                                                  False, True)
    return parsed


def _uid_fetch_bodies(client: imapclient.IMAPClient, uids: str) -> dict[int, Any]:
    """``UID FETCH set (UID BODY.PEEK[])`` with a lean parse of the common answer shape.

    Almost all of a backup's client CPU is here, so the usual response,
    ``* n FETCH (UID u BODY[] {size}`` + literal + ``)``, is read with one regex
    instead of the general tokenizer; anything else (UID after the literal,
    extra items, unsolicited FLAGS) goes to imapclient's parser.
    """
    return parse_bodies(fetch_answers(client, uids, "(UID BODY.PEEK[])"))



