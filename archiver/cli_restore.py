"""Commands that put mail back on a server: ``restore`` and ``migrate``.

A thin click layer like :mod:`archiver.cli`: options are parsed here, the
work is :mod:`archiver.restore`, :mod:`archiver.migrate` and
:mod:`archiver.sinks.check`.  Errors are ArchiverError subclasses that
``cli.run()`` prints as one line with their exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

TARGET_PASSWORD_ENV = "ARCHIVER_TARGET_PASSWORD"


def _err(text: str) -> None:
    click.echo(text, err=True)


def _target_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--target-user", help="Login on the target (default: the archive's "
                                           "user; ecc-new adds @mail.ecc.u-tokyo.ac.jp)."),
        click.option("--target-password-file", type=click.Path(path_type=Path),
                     help=f"Target password from the first line of FILE (else "
                          f"${TARGET_PASSWORD_ENV}, else a prompt)."),
        click.option("--target-cafile", type=click.Path(path_type=Path),
                     help="Trust this CA certificate (PEM) for the target's certificate."),
        click.option("--target-insecure", is_flag=True,
                     help="Do not verify the target's certificate (prints a warning)."),
        click.option("--prefix", default="", metavar="FOLDER/",
                     help="Put every folder under this target folder (e.g. 'old-mail/')."),
        click.option("--map", "maps", multiple=True, metavar="OLD=NEW",
                     help="Restore folder OLD (and its children) as NEW; repeatable."),
        click.option("--special-use", is_flag=True,
                     help="Put Sent/Drafts/Trash/Junk/Archive into the target's special "
                          "folders (SPECIAL-USE)."),
        click.option("--include-deleted", is_flag=True,
                     help="Also upload messages flagged \\Deleted (with the flag)."),
    ]):
        f = opt(f)
    return f


def _output_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
        click.option("--verbose", "-v", is_flag=True,
                     help="Log what happens (protocol trace without passwords) on stderr."),
        click.option("--log", "log_file", type=click.Path(path_type=Path),
                     help="Write the log to FILE."),
    ]):
        f = opt(f)
    return f


def parse_maps(maps: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from archiver.errors import UsageError

    out = []
    for item in maps:
        old, sep, new = item.partition("=")
        if not sep or not old.strip("/") or not new.strip("/"):
            raise UsageError(f"--map '{item}' is not OLD=NEW (e.g. --map Sent=送信済み)")
        out.append((old, new))
    return tuple(out)


def open_target(target: str, default_user: Optional[str], target_user: Optional[str],
                password_file: Optional[Path], cafile: Optional[Path], insecure: bool,
                timeout: float, trace: bool) -> Any:
    """Parse TARGET, read its password, connect and log in; returns an ImapTarget."""
    from archiver.account import PRESETS, TLSOptions, parse_endpoint, read_password
    from archiver.errors import UsageError
    from archiver.sinks.imap import ImapTarget

    user = target_user
    if user is None and target in PRESETS:
        user = default_user
    endpoint = parse_endpoint(target, user=user, tls=TLSOptions(cafile=cafile, insecure=insecure),
                              ask_user=lambda: default_user or click.prompt(
                                  "Target user name", err=True))
    if endpoint.protocol != "imap":
        raise UsageError(f"'{target}' is not an IMAP server: a restore target is "
                         "imaps://USER@HOST, imap://USER@HOST (STARTTLS) or ecc-new")
    for note in endpoint.notes:
        _err(f"note: {note}")
    if insecure:
        _err("WARNING: --target-insecure: the target's certificate is NOT checked")
    password = read_password(password_file, TARGET_PASSWORD_ENV,
                             lambda p: click.prompt(p, hide_input=True, err=True),
                             endpoint.display())
    sink = ImapTarget(endpoint, password, timeout=timeout, trace=trace)
    sink.connect()
    return sink


def print_restore(summary: Any, quiet: bool) -> None:
    if not quiet:
        verb = "would upload" if summary.dry_run else "uploaded"
        made = "would create" if summary.dry_run else "created"
        _err(f"{summary.folders} folders ({made} {len(summary.created)}), {verb} "
             f"{summary.uploaded} messages ({summary.uploaded_bytes / 1e6:.1f} MB), "
             f"{summary.already} already restored, {summary.found} already on the target, "
             f"{summary.skipped_deleted} \\Deleted left out, {summary.seconds:.1f} s")
        if summary.dry_run:
            for name in summary.created:
                _err(f"would create: {name}")
        if summary.keywords_dropped:
            _err(f"note: {summary.keywords_dropped} keywords were left out (the target "
                 "cannot store them)")
    for item in summary.refused:
        _err(f"refused: {item}")
    for problem in summary.problems:
        _err(f"problem: {problem}")
    if summary.refused or summary.problems:
        _err("some messages did not go (listed above); rerun the same command to retry")


def print_verify(report: Any, quiet: bool) -> None:
    for item in report.missing:
        _err(f"missing: {item}")
    for item in report.flags_differ:
        _err(f"flags: {item}")
    if not quiet or not report.ok:
        _err(f"verify: {report.present}/{report.checked} archived messages on the target in "
             f"{report.folders} folders"
             + ("" if report.ok else f", {len(report.missing)} missing, "
                f"{len(report.flags_differ)} with other flags")
             + f"; {report.extra} other messages on the target")


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("target")
@_target_options
@click.option("--folder", "include", multiple=True, metavar="GLOB",
              help="Only these archived folders (children included); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip these folders; repeatable.")
@click.option("--no-dedup", is_flag=True,
              help="Do not look for messages already on the target (only the journal counts).")
@click.option("--dry-run", is_flag=True, help="Show what would be created and uploaded.")
@click.option("--verify", "verify_after", is_flag=True,
              help="Afterwards check that every archived message is on the target with its "
                   "flags (exit 1 if not).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds to wait for the target on any operation.")
@_output_options
def restore(dest: Path, target: str, target_user: Optional[str],
            target_password_file: Optional[Path], target_cafile: Optional[Path],
            target_insecure: bool, prefix: str, maps: tuple[str, ...], special_use: bool,
            include_deleted: bool, include: tuple[str, ...], exclude: tuple[str, ...],
            no_dedup: bool, dry_run: bool, verify_after: bool, timeout: float, quiet: bool,
            as_json: bool, verbose: bool, log_file: Optional[Path]) -> None:
    """Upload the archive DEST to the IMAP account TARGET.

    \b
    TARGET is imaps://USER@HOST[:PORT], imap://USER@HOST[:PORT] (STARTTLS)
    or ecc-new.  Missing folders are created; every message goes with its
    flags, keywords and received date.  Rerun at any time: what already
    landed (or is already on the target) is not uploaded again.
    """
    from archiver.archive import Archive
    from archiver.cli import _Logging
    from archiver.errors import EXIT_PARTIAL, EXIT_VERIFY_PROBLEMS, UsageError
    from archiver.progress import TerminalProgress
    from archiver.restore import Restore, RestoreOptions
    from archiver.sinks.check import verify_target
    from archiver.sinks.journal import RestoreJournal
    from archiver.stores import open_store

    with _Logging(verbose, log_file):
        archive = Archive.open_existing(dest.expanduser())
        if not archive.index_path.exists():
            raise UsageError(f"{dest} has no index: 'archiver reindex {dest}' rebuilds it")
        source_user = str((archive.meta.get("source") or {}).get("user") or "") or None
        options = RestoreOptions(prefix=prefix, maps=parse_maps(maps), special_use=special_use,
                                 include_deleted=include_deleted, dedup=not no_dedup,
                                 dry_run=dry_run, include=list(include), exclude=list(exclude))
        sink = open_target(target, source_user, target_user, target_password_file,
                           target_cafile, target_insecure, timeout,
                           verbose or log_file is not None)
        ep = sink.endpoint
        journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user)
        show_bar = not quiet and not as_json and sys.stderr.isatty()
        progress = TerminalProgress(show_bar, quiet=quiet)
        try:
            journal.open(write=not dry_run)
            job = Restore(archive, open_store(archive.dest, archive.format), sink, journal,
                          options, progress)
            summary = job.run()
            progress.close()
            report = verify_target(job) if verify_after and not dry_run else None
        finally:
            progress.close()
            journal.close()
            sink.close()
        if as_json:
            out = summary.as_dict()
            if report is not None:
                out["verify"] = report.as_dict()
            click.echo(json.dumps(out, ensure_ascii=False))
        print_restore(summary, quiet or as_json)
        if report is not None:
            print_verify(report, quiet or as_json)
        if summary.status != "ok":
            sys.exit(EXIT_PARTIAL)
        if report is not None and not report.ok:
            sys.exit(EXIT_VERIFY_PROBLEMS)


def default_via(host: str, user: str) -> Path:
    """Where migrate keeps its archive when --via is not given: one directory per account."""
    import platformdirs

    from archiver.names import encode_component

    return (Path(platformdirs.user_data_dir("archiver")) / encode_component(host.lower())
            / encode_component(user))


@click.command()
@click.argument("source")
@click.argument("target")
@click.option("--via", type=click.Path(path_type=Path),
              help="The local archive (default: HOST/USER under the user data directory).")
@click.option("--user", "-u", help="Login name on SOURCE (overrides the one in the URL).")
@click.option("--password-file", type=click.Path(path_type=Path),
              help="SOURCE password from the first line of FILE (else $ARCHIVER_PASSWORD, "
                   "else a prompt).")
@click.option("--cafile", type=click.Path(path_type=Path),
              help="Trust this CA certificate (PEM) for SOURCE's certificate.")
@click.option("--insecure", is_flag=True, help="Do not verify SOURCE's certificate.")
@click.option("--folder", "include", multiple=True, metavar="GLOB",
              help="Only these folders (children included); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip these folders; repeatable.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds to wait for either server on any operation.")
@_target_options
@click.option("--no-dedup", is_flag=True,
              help="Do not look for messages already on the target (only the journal counts).")
@_output_options
def migrate(source: str, target: str, via: Optional[Path], user: Optional[str],
            password_file: Optional[Path], cafile: Optional[Path], insecure: bool,
            include: tuple[str, ...], exclude: tuple[str, ...], timeout: float,
            target_user: Optional[str], target_password_file: Optional[Path],
            target_cafile: Optional[Path], target_insecure: bool, prefix: str,
            maps: tuple[str, ...], special_use: bool, include_deleted: bool, no_dedup: bool,
            quiet: bool, as_json: bool, verbose: bool, log_file: Optional[Path]) -> None:
    """Move every folder of SOURCE to TARGET through a local archive, then verify.

    \b
    The backup and the upload overlap (each folder is uploaded as soon as it
    is archived).  The archive (--via) is kept; rerun after new mail arrived
    on SOURCE to move just the new mail.
    """
    from archiver.account import TLSOptions, parse_endpoint, read_password
    from archiver.archive import Archive
    from archiver.cli import PASSWORD_ENV, _Logging
    from archiver.engine import BackupOptions
    from archiver.errors import EXIT_PARTIAL, EXIT_VERIFY_PROBLEMS
    from archiver.migrate import run_migrate
    from archiver.progress import TerminalProgress
    from archiver.restore import RestoreOptions
    from archiver.sinks.journal import RestoreJournal
    from archiver.stores import open_store

    trace = verbose or log_file is not None
    with _Logging(verbose, log_file):
        endpoint = parse_endpoint(source, user=user, tls=TLSOptions(cafile=cafile,
                                                                    insecure=insecure),
                                  ask_user=lambda: click.prompt("User name", err=True))
        for note in endpoint.notes:
            _err(f"note: {note}")
        if insecure:
            _err("WARNING: --insecure: the source's certificate is NOT checked")
        password = read_password(password_file, PASSWORD_ENV,
                                 lambda p: click.prompt(p, hide_input=True, err=True),
                                 endpoint.display())
        src: Any
        if endpoint.protocol == "pop3":
            from archiver.sources.pop3 import Pop3Source

            src = Pop3Source(endpoint, password, timeout=timeout)
        else:
            from archiver.sources.imap import ImapSource

            src = ImapSource(endpoint, password, timeout=timeout, trace=trace)
        src.connect()
        sink = None
        archive = None
        journal = None
        try:
            sink = open_target(target, endpoint.user, target_user, target_password_file,
                               target_cafile, target_insecure, timeout, trace)
            dest = (via or default_via(endpoint.host, endpoint.user)).expanduser()
            fmt = "maildir"
            if (dest / ".archiver" / "archive.json").exists():
                fmt = Archive.open_existing(dest).format
            archive = Archive.create_or_open(dest, fmt, {"protocol": endpoint.protocol,
                                                         "host": endpoint.host,
                                                         "user": endpoint.user})
            ep = sink.endpoint
            journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user).open(True)
            show_bar = not quiet and not as_json and sys.stderr.isatty()
            progress = TerminalProgress(show_bar, quiet=quiet)
            try:
                result = run_migrate(
                    src, archive, open_store(archive.dest, fmt), sink, journal,
                    BackupOptions(include=list(include), exclude=list(exclude)),
                    RestoreOptions(prefix=prefix, maps=parse_maps(maps),
                                   special_use=special_use, include_deleted=include_deleted,
                                   dedup=not no_dedup, include=list(include),
                                   exclude=list(exclude)),
                    progress)
            finally:
                progress.close()
        finally:
            src.close()
            for closable in (journal, sink, archive):
                if closable is not None:
                    closable.close()
        if as_json:
            click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        b = result.backup
        if not (quiet or as_json):
            _err(f"archive {dest}: {b.new} new messages ({b.new_bytes / 1e6:.1f} MB), "
                 f"{b.already} already archived")
        for problem in b.problems:
            _err(f"problem (backup): {problem}")
        print_restore(result.restore, quiet or as_json)
        if result.verify is not None:
            print_verify(result.verify, quiet or as_json)
        if not (quiet or as_json):
            _err(f"migrate: {result.seconds:.1f} s")
        if result.status == "partial":
            sys.exit(EXIT_PARTIAL)
        if result.status == "missing":
            sys.exit(EXIT_VERIFY_PROBLEMS)


def register(group: click.Group) -> None:
    """Add ``restore`` and ``migrate`` to the ``archiver`` group."""
    for command in (restore, migrate):
        group.add_command(command)
