"""One exception hierarchy for everything archiver reports to a user.

Every class carries its exit code, so the CLI (the only place that prints
errors) maps an exception to a one-line message and a documented exit status
without a table of special cases.  Messages name the problem *and* the fix.
"""

from __future__ import annotations

from typing import Any, Optional

# Exit codes, documented in README.md ("Exit codes").
EXIT_OK = 0
EXIT_VERIFY_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOGIN = 4
EXIT_CONNECTION = 5
EXIT_DESTINATION = 6
EXIT_INTERNAL = 70  # a bug: the traceback is in a crash file (sysexits' EX_SOFTWARE)
EXIT_INTERRUPTED = 130


class ArchiverError(Exception):
    """Base class: a problem we explain to the user in one line.

    ``reason`` is a short machine-readable word where a script needs more than
    the exit code (``--json`` prints it): e.g. a :class:`LoginError`'s
    ``admin-refused`` or ``user-unknown``.  None where there is nothing to add.
    """

    exit_code = EXIT_USAGE
    reason: str | None = None

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class UsageError(ArchiverError):
    """Bad command line or configuration (a typo in a URL, a missing file)."""

    exit_code = EXIT_USAGE


# LoginError.reason: why the server said no, as far as it tells (Dovecot does):
LOGIN_REFUSED = "refused"  # the user's own login: wrong user name or password
LOGIN_ADMIN_REFUSED = "admin-refused"  # an admin (master user) login: its name or password
LOGIN_USER_UNKNOWN = "user-unknown"  # the admin login worked; the mailbox user did not


class LoginError(ArchiverError):
    """The server refused the user name or password.

    ``reason`` tells a script (``archiver batch``) what to do next: an
    ``admin-refused`` repeated means a wrong admin password (stop before the
    admin account is locked), a ``user-unknown`` concerns one account only.
    """

    exit_code = EXIT_LOGIN
    reason: str | None = LOGIN_REFUSED


class ConnectionFailed(ArchiverError):
    """Network or TLS trouble: host not found, refused, timed out, bad certificate."""

    exit_code = EXIT_CONNECTION


class TLSError(ConnectionFailed):
    """The TLS handshake or certificate verification failed."""


class ServerError(ConnectionFailed):
    """The server answered something we cannot work with (a NO/BAD we did not expect)."""


class DestinationError(ArchiverError):
    """DEST cannot be used: not writable, full, another account, another format."""

    exit_code = EXIT_DESTINATION


class LockedError(DestinationError):
    """Another archiver process is working on the same DEST."""

    reason: str | None = "locked"


OTHER_ACCOUNT = "other-account"  # DestinationError.reason: DEST is another account's archive


class Interrupted(ArchiverError):
    """Ctrl-C: the batch in flight was finished and recorded."""

    exit_code = EXIT_INTERRUPTED
    reason: str | None = "interrupted"
    summary: Optional[Any] = None  # what the run did before it stopped (a jobs.Summary)
