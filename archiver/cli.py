"""Command line: a thin click layer over the library.

It parses options, builds the source, archive and store, calls the library,
and is the one place that turns an :class:`ArchiverError` into a one-line
message and an exit code (README.md, "Exit codes").
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver import __version__
from archiver.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    EXIT_USAGE,
    EXIT_VERIFY_PROBLEMS,
    ArchiverError,
)

PASSWORD_ENV = "ARCHIVER_PASSWORD"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _err(text: str) -> None:
    click.echo(text, err=True)


class _Logging:
    """Attach log handlers for one command and remove them afterwards (no global leftovers)."""

    def __init__(self, verbose: bool, log_file: Optional[Path]) -> None:
        self.handlers: list[logging.Handler] = []
        if log_file is not None:
            try:
                handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(f"cannot write {log_file}: {exc.strerror}",
                                         param_hint="--log") from None
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            self.handlers.append(handler)
        if verbose:
            self.handlers.append(logging.StreamHandler(sys.stderr))
        self._level = logging.getLogger().level

    def __enter__(self) -> _Logging:
        root = logging.getLogger()
        if self.handlers:
            root.setLevel(logging.DEBUG)
        for h in self.handlers:
            root.addHandler(h)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(self._level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="archiver")
def cli() -> None:
    """Back up a whole IMAP or POP3 mailbox into local files, safely and resumably.

    \b
    Quick start (the old ECCS server, before it is switched off):
      archiver backup ecc-old ~/mail-archive --user YOUR_ID
    """


def _source_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--user", "-u", help="Login name (overrides the one in SOURCE)."),
        click.option("--password-file", type=click.Path(path_type=Path),
                     help=f"Read the password from the first line of FILE (else ${PASSWORD_ENV},"
                          " else a prompt)."),
        click.option("--cafile", type=click.Path(path_type=Path),
                     help="Trust this CA certificate (PEM) for the server's TLS certificate."),
        click.option("--insecure", is_flag=True,
                     help="Do not verify the server's certificate (prints a warning)."),
        click.option("--plaintext", is_flag=True,
                     help="Allow imap:// (pop3://) without STARTTLS (STLS): the password "
                          "travels unencrypted."),
        click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0,
                     show_default=True, help="Seconds to wait for the server on any operation."),
    ]):
        f = opt(f)
    return f


@cli.command()
@click.argument("source")
@click.argument("dest", type=click.Path(path_type=Path))
@_source_options
@click.option("--folder", "include", multiple=True, metavar="GLOB",
              help="Only folders matching GLOB (decoded name, '/' between levels); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip folders matching GLOB; repeatable.")
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default="maildir",
              show_default=True,
              help="Archive format: a Maildir per folder, or one mbox file per folder laid out "
                   "like Thunderbird's Local Folders.")
@click.option("--allow-seen", is_flag=True,
              help="POP3 only: if the server has no TOP, read with RETR although that marks "
                   "messages read on the server.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--verbose", "-v", is_flag=True,
              help="Log what happens (protocol trace without passwords) on stderr.")
@click.option("--log", "log_file", type=click.Path(path_type=Path),
              help="Write the log (protocol trace without passwords) to FILE.")
def backup(source: str, dest: Path, user: Optional[str], password_file: Optional[Path],
           cafile: Optional[Path], insecure: bool, plaintext: bool, timeout: float,
           include: tuple[str, ...], exclude: tuple[str, ...], fmt: str, allow_seen: bool,
           quiet: bool, as_json: bool, verbose: bool, log_file: Optional[Path]) -> None:
    """Copy every message of every folder of SOURCE into DEST.

    \b
    SOURCE is imaps://USER@HOST[:PORT], imap://USER@HOST[:PORT] (STARTTLS),
    pop3s://USER@HOST[:PORT], pop3://USER@HOST[:PORT] (STLS), or a preset:
    ecc-old, ecc-old-pop, ecc-new.  DEST is a directory (created if missing).
    Rerun the same command at any time: it fetches only what is new, picks up
    flag changes, and repairs an interrupted run.
    """
    from archiver.account import TLSOptions

    with _Logging(verbose, log_file):
        _backup(source, dest, user, password_file, TLSOptions(cafile=cafile, insecure=insecure,
                plaintext=plaintext), timeout, include, exclude, fmt, quiet, as_json,
                verbose or log_file is not None, allow_seen)


def _backup(source: str, dest: Path, user: Optional[str], password_file: Optional[Path],
            tls: Any, timeout: float, include: tuple[str, ...], exclude: tuple[str, ...],
            fmt: str, quiet: bool, as_json: bool, trace: bool, allow_seen: bool) -> None:
    from archiver.account import parse_endpoint, read_password
    from archiver.archive import Archive
    from archiver.engine import BackupOptions, run_backup
    from archiver.progress import TerminalProgress
    from archiver.sources.imap import ImapSource
    from archiver.stores import open_store

    endpoint = parse_endpoint(source, user=user, tls=tls,
                              ask_user=lambda: click.prompt("User name", err=True))
    for note in endpoint.notes:
        _err(f"note: {note}")
    if tls.insecure:
        _err("WARNING: --insecure: the server's certificate is NOT checked; anyone on the "
             "network path could read your mail and password")
    password = read_password(password_file, PASSWORD_ENV,
                             lambda p: click.prompt(p, hide_input=True, err=True),
                             endpoint.display())
    src: Any
    if endpoint.protocol == "pop3":
        from archiver.sources.pop3 import Pop3Source

        src = Pop3Source(endpoint, password, timeout=timeout, allow_seen=allow_seen)
    else:
        src = ImapSource(endpoint, password, timeout=timeout, trace=trace)
    src.connect()  # before touching DEST: a typo in the password creates no directory
    try:
        archive = Archive.create_or_open(dest.expanduser(), fmt,
                                         {"protocol": endpoint.protocol, "host": endpoint.host,
                                          "user": endpoint.user})
    except BaseException:
        src.close()
        raise
    show_bar = not quiet and not as_json and sys.stderr.isatty()
    progress = TerminalProgress(show_bar, quiet=quiet)
    try:
        summary = run_backup(src, archive, open_store(archive.dest, fmt),
                             BackupOptions(include=list(include), exclude=list(exclude)),
                             progress, connect=False)
    finally:
        progress.close()
        archive.close()
    for warning in src.warnings:
        _err(warning)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    elif not quiet:
        _err(f"{_plural(summary.folders, 'folder')} ({summary.folders_skipped} unchanged), "
             f"{summary.new} new messages ({summary.new_bytes / 1e6:.1f} MB), "
             f"{summary.already} already archived, {summary.flags_updated} flag updates, "
             f"{summary.gone} gone from server, {summary.seconds:.1f} s")
    for problem in summary.problems:
        _err(f"problem: {problem}")
    if summary.problems:
        _err("some messages were not saved: run the same command again to retry them")
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(dest: Path, as_json: bool) -> None:
    """Re-hash every message in DEST against the index; exit 1 on any problem."""
    from archiver.archive import Archive
    from archiver.verify import verify_archive

    report = verify_archive(Archive.open_existing(dest.expanduser()))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for kind, items in (("missing", report.missing), ("changed", report.changed),
                            ("extra", report.extra), ("index", report.index_problems)):
            for item in items:
                click.echo(f"{kind}: {item}")
        click.echo(f"{report.checked} messages checked ({report.bytes / 1e6:.1f} MB): "
                   + ("all good" if report.ok else
                      f"{len(report.missing)} missing, {len(report.changed)} changed, "
                      f"{len(report.extra)} extra"))
    if not report.ok:
        sys.exit(EXIT_VERIFY_PROBLEMS)


@cli.command(name="ls")
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("folder", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def ls_command(dest: Path, folder: Optional[str], as_json: bool) -> None:
    """List DEST's folders (counts, sizes), or the messages of FOLDER."""
    from archiver.archive import Archive

    archive = Archive.open_existing(dest.expanduser())
    try:
        _ls(archive, dest, folder, as_json)
    except BrokenPipeError:  # `archiver ls DEST | head`: the reader is done, so are we
        _silence_stdout()


