"""The last line of defence: an unexpected exception becomes a short report, not a traceback.

A user who meets a bug sees what failed, the version, and where the full
traceback was saved (a private file in the user's log directory), and is
asked to report it; ``--debug`` (or ``ARCHIVER_DEBUG=1``) also prints the
traceback.  Nothing here can say a password: argv never holds one (URLs
with a password are refused) and the traceback shows code, not values.
"""

from __future__ import annotations

import os
import platform
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from archiver import __version__
from archiver.errors import EXIT_INTERNAL
from archiver.i18n import _


def crash_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("archiver"))


def save_report(exc: BaseException, argv: list[str]) -> Optional[Path]:
    """Write the traceback and context to a new 0600 file; None if that is impossible."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = (f"archiver {__version__}, Python {platform.python_version()}, "
            f"{platform.platform()}\ncommand: archiver {' '.join(argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        folder = crash_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
        return path
    except OSError:
        return None


def report_crash(exc: BaseException, argv: list[str], debug: bool,
                 echo: Callable[[str], None]) -> int:
    """Tell the user about a bug in a few lines; returns the exit code (70)."""
    path = save_report(exc, argv)
    if debug:
        echo("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    echo(_("archiver: internal error: {what}").format(what=what))
    where = (_("the details are in {path}").format(path=path) if path is not None
             else _("rerun with --debug to see the details"))
    echo(_("archiver {version} met a bug; {where}. Please report this (the file holds no "
           "password). What was saved so far is safe: run the same command again.").format(
           version=__version__, where=where))
    if not debug:
        echo(_("(archiver --debug ... prints the full traceback)"))
    return EXIT_INTERNAL


