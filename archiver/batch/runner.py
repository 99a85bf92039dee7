"""The batch scheduler: every account of a shard, ``--jobs`` at a time, resumable.

:func:`run_batch` is the library entry point (the CLI is a thin layer over
it).  The rules it keeps:

* **isolation** -- one ``archiver backup`` process per account
  (:mod:`archiver.batch.child`); whatever one account does (an unknown user,
  a server error, a full or foreign DEST, a crash) is that account's row in
  the report, and the others go on;
* **resumable** -- the shard's state file records each account as it starts
  and ends (:mod:`archiver.batch.state`); a rerun skips accounts ``ok`` in
  any shard's state (``--refresh`` runs them too, for new mail) and reruns
  every other one (a ``running`` one was cut off: its backup resumes);
* **a shared old server** -- ``--max-connections M`` caps the connections
  to one server (host:port) across all jobs: each child gets
  ``--connections k`` (the given number, else 1) and at most ``M // k``
  children talk to one server at once.  A child the server turned away as
  busy ("Maximum number of connections ... exceeded", ``[LIMIT]``,
  ``[UNAVAILABLE]``; or its DEST locked by another process) is retried
  later with exponential back-off (5 s, 10 s, 20 s, ... at most 2 min, 8
  tries) instead of failing;
* **the admin login** -- with ``--master-user`` the first account runs alone,
  and the others start only after a login worked, so a wrong admin password
  costs one refused login, not ``--jobs`` of them; refusals that may be the
  admin's (the child's ``--json`` reason ``admin-refused``, or a bare
  ``refused``) are counted, a login that works resets the count, and the
  third in a row stops the batch (exit 4) before it locks the admin account;
* **Ctrl-C / SIGTERM** -- no new account starts; each running child gets one
  SIGINT (it finishes its in-flight messages durably and exits 130); the
  batch waits for them, records their state, writes the report, exits 130.

Exit status: 0 when every account of the shard is ``ok``, 3 when some are
partial or failed, 4 after the admin refusals, 130 when interrupted.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from archiver.batch import child as children
from archiver.batch.accounts import Account
from archiver.batch.layout import Layout
from archiver.batch.manifest import write_manifest
from archiver.batch.report import Figures, Report, archive_figures, rows_for
from archiver.batch.shard import ALL, Shard
from archiver.batch.state import DONE, Record, StateFile, merged
from archiver.errors import (
    EXIT_INTERRUPTED,
    EXIT_LOGIN,
    EXIT_OK,
    EXIT_PARTIAL,
    ArchiverError,
    UsageError,
)
from archiver.fsutil import translate_os_errors
from archiver.i18n import _

POLL = 0.05


@dataclass(frozen=True)
class BackupFlags:
    """The backup options every account's child gets (``archiver backup``'s own)."""

    cafile: Optional[Path] = None
    insecure: bool = False
    plaintext: bool = False
    timeout: float = 60.0
    compress: str = "auto"
    connections: int = 0  # 0: auto
    format: Optional[str] = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    all_namespaces: bool = False
    no_space_check: bool = False
    portable_names: bool = False

    def argv(self, connections: int) -> list[str]:
        out = ["--timeout", f"{self.timeout:g}", "--compress", self.compress]
        if connections:
            out += ["--connections", str(connections)]
        if self.cafile is not None:
            out += ["--cafile", str(Path(self.cafile).expanduser().resolve())]
        for flag, on in (("--insecure", self.insecure), ("--plaintext", self.plaintext),
                         ("--all-namespaces", self.all_namespaces),
                         ("--no-space-check", self.no_space_check),
                         ("--portable-names", self.portable_names)):
            if on:
                out.append(flag)
        if self.format:
            out += ["--format", self.format]
        for glob in self.include:
            out += ["--folder", glob]
        for glob in self.exclude:
            out += ["--exclude", glob]
        return out


@dataclass(frozen=True)
class MasterLogin:
    """``--master-user``: the admin's name and how to log in with it (password apart)."""

    user: str
    separator: str = "*"
    login: str = "separator"  # or "authzid"

    def argv(self) -> list[str]:
        return ["--master-user", self.user, "--master-separator", self.separator,
                "--master-login", self.login]


