"""``archiver restore``: upload an archive to an IMAP account (and ``--verify`` it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    Logging,
    err,
    folder_options,
    open_target,
    output_options,
    parse_maps,
    print_notes,
    require_index,
    show_alerts,
    state_dir,
    target_connections_option,
    target_options,
    warn_skipped,
)
from archiver.cli.summaries import restore_line
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _, ngettext


def print_restore(summary: Any, quiet: bool, *sessions: Any) -> None:
    if not quiet:
        err(restore_line(summary))
        if summary.dry_run:
            for name in summary.created:
                err(_("would create: {name}").format(name=name))
        if summary.keywords_dropped:
            err(ngettext("note: {n} keyword was left out (the target cannot store it)",
                         "note: {n} keywords were left out (the target cannot store them)",
                         summary.keywords_dropped).format(n=summary.keywords_dropped))
        print_notes(summary.notes, None, *sessions)
    for item in summary.refused:
        err(_("refused: {item}").format(item=item))
    for problem in summary.problems:
        err(_("problem: {problem}").format(problem=problem))
    if summary.refused or summary.problems:
        err(_("some messages did not go (listed above); rerun the same command to retry"))


def journal_line(journal: Any, dry_run: bool) -> str:
    """Where the restore journal is (one line): always for --dry-run, else if not in DEST."""
    where = (_("DEST is read-only, so it is kept in the user state directory")
             if journal.in_state_dir else _("in the archive"))
    template = (_("journal (would use): {path} ({where})") if dry_run
                else _("note: journal: {path} ({where})"))
    return template.format(path=journal.path, where=where)


def print_verify(report: Any, quiet: bool) -> None:
    for item in report.missing:
        err(_("missing: {item}").format(item=item))
    for item in report.flags_differ:
        err(_("flags: {item}").format(item=item))
    if not quiet:
        for item in report.altered_messages:
            err(_("altered: {item}").format(item=item))
    if not quiet or not report.ok:
        err(_("verify: {present}/{checked} archived messages on the target in {folders} "
              "folders").format(present=report.present, checked=report.checked,
                                folders=report.folders)
            + (_(" ({altered} present, altered by the server: line ends or NUL bytes "
                 "rewritten, which is not a problem)").format(altered=report.altered)
               if report.altered else "")
            + ("" if report.ok else _(", {missing} missing, {flags} with other flags").format(
                missing=len(report.missing), flags=len(report.flags_differ)))
            + _("; {extra} other messages on the target").format(extra=report.extra))


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("target")
@target_options
@folder_options
@click.option("--no-dedup", is_flag=True,
              help="Do not look for messages already on the target (only the journal counts).")
@click.option("--dry-run", is_flag=True, help="Show what would be created and uploaded.")
@click.option("--verify", "verify_after", is_flag=True,
              help="Afterwards check that every archived message is on the target with its "
                   "flags (exit 1 if not).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds to wait for the target on any operation.")
@target_connections_option
@output_options
def restore(dest: Path, target: str, target_user: Optional[str],
            target_password_file: Optional[Path], target_cafile: Optional[Path],
            target_insecure: bool, prefix: str, maps: tuple[str, ...], special_use: bool,
            include_deleted: bool, include: tuple[str, ...], exclude: tuple[str, ...],
            no_dedup: bool, dry_run: bool, verify_after: bool, timeout: float, connections: int,
            quiet: bool, as_json: bool, verbose: bool, log_file: Optional[Path]) -> None:
    """Upload the archive DEST to the IMAP account TARGET.

    \b
    TARGET is imaps://USER@HOST[:PORT], imap://USER@HOST[:PORT] (STARTTLS)
    or ecc-new.  Missing folders are created; every message goes with its
    flags, keywords and received date.  Rerun at any time: what already
    landed (or is already on the target) is not uploaded again.
    """
    from archiver.errors import EXIT_PARTIAL, EXIT_VERIFY_PROBLEMS
    from archiver.reading import open_archive
    from archiver.restore.check import verify_target
    from archiver.restore.journal import RestoreJournal
    from archiver.restore.upload import Restore, RestoreOptions
    from archiver.stores import open_store

    with Logging(verbose, log_file) as logging:
        archive = open_archive(dest.expanduser())
        require_index(archive, dest)
        from archiver.patterns import check_archived
        for note in check_archived(archive, include, exclude, parse_maps(maps),
                                   listing_hint=f"archiver ls {dest}"):
            err(_("note: {note}").format(note=note))
        source_user = str((archive.meta.get("source") or {}).get("user") or "") or None
        options = RestoreOptions(prefix=prefix, maps=parse_maps(maps), special_use=special_use,
                                 include_deleted=include_deleted, dedup=not no_dedup,
                                 dry_run=dry_run, include=list(include), exclude=list(exclude),
                                 connections=connections)
        sink = open_target(target, source_user, target_user, target_password_file,
                           target_cafile, target_insecure, timeout, logging.trace)
        ep = sink.endpoint
        journal = RestoreJournal.for_archive(archive, ep.host, ep.port, ep.user, state_dir())
        if not (quiet or as_json) and (dry_run or journal.in_state_dir):
            err(journal_line(journal, dry_run))
        progress = logging.progress(quiet)
        show_alerts(progress, sink)
        try:
            journal.open(write=not dry_run)
            job = Restore(archive, open_store(archive.dest, archive.format), sink, journal,
                          options, progress)
            summary = job.run()
            warn_skipped(archive)
            progress.close()
            report = verify_target(job) if verify_after and not dry_run else None
        finally:
            progress.close()
            journal.close()
            sink.close()
        if as_json:
            out = {**summary.as_dict(), "journal": str(journal.path)}
            if report is not None:
                out["verify"] = report.as_dict()
            click.echo(json.dumps(out, ensure_ascii=False))
        print_restore(summary, quiet or as_json, sink)
        if report is not None:
            print_verify(report, quiet or as_json)
        if summary.status != "ok":
            sys.exit(EXIT_PARTIAL)
        if report is not None and not report.ok:
            sys.exit(EXIT_VERIFY_PROBLEMS)
