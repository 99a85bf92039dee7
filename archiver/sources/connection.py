"""Reaching a server, shared by every protocol: what a failed connect means, and retries.

A line dropped during TLS, greeting or login is worth another try and must
never read as "wrong password"; a refused connection, an unknown host or a
bad certificate is a one-line :class:`~archiver.errors.ConnectionFailed`
that names the fix.  IMAP (:mod:`archiver.sources.imap`), POP3
(:mod:`archiver.sources.pop3`) and the restore target use these.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import time
from typing import Callable, Optional

from archiver.account import Endpoint
from archiver.errors import (
    LOGIN_ADMIN_REFUSED,
    LOGIN_REFUSED,
    LOGIN_USER_UNKNOWN,
    ConnectionFailed,
    LoginError,
    TLSError,
)
from archiver.i18n import _

log = logging.getLogger("archiver.connection")


class ConnectionDropped(ConnectionFailed):
    """The server (or the network) closed the line during TLS, greeting or login.

    Unlike a refused connection, an unknown host or a bad certificate this
    says nothing about the address or the credentials, so it is worth another
    try (and must never read as "wrong password").
    """

    reason: str | None = "dropped"


# Errors that mean "the line went dead", as opposed to "wrong place" or "not trusted".
DROPS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
          ConnectionAbortedError, BrokenPipeError, EOFError, imaplib.IMAP4.abort)


def dropped(endpoint: Endpoint, what: str, exc: BaseException) -> ConnectionDropped:
    return ConnectionDropped(_("{host}:{port} closed the connection during {what} ({error_type}: "
                               "{exc}); check the network and run the same command again").format(
                               host=endpoint.host, port=endpoint.port, what=what,
                               error_type=exc.__class__.__name__, exc=exc))


def retry_dropped(connect_once: Callable[[], None], attempts: int, backoff: float) -> None:
    """Run ``connect_once``; a line dropped during setup is retried with back-off.

    Shared by every protocol's first connect (later reconnects are the
    engine's business, with its own budget).
    """
    for attempt in range(1, attempts + 1):
        try:
            connect_once()
            return
        except ConnectionDropped as exc:
            if attempt == attempts:
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.info("%s; retrying in %.1f s", exc, delay)
            time.sleep(delay)


def connect_error(endpoint: Endpoint, exc: BaseException) -> ConnectionFailed:
    """One-line explanation of a failure to reach or trust the server.

    The fix names this end's own options (``--target-cafile`` for a restore
    target, ``--cafile`` for a source): :attr:`Endpoint.options`.
    """
    host, opts = endpoint.host, endpoint.options
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(
            _("the certificate of {host} could not be verified ({reason}); if you trust this "
              "server, give its CA with {cafile} (or {insecure} to skip checks)").format(
                host=host, reason=exc.verify_message, cafile=opts.cafile,
                insecure=opts.insecure))
    if isinstance(exc, ssl.SSLError):
        return TLSError(_("TLS with {host}:{port} failed ({reason}); check the port and "
                          "whether the server speaks TLS there").format(
            host=host, port=endpoint.port, reason=exc.reason or exc))
    if isinstance(exc, socket.gaierror):
        return ConnectionFailed(_("cannot find host {host}: check the spelling and your "
                                  "network connection").format(host=host))
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionFailed(_("{host}:{port} refused the connection: check the host and "
                                  "port").format(host=host, port=endpoint.port))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ConnectionFailed(_("{host}:{port} did not answer in time: check the network, "
                                  "or raise {timeout}").format(host=host, port=endpoint.port,
                                                               timeout=opts.timeout))
    return ConnectionFailed(_("connection to {host}:{port} failed: {error}").format(
        host=host, port=endpoint.port, error=f"{exc.__class__.__name__}: {exc}"))


def excerpt(line: Optional[bytes], limit: int = 60) -> str:
    """A server's first line as safe, short text: control characters shown as '?'."""
    if not line:
        return _("nothing")
    text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return '"' + (text if len(text) <= limit else text[:limit] + "...") + '"'


def read_greeting(endpoint: Endpoint, timeout: float) -> Optional[bytes]:
    """The server's first line, read on a fresh connection (TLS when the URL says so).

    Only to explain a greeting that did not parse: imaplib keeps none of it.
    None when even that fails (the caller then says "nothing").
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # only reading the greeting; no password goes out
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
            sock = (ctx.wrap_socket(raw, server_hostname=endpoint.host)
                    if endpoint.implicit_tls else raw)
            with sock:
                data = b""
                while b"\n" not in data and len(data) < 512:
                    chunk = sock.recv(512)
                    if not chunk:
                        break
                    data += chunk
                return data.split(b"\n", 1)[0]
    except (OSError, ssl.SSLError):
        return None


def is_imap_greeting(line: bytes) -> bool:
    """``* OK``, ``* PREAUTH`` or ``* BYE`` (RFC 9051 7.1): an IMAP server's first line."""
    return line[:2] == b"* " and line[2:].upper().startswith((b"OK", b"PREAUTH", b"BYE"))