@dataclass
class BatchOptions:
    jobs: int = 4
    max_connections: Optional[int] = None
    refresh: bool = False
    flags: BackupFlags = field(default_factory=BackupFlags)
    master: Optional[MasterLogin] = None
    master_password: Optional[str] = field(default=None, repr=False)
    retry_base: float = 5.0
    retry_cap: float = 120.0
    max_attempts: int = 8
    admin_refusals: int = 3
    # --trace: each child's --log (notes and the full protocol trace).  Off by default:
    # the trace costs about half again the CPU of a backup and holds message text.
    trace: bool = False
    echo: Callable[[str], None] = lambda line: None


@dataclass
class BatchResult:
    report: Report
    exit_code: int
    ran: int = 0
    skipped: int = 0
    stopped: Optional[str] = None  # "admin" | "interrupted"
    message: str = ""


def check_passwords(accounts: list[Account], master: Optional[MasterLogin],
                    environ: Mapping[str, str]) -> None:
    """Without an admin login, each row needs a password file (or $ARCHIVER_PASSWORD)."""
    if master is not None or environ.get("ARCHIVER_PASSWORD"):
        return
    for acc in accounts:
        if acc.password_file is None:
            raise UsageError(_("{where}: no password for user '{user}': add a password_file "
                               "column, or log in as the admin with --master-user").format(
                where=acc.where, user=acc.user))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Waiting:
    account: Account
    attempts: int = 0
    not_before: float = 0.0


@dataclass
class _Ending:
    """An account whose backup ended, while its archive is examined (figures, manifest)."""

    future: Future[tuple[Figures, str]]
    child: children.Child
    item: _Waiting
    out: children.Outcome
    rss: int
    ended_iso: str
    seconds: float