def _ls(archive: Any, dest: Path, folder: Optional[str], as_json: bool) -> None:
    from dataclasses import asdict

    from archiver.errors import UsageError
    from archiver.listing import list_folders, list_messages

    if folder is None:
        for f in list_folders(archive):
            if as_json:
                click.echo(json.dumps(asdict(f), ensure_ascii=False))
            else:
                gone = f"  ({f.gone} gone from server)" if f.gone else ""
                click.echo(f"{f.messages:7d} {f.bytes / 1e6:9.1f} MB  {f.name}{gone}")
        return
    lines = list_messages(archive, folder)
    if lines is None:
        raise UsageError(f"no folder '{folder}' in {dest}: 'archiver ls {dest}' lists them")
    for m in lines:
        if as_json:
            click.echo(json.dumps(asdict(m), ensure_ascii=False))
        else:
            date = (m.date or "")[:10]
            click.echo(f"{m.id}  {date:10}  {_fit(m.sender or '', 32)}  {m.subject or ''}"
                       + ("  [gone]" if m.gone else ""))


def _fit(text: str, width: int) -> str:
    """Pad or cut to ``width`` terminal columns (Japanese characters take two)."""
    import unicodedata

    out: list[str] = []
    used = 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width - (1 if len(text) > len(out) + 1 else 0):
            out.append("…")
            used += 1
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * max(0, width - used)


from archiver.cli_offline import register  # noqa: E402
from archiver.cli_restore import register as register_restore  # noqa: E402

register(cli)
register_restore(cli)


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI and return its exit code: every error becomes one line on stderr."""
    try:
        cli.main(args=argv, prog_name="archiver", standalone_mode=False)
    except click.exceptions.Abort:
        _err("archiver: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if exc.exit_code == 2 else int(exc.exit_code)
    except ArchiverError as exc:
        kind = "stopped" if exc.exit_code == EXIT_INTERRUPTED else "error"
        _err(f"archiver: {kind}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("archiver: interrupted; run the same command to go on")
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _silence_stdout() -> None:
    """After a closed pipe (``archiver ls | head``), keep Python from complaining at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))