def wrong_protocol(endpoint: Endpoint, expected: str,
                   greeting: Optional[bytes]) -> ConnectionFailed:
    """The server greeted, but not as ``expected`` ("IMAP" or "POP3") says it should.

    A POP3 greeting starts ``+OK``, an IMAP one ``* OK`` (or ``* PREAUTH``):
    when it is the other protocol, say so and give the URL that fits.
    """
    ep = endpoint
    line = (greeting or b"").lstrip()
    other = None
    if expected == "IMAP" and line[:3].upper() == b"+OK":
        other, scheme = "POP3", "pop3s" if ep.implicit_tls else "pop3"
    elif expected == "POP3" and is_imap_greeting(line):
        other, scheme = "IMAP", "imaps" if ep.implicit_tls else "imap"
    if other is not None:
        return ConnectionFailed(
            _("{host}:{port} speaks {other}, not {expected} (it said {greeting}): use "
              "{scheme}://{user}@{host}:{port}").format(
                host=ep.host, port=ep.port, other=other, greeting=excerpt(greeting),
                expected=expected, scheme=scheme, user=ep.user))
    template = (_("{host}:{port} did not greet as an IMAP server (it said {greeting}): check "
                  "the port and the protocol in the URL") if expected == "IMAP" else
                _("{host}:{port} did not greet as a POP3 server (it said {greeting}): check "
                  "the port and the protocol in the URL"))
    return ConnectionFailed(template.format(host=ep.host, port=ep.port,
                                            greeting=excerpt(greeting)))


def unencrypted(endpoint: Endpoint, command: str, tls_scheme: str, tls_port: int) -> str:
    """Why we will not log in on a server without STARTTLS (STLS), and the fixes."""
    ep = endpoint
    if ep.options.plaintext is None:  # a restore target: no way to allow it
        return _("{host}:{port} does not offer {command}, so the password would travel "
                 "unencrypted: use {scheme}:// (port {tls_port})").format(
            host=ep.host, port=ep.port, command=command, scheme=tls_scheme, tls_port=tls_port)
    return _("{host}:{port} does not offer {command}, so the password would travel "
             "unencrypted: use {scheme}:// (port {tls_port}), or {plaintext} if you accept "
             "that").format(host=ep.host, port=ep.port, command=command, scheme=tls_scheme,
                            tls_port=tls_port, plaintext=ep.options.plaintext)


def login_fixes(endpoint: Endpoint) -> str:
    """Where this end's user name and password come from: ``--user, --password-file``."""
    opts = endpoint.options
    master = endpoint.master
    if master is not None and not master.from_user:
        return f"{opts.master_user}, {opts.master_password_file}, {opts.master_password_env}"
    return f"{opts.user}, {opts.password_file}"


def refused_login(endpoint: Endpoint) -> str:
    """The server said no to this user name and password."""
    return _("{host} refused the login for user '{user}': check the user name and password "
             "({fixes})").format(host=endpoint.host, user=endpoint.user,
                                 fixes=login_fixes(endpoint))


def authorization_failed(text: str) -> bool:
    """Did the server accept the credentials but not the user they were for?

    Dovecot 2.3 answers a master login for an unknown mailbox user with
    ``NO [AUTHORIZATIONFAILED] Authorization failed`` (IMAP, RFC 5530) and
    ``-ERR [AUTH] Authorization failed`` (POP3); a wrong admin password or an
    unknown admin name get ``[AUTHENTICATIONFAILED] Authentication failed.``
    / ``-ERR [AUTH] Authentication failed.``, as a wrong user password does.
    """
    upper = text.upper()
    return "AUTHORIZATIONFAILED" in upper or "AUTHORIZATION FAILED" in upper


def login_refused(endpoint: Endpoint, text: str, alert: str = "") -> LoginError:
    """The :class:`LoginError` for a refused login, with its reason (errors.LOGIN_*).

    Under an admin login the two refusals Dovecot tells apart get their own
    message: the admin's own name or password (``admin-refused``: a batch
    stops after a few in a row, before the admin account is locked), or the
    mailbox user (``user-unknown``: that account only).
    """
    ep = endpoint
    master = ep.master
    if master is None:
        if alert:  # e.g. "Password expired": the server's reason is the fix
            return LoginError(_("{host} refused the login for user '{user}' with the alert "
                                "\"{alert}\": do what it says, or check the user name "
                                "and password ({fixes})").format(
                host=ep.host, user=ep.user, alert=alert, fixes=login_fixes(ep)),
                LOGIN_REFUSED)
        return LoginError(refused_login(ep), LOGIN_REFUSED)
    said = excerpt(text.encode("utf-8", "replace"))
    if authorization_failed(text):
        return LoginError(
            _("{host} has no mailbox '{user}' that admin '{admin}' may open (the admin login "
              "worked; the server said {said}): check the user name").format(
                host=ep.host, user=ep.user, admin=master.name, said=said),
            LOGIN_USER_UNKNOWN)
    if master.from_user:
        fixes = f"{ep.options.user}, {ep.options.password_file}"
    else:
        fixes = f"{ep.options.master_user}, {ep.options.master_password_file}, " \
                f"{ep.options.master_password_env}"
    return LoginError(
        _("{host} refused the admin login '{admin}' (for user '{user}'; the server said "
          "{said}): check the admin name and password ({fixes})").format(
            host=ep.host, admin=master.name, user=ep.user, said=said, fixes=fixes),
        LOGIN_ADMIN_REFUSED)
