"""``archiver verify``: re-hash every archived message against the index (``--repair``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from archiver.cli.common import (
    Logging,
    SourceArgs,
    err,
    open_source,
    output_options,
    source_identity,
    source_options,
)
from archiver.cli.summaries import verify_line
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _, ngettext

if TYPE_CHECKING:
    from archiver.repair import RepairReport


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--repair", "repair_source", metavar="SOURCE",
              help="Fetch missing and changed messages again from SOURCE (the archive's "
                   "account; same forms and options as for backup).")
@source_options
@output_options
def verify(dest: Path, repair_source: Optional[str], quiet: bool,
           as_json: bool, verbose: bool, log_file: Optional[Path],
           **source_params: Any) -> None:
    """Re-hash every message in DEST against the index; exit 1 on any problem.

    \b
    With --repair SOURCE, messages found missing or changed are fetched again
    from the server (damaged files are kept in DEST/.archiver/damaged/); the
    exit status is that of the verification afterwards.
    """
    from archiver.errors import EXIT_VERIFY_PROBLEMS, UsageError
    from archiver.offline.verify import verify_archive
    from archiver.reading import open_archive

    ctx = click.get_current_context()
    given = [f"--{name.replace('_', '-')}" for name in source_params
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    if repair_source is None and given:
        raise UsageError(_("{names} only go with --repair SOURCE: add it, or drop them to "
                           "verify without a server").format(names=', '.join(given)))
    with Logging(verbose, log_file) as logging:
        if repair_source is None:
            report = verify_archive(open_archive(dest.expanduser()))
            payload = report.as_dict()
        else:
            repaired = _repair(dest.expanduser(), SourceArgs.from_params(
                repair_source, source_params), logging, quiet)
            report = repaired.after
            payload = repaired.as_dict()
            if not as_json:
                _print_repair(repaired, quiet)
    if as_json:
        status = "ok" if report.ok else "problems"  # exit 1
        click.echo(json.dumps({"status": status, **payload}, ensure_ascii=False))
    else:
        for kind, items in (("missing", report.missing), ("changed", report.changed),
                            ("extra", report.extra), ("index", report.index_problems)):
            for item in items:
                click.echo(f"{kind}: {item}")
        if not quiet:
            click.echo(verify_line(report))
    if not report.ok:
        sys.exit(EXIT_VERIFY_PROBLEMS)


def _repair(dest: Path, args: SourceArgs, logging: Logging, quiet: bool) -> RepairReport:
    """Check the account before connecting, lock DEST, repair (archiver.repair)."""
    from archiver.archive import Archive
    from archiver.reading import open_archive
    from archiver.repair import check_account, repair_archive
    from archiver.stores import open_store

    existing = open_archive(dest)
    existing.require_writable()
    src = open_source(args, logging.trace, connect=False)
    identity = source_identity(src)
    check_account(existing, identity)
    archive = Archive.create_or_open(dest, existing.format, identity)
    progress = logging.progress(quiet)
    try:
        result = repair_archive(src, archive, open_store(archive.dest, archive.format),
                                progress=progress)
    finally:
        progress.close()
        archive.close()
    for warning in getattr(src, "warnings", []):
        err(warning)
    return result


def _print_repair(result: RepairReport, quiet: bool) -> None:
    """What the repair did, before the verification lines (which say what is left)."""
    if not quiet:
        for label in result.repaired:
            click.echo(_("repaired: {label}").format(label=label))
        for copy in result.damaged_copies:
            click.echo(_("damaged copy kept: {copy}").format(copy=copy))
    for label in result.differs:
        click.echo(_("note: {label}: the server's copy differs from the one archived before; "
                     "it is the one kept now").format(label=label))
    for item in result.cannot_repair:
        click.echo(_("cannot repair: {message}: {reason}").format(
                     message=item.message, reason=item.reason))
    for problem in result.problems:
        err(_("problem: {problem}").format(problem=problem))
    if result.before.damaged and not quiet:
        err(ngettext("{n} message of {damaged} damaged fetched again from the server",
                     "{n} messages of {damaged} damaged fetched again from the server",
                     len(result.repaired)).format(n=len(result.repaired),
                                                  damaged=len(result.before.damaged)))