class Runner:
    """One run of one shard (see the module docstring)."""

    def __init__(self, accounts: list[Account], root: Path, shard: Shard,
                 options: BatchOptions) -> None:
        self.layout = Layout(root)
        self.shard = shard
        self.options = options
        self.mine = [a for a in accounts if shard.takes(a.user)]
        self.running: dict[int, children.Child] = {}
        self.by_user = {a.user: a for a in self.mine}
        self.stop_signal: Optional[int] = None
        self.stopped: Optional[str] = None
        self.admin_refusals = 0
        self.logged_in = False  # a login worked in this run (the admin gate opens)
        self.ran = 0
        self.finished = 0
        self._items: dict[int, _Waiting] = {}
        self._servers: dict[str, str] = {}
        self.finishing: list[_Ending] = []
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="batch-examine")
        self.env = children.child_env(options.master_password)
        k = options.flags.connections
        if options.max_connections is not None and not k:
            k = 1  # an "auto" child may open 3: count what we ask for
        if options.max_connections is not None:
            k = min(k, options.max_connections)
        self.per_child = k
        self.per_server = (options.max_connections // k if options.max_connections else None)

    # ---------------------------------------------------------------- top level

    def run(self) -> BatchResult:
        with translate_os_errors(_("preparing {path}").format(path=self.layout.batch_dir)):
            self.layout.make()
        with StateFile(self.layout.state_file(self.shard.tag)) as state:
            self.state = state
            queue = self._prepare()
            skipped = len(self.mine) - len(queue)
            try:
                with self._signals():
                    self._loop(queue)
            finally:
                self._record_ended(wait=True)
                self.pool.shutdown()
            records = {a.user: state.records[a.user] for a in self.mine}
        report = Report(rows_for(records, self.layout),
                        shard=None if self.shard == ALL else self.shard.describe())
        with translate_os_errors(_("writing {path}").format(path=self.layout.reports_dir)):
            report.write(self.layout, self.shard.tag)
        return BatchResult(report, self._exit_code(report), self.ran, skipped, self.stopped,
                           self._stop_message())

    def _prepare(self) -> deque[_Waiting]:
        """Record every account of the shard not yet known; the queue of those to run."""
        known = merged(self.layout.state_dir)
        queue: deque[_Waiting] = deque()
        for acc in self.mine:
            if self.state.get(acc.user) is None:  # new here: pending, or another shard's word
                other = known.get(acc.user)
                self.state.append(dict(other) if other is not None
                                  else self._record(acc, "pending"))
            rec = known.get(acc.user) or self.state.records[acc.user]
            if rec.get("status") != DONE or self.options.refresh:
                queue.append(_Waiting(acc))
        return queue

    def _record(self, acc: Account, status: str, **fields: Any) -> Record:
        rec: Record = {"t": now_iso(), "user": acc.user, "status": status,
                       "dest": acc.dest_name(), "note": acc.note,
                       "shard": self.shard.describe()}
        rec.update(fields)
        return rec

    def _loop(self, queue: deque[_Waiting]) -> None:
        waiting: list[_Waiting] = list(queue)
        while waiting or self.running or self.finishing:
            if self.stop_signal is not None and self.stopped is None:
                self.stopped = "interrupted"
            if self.stopped is not None:
                if self.stopped == "interrupted":
                    for c in self.running.values():
                        c.interrupt()
                waiting = []  # nothing new starts; the running ones end
            else:
                waiting = self._launch(waiting)
            self._reap(waiting)
            if self.running or waiting or self.finishing:
                time.sleep(POLL)

    # ---------------------------------------------------------------- launching

    def _launch(self, waiting: list[_Waiting]) -> list[_Waiting]:
        now = time.monotonic()
        capacity = self._capacity()
        left: list[_Waiting] = []
        for i, item in enumerate(waiting):
            if len(self.running) >= capacity:
                return left + waiting[i:]
            if item.not_before > now or not self._server_free(self._server(item.account)):
                left.append(item)
                continue
            self._start(item)
        return left

    def _capacity(self) -> int:
        if self.options.master is not None and not self.logged_in:
            return 1  # the admin gate: one login at a time until one works
        return max(1, self.options.jobs)

    def _server(self, acc: Account) -> str:
        """``host:port`` of an account's server (what --max-connections counts by)."""
        server = self._servers.get(acc.user)
        if server is None:
            from archiver.account import parse_endpoint

            ep = parse_endpoint(acc.source, user=acc.user)
            server = self._servers[acc.user] = f"{ep.host.lower()}:{ep.port}"
        return server

    def _server_free(self, server: str) -> bool:
        if self.per_server is None:
            return True
        busy = sum(1 for c in self.running.values() if c.server == server)
        return busy < self.per_server

    def _argv(self, acc: Account) -> list[str]:
        dest = acc.dest_path(self.layout)
        argv = ["backup", acc.source, str(dest), "--user", acc.user, "--json", "--quiet"]
        if self.options.trace:
            argv += ["--log", str(self.layout.log(acc.user, "log"))]
        argv += self.options.flags.argv(self.per_child)
        if acc.format and not self.options.flags.format:
            argv += ["--format", acc.format]
        if acc.password_file is not None and self.options.master is None:
            argv += ["--password-file", str(acc.password_file)]
        if self.options.master is not None:
            argv += self.options.master.argv()
        return argv

    def _start(self, item: _Waiting) -> None:
        acc = item.account
        item.attempts += 1
        started = now_iso()
        c = children.start(acc.user, self._server(acc), self._argv(acc), self.env,
                           self.layout.log(acc.user, "out"), self.layout.log(acc.user, "err"),
                           self.layout.log(acc.user, "log"), item.attempts, started)
        # after the start, so the record names the process (an operator, or a rerun
        # after a kill -9, can see whether it still runs)
        self.state.append(self._record(acc, "running", start=started, attempts=item.attempts,
                                       pid=c.pid))
        self.running[c.pid] = c
        self._items[c.pid] = item
        self.ran += 1

    # ---------------------------------------------------------------- reaping

    def _reap(self, waiting: list[_Waiting]) -> None:
        for pid, c in list(self.running.items()):
            ended = c.poll()
            if ended is None:
                continue
            del self.running[pid]
            item = self._items.pop(pid)
            code, rss = ended
            out = children.outcome(c, code, self.options.master is not None)
            if out.busy and self.stopped is None and item.attempts < self.options.max_attempts:
                delay = min(self.options.retry_cap,
                            self.options.retry_base * 2 ** (item.attempts - 1))
                item.not_before = time.monotonic() + delay * random.uniform(0.8, 1.2)
                waiting.append(item)
                self.state.append(self._record(item.account, "pending", reason=out.reason,
                                               error=out.error, attempts=item.attempts))
                self.options.echo(_("{user}: the server is busy ({error}); trying again in "
                                    "{seconds:.0f} s").format(user=c.user, error=out.error,
                                                             seconds=delay))
                continue
            self._judge(out)
            ended_iso, seconds = now_iso(), round(time.monotonic() - c.started, 3)
            future = self.pool.submit(self._examine, item.account, out.status == "ok")
            self.finishing.append(_Ending(future, c, item, out, rss, ended_iso, seconds))
        self._record_ended()

    def _judge(self, out: children.Outcome) -> None:
        """The admin gate and refusal count: a login that worked (also to an unknown
        mailbox user: the admin's own login was accepted) opens the gate and resets the
        count; a refusal that may be the admin's adds to it."""
        if out.status in ("ok", "partial") or out.reason in children.UNKNOWN_USER_REASONS:
            self.logged_in = True
            self.admin_refusals = 0
        elif out.admin_refused:
            self.admin_refusals += 1
            if self.admin_refusals >= self.options.admin_refusals and self.stopped is None:
                self.stopped = "admin"

    def _examine(self, acc: Account, ok: bool) -> tuple[Figures, str]:
        """In a worker thread (hashing a big account must not hold up the scheduler):
        the archive's figures and, for an account that ended ok, its manifest -- written
        before the state says ok, so an ok account always has one."""
        dest = acc.dest_path(self.layout)
        figures = archive_figures(dest)
        if not ok:
            return figures, ""
        try:
            write_manifest(dest, self.layout.manifest(acc.user))
        except (OSError, ArchiverError) as exc:
            return figures, _("the archive is complete but its manifest could not be "
                              "written ({reason}); run the same command again").format(
                reason=getattr(exc, "strerror", None) or exc)
        return figures, ""

    def _record_ended(self, wait: bool = False) -> None:
        for end in list(self.finishing):
            if not (wait or end.future.done()):
                continue
            self.finishing.remove(end)
            figures, problem = end.future.result()
            out = end.out
            status, error = (("partial", problem) if problem else (out.status, out.error))
            fields: dict[str, Any] = {
                "start": end.child.start_iso, "end": end.ended_iso, "exit": out.exit,
                "error": error, "reason": out.reason, "folders": figures.folders,
                "messages": figures.messages, "bytes": figures.bytes,
                "new": int(out.summary.get("new") or 0),
                "new_bytes": int(out.summary.get("new_bytes") or 0),
                "seconds": end.seconds, "peak_rss_kb": end.rss, "attempts": end.item.attempts}
            acc = end.item.account
            self.state.append(self._record(acc, status, **fields))
            self.finished += 1
            self.options.echo(self._line(acc, status, error, fields))

    def _line(self, acc: Account, status: str, error: str, fields: dict[str, Any]) -> str:
        from archiver.units import human_size

        where = f"[{self.finished}/{len(self.mine)}]"
        if status == "ok":
            return _("{where} {user}: ok, {messages} messages ({size}), {new} new, in "
                     "{seconds:.1f} s").format(where=where, user=acc.user,
                                               messages=fields["messages"],
                                               size=human_size(fields["bytes"]),
                                               new=fields["new"], seconds=fields["seconds"])
        return _("{where} {user}: {status}: {error}").format(
            where=where, user=acc.user, status=status, error=error)

    # ---------------------------------------------------------------- the end

    def _exit_code(self, report: Report) -> int:
        if self.stopped == "admin":
            return EXIT_LOGIN
        if self.stopped == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK if report.all_ok else EXIT_PARTIAL

    def _stop_message(self) -> str:
        if self.stopped == "admin":
            return _("the admin login was refused {n} times in a row, so the batch stopped "
                     "before locking the admin account: check the admin password "
                     "(--master-password-file or ARCHIVER_MASTER_PASSWORD) and the "
                     "--master-user name, then rerun").format(n=self.admin_refusals)
        if self.stopped == "interrupted":
            return _("interrupted; what was fetched is saved -- run the same command to go on")
        return ""

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: stop starting accounts and let the running ones end cleanly."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            self.stop_signal = signum

        saved = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)


def run_batch(accounts: list[Account], root: Path, shard: Shard = ALL,
              options: Optional[BatchOptions] = None) -> BatchResult:
    """Archive every account of ``shard`` into ``root``; see :class:`Runner`."""
    return Runner(accounts, root, shard, options or BatchOptions()).run()
