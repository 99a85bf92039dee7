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
from typing import Callable

from archiver.account import Endpoint
from archiver.errors import ConnectionFailed, TLSError
from archiver.i18n import _

log = logging.getLogger("archiver.connection")


class ConnectionDropped(ConnectionFailed):
    """The server (or the network) closed the line during TLS, greeting or login.

    Unlike a refused connection, an unknown host or a bad certificate this
    says nothing about the address or the credentials, so it is worth another
    try (and must never read as "wrong password").
    """


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
    """One-line explanation of a failure to reach or trust the server."""
    host = endpoint.host
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(
            _("the certificate of {host} could not be verified ({verify_message}); if you "
              "trust this server, give its CA with --cafile (or --insecure to skip checks)").format(
              host=host, verify_message=exc.verify_message)
        )
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
                                  "or raise --timeout").format(host=host, port=endpoint.port))
    return ConnectionFailed(_("connection to {host}:{port} failed: {error_type}: {exc}").format(
                              host=host, port=endpoint.port, error_type=exc.__class__.__name__,
                              exc=exc))
