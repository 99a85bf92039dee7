"""One account's backup as a child process, and what its end means for the batch.

Each account runs as ``python -m archiver backup SOURCE DEST --json --quiet
--log ...`` in a process of its own, so a crash or a memory spike stays in
that account, and its exit status, ``--json`` object and stderr say how it
went.  Passwords travel only in the child's environment
(``ARCHIVER_MASTER_PASSWORD``) or as a password *file* name, never on a
command line (``ps`` shows command lines to every local user).

The child gets a session of its own, so a Ctrl-C at the terminal reaches only
the batch, which passes exactly one SIGINT on (a second one while a backup
finishes its in-flight messages would cut that short).  On Linux the child
also asks the kernel for a SIGINT when the batch dies
(``PR_SET_PDEATHSIG``): a ``kill -9`` of the batch still lets every backup
stop cleanly instead of running on unwatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

import archiver
from archiver.errors import (
    EXIT_DESTINATION,
    EXIT_INTERRUPTED,
    EXIT_LOGIN,
    EXIT_OK,
    EXIT_PARTIAL,
)

# --json "reason"s, and words of the server's answer (quoted in the error of an admin
# login, or in the child's --log trace with --trace), that mean "not now": the account
# is retried later, not failed.  Dovecot: "NO [LIMIT] Maximum number of connections
# from user+IP exceeded (mail_max_userip_connections=N)".
BUSY_REASONS = frozenset({"server-busy", "too-many-connections", "unavailable", "limit",
                          "locked"})
BUSY_WORDS = (b"Maximum number of connections", b"[LIMIT]", b"[UNAVAILABLE]",
              b"too many connections", b"Too many connections")
LOCKED_WORDS = ("another archiver is already working",)
ADMIN_REASONS = frozenset({"admin-refused", "refused"})
UNKNOWN_USER_REASONS = frozenset({"user-unknown"})
LOG_TAIL = 256 * 1024


@dataclass
class Outcome:
    """How one attempt ended, as the batch sees it."""

    status: str  # ok | partial | failed
    exit: int
    error: str = ""
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    busy: bool = False  # the server (or the DEST lock) said "not now": retry later
    admin_refused: bool = False  # a refusal that may be the admin login's


@dataclass
class Child:
    """A running account backup."""

    user: str
    server: str
    process: subprocess.Popen[bytes]
    started: float
    start_iso: str
    out_path: Path
    err_path: Path
    log_path: Path
    log_offset: int
    attempts: int
    files: list[IO[bytes]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> Optional[tuple[int, int]]:
        """(exit code, peak RSS in KiB) once the child has ended, else None.

        ``os.wait4`` is the one call that gives a child's peak memory (its
        ``ru_maxrss``) together with its status; the Popen is then told the
        status so it never waits again.
        """
        if not hasattr(os, "wait4"):  # Windows: no rusage; the status alone
            code = self.process.poll()
            if code is None:
                return None
            for fh in self.files:
                fh.close()
            return code, 0
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            code = self.process.returncode if self.process.returncode is not None else -1
            return code, 0
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        self.process.returncode = code
        for fh in self.files:
            fh.close()
        rss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
        return code, int(rss)

    def interrupt(self) -> None:
        """Pass one SIGINT on: the backup finishes its in-flight batch and exits 130."""
        if not self.interrupted and self.process.returncode is None:
            self.interrupted = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGINT this process when the batch that started it dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGINT), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_env(master_password: Optional[str]) -> dict[str, str]:
    """The child's environment: ours, archiver importable as this very copy, the password."""
    env = dict(os.environ)
    here = str(Path(archiver.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    if master_password is not None:
        env["ARCHIVER_MASTER_PASSWORD"] = master_password
    return env


def start(user: str, server: str, argv: list[str], env: dict[str, str], out_path: Path,
          err_path: Path, log_path: Path, attempts: int, start_iso: str) -> Child:
    """Start ``python -m archiver`` with ``argv`` for one account."""
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    out = open(out_path, "wb")  # noqa: SIM115 - closed when the child is reaped
    err = open(err_path, "wb")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", *argv], env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except BaseException:
        out.close()
        err.close()
        raise
    return Child(user, server, proc, time.monotonic(), start_iso, out_path, err_path,
                 log_path, log_offset, attempts, [out, err])


def outcome(child: Child, code: int, master: bool) -> Outcome:
    """What the child's exit code, ``--json`` object, stderr and log say."""
    summary = _json_line(child.out_path)
    reason = str(summary.get("reason") or "")
    error = str(summary.get("error") or "") or _last_error(child.err_path)
    if code == EXIT_OK:
        return Outcome("ok", code, "", "", summary)
    if code == EXIT_PARTIAL:
        problems = summary.get("problems") or []
        text = "; ".join(str(p) for p in problems[:3]) if isinstance(problems, list) else ""
        return Outcome("partial", code, text or error, reason, summary)
    if code == EXIT_INTERRUPTED or child.interrupted:
        return Outcome("partial", code, error or "interrupted", reason or "interrupted",
                       summary)
    busy = (reason in BUSY_REASONS or any(w.decode() in error for w in BUSY_WORDS)
            or _log_says_busy(child)
            or (code == EXIT_DESTINATION and any(w in error for w in LOCKED_WORDS)))
    if busy:
        return Outcome("failed", code, error, "server-busy", summary, busy=True)
    admin = (master and code == EXIT_LOGIN and reason not in UNKNOWN_USER_REASONS
             and (not reason or reason in ADMIN_REASONS))
    return Outcome("failed", code, error or f"exit {code}", reason, summary,
                   admin_refused=admin)


def _json_line(path: Path) -> dict[str, Any]:
    """The child's ``--json`` object: its last line of stdout that is one."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _last_error(path: Path) -> str:
    """The child's one-line error from its stderr (the last line that is not empty)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for prefix in ("archiver: error: ", "archiver: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def _log_says_busy(child: Child) -> bool:
    """Did the server answer "too many connections" during this attempt (its --log trace)?"""
    if not child.log_path.exists():
        return False
    try:
        with open(child.log_path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(child.log_offset, size - LOG_TAIL))
            tail = fh.read()
    except OSError:
        return False
    return any(w in tail for w in BUSY_WORDS)
