"""``archiver backup``: copy every message of every folder of SOURCE into DEST."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    Logging,
    SourceArgs,
    endpoint_identity,
    err,
    folder_options,
    namespace_option,
    new_archive_options,
    open_source,
    output_options,
    print_notes,
    show_alerts,
    source_options,
    warn_skipped,
)
from archiver.cli.summaries import backup_line, next_step
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _


@click.command(cls=TranslatedCommand)
@click.argument("source")
@click.argument("dest", type=click.Path(path_type=Path))
@source_options
@folder_options
@namespace_option
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default=None,
              help="Archive format of a new DEST: a Maildir per folder (the default), or one "
                   "mbox file per folder laid out like Thunderbird's Local Folders.  A rerun "
                   "reads it from the archive.")
@new_archive_options
@output_options
def backup(source: str, dest: Path, include: tuple[str, ...], exclude: tuple[str, ...],
           all_namespaces: bool, fmt: Optional[str], portable_names: bool,
           no_space_check: bool, quiet: bool, as_json: bool, verbose: bool,
           log_file: Optional[Path],
           **source_params: Any) -> None:
    """Copy every message of every folder of SOURCE into DEST.

    \b
    SOURCE is imaps://USER@HOST[:PORT], imap://USER@HOST[:PORT] (STARTTLS),
    pop3s://USER@HOST[:PORT], pop3://USER@HOST[:PORT] (STLS), or a preset:
    ecc-old, ecc-old-pop, ecc-new.  DEST is a directory (created if missing).
    Rerun the same command at any time: it fetches only what is new, picks up
    flag changes, and repairs an interrupted run.
    """
    from archiver.archive import Archive
    from archiver.engine import BackupOptions, run_backup
    from archiver.errors import EXIT_PARTIAL
    from archiver.preflight import start_checks
    from archiver.stores import open_store

    with Logging(verbose, log_file) as logging:
        args = SourceArgs.from_params(source, source_params)
        dest = dest.expanduser()
        # In this order: DEST usable and its lock free (before the password prompt), then
        # the login, the folder patterns and the space check; only then is DEST created.
        held: list[Archive] = []
        try:
            src = open_source(args, logging.trace, before_password=lambda ep: held.append(
                Archive.prepare(dest, fmt, endpoint_identity(ep), portable=portable_names)))
        except BaseException:
            for arc in held:
                arc.close()
            raise
        archive = held[0]
        try:
            pre = start_checks(src, archive, dest, archive.format, include, exclude,
                               all_namespaces, space_check=not no_space_check,
                               listing_hint="archiver folders " + source)
            archive.create()
        except BaseException:
            src.close()
            archive.close()
            raise
        progress = logging.progress(quiet)
        show_alerts(progress, src)
        try:
            summary = run_backup(src, archive, open_store(archive.dest, archive.format),
                                 BackupOptions(include=list(include), exclude=list(exclude),
                                               connections=args.connections,
                                               all_namespaces=all_namespaces,
                                               preflight=pre),
                                 progress, connect=False)
        finally:
            progress.close()
            archive.close()
    warn_skipped(archive)
    for warning in src.warnings:
        err(warning)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    elif not quiet:
        err(backup_line(summary))
        print_notes(summary.notes, None, src)
    for problem in summary.problems:
        err(_("problem: {problem}").format(problem=problem))
    if summary.problems:
        err(_("some messages were not saved: run the same command again to retry them"))
        sys.exit(EXIT_PARTIAL)
    if not (quiet or as_json):
        err(next_step(dest))

