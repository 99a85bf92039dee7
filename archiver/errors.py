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
    """Base class: a problem we explain to the user in one line."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ArchiverError):
    """Bad command line or configuration (a typo in a URL, a missing file)."""

    exit_code = EXIT_USAGE


class LoginError(ArchiverError):
    """The server refused the user name or password."""

    exit_code = EXIT_LOGIN


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


class Interrupted(ArchiverError):
    """Ctrl-C: the batch in flight was finished and recorded."""

    exit_code = EXIT_INTERRUPTED
    summary: Optional[Any] = None  # what the run did before it stopped (a jobs.Summary)
