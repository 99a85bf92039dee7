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
    err,
    folder_options,
    namespace_option,
    open_source,
    output_options,
    print_notes,
    progress_for,
    show_alerts,
    source_identity,
    source_options,
    warn_skipped,
)
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _, ngettext


@click.command(cls=TranslatedCommand)
@click.argument("source")
@click.argument("dest", type=click.Path(path_type=Path))
@source_options
@folder_options
@namespace_option
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default="maildir",
              show_default=True,
              help="Archive format: a Maildir per folder, or one mbox file per folder laid out "
                   "like Thunderbird's Local Folders.")
@output_options
def backup(source: str, dest: Path, include: tuple[str, ...], exclude: tuple[str, ...],
           all_namespaces: bool, fmt: str, quiet: bool, as_json: bool, verbose: bool,
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
    from archiver.stores import open_store

    with Logging(verbose, log_file) as logging:
        args = SourceArgs.from_params(source, source_params)
        src = open_source(args, logging.trace)
        try:
            archive = Archive.create_or_open(dest.expanduser(), fmt, source_identity(src))
        except BaseException:
            src.close()
            raise
        progress = progress_for(quiet, as_json)
        show_alerts(progress, src)
        try:
            summary = run_backup(src, archive, open_store(archive.dest, fmt),
                                 BackupOptions(include=list(include), exclude=list(exclude),
                                               connections=args.connections,
                                               all_namespaces=all_namespaces),
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
        folders = ngettext("{n} folder", "{n} folders", summary.folders).format(
            n=summary.folders)
        err(_("{folders} ({folders_skipped} unchanged), {new} new messages ({mb:.1f} MB), "
              "{already} already archived, {flags_updated} flag updates, {gone} gone from "
              "server, {seconds:.1f} s").format(
              folders=folders, folders_skipped=summary.folders_skipped,
              new=summary.new, mb=summary.new_bytes / 1e6, already=summary.already,
              flags_updated=summary.flags_updated, gone=summary.gone, seconds=summary.seconds))
        print_notes(summary.notes, "note", src)
    for problem in summary.problems:
        err(_("problem: {problem}").format(problem=problem))
    if summary.problems:
        err(_("some messages were not saved: run the same command again to retry them"))
        sys.exit(EXIT_PARTIAL)
