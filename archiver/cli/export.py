"""``archiver export``: copy an archive into another form (Thunderbird, mbox, Maildir, .eml)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from archiver.cli.common import err, require_index, warn_skipped
from archiver.cli.translated import TranslatedCommand
from archiver.export import KINDS
from archiver.i18n import _


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "kind", type=click.Choice(KINDS), required=True,
              help="thunderbird: Local Folders tree; mbox: mboxrd files; maildir: plain "
                   "Maildir tree; eml: one .eml file per message.")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def export(dest: Path, out: Path, kind: str, quiet: bool) -> None:
    """Copy every message of DEST into OUT (a new or empty directory) in another form.

    The archive is only read, never changed.
    """
    from archiver.archive import Archive
    from archiver.errors import EXIT_PARTIAL
    from archiver.export import export_archive

    archive = Archive.open_existing(dest.expanduser())
    require_index(archive, dest)
    report = export_archive(archive, out.expanduser(), kind)
    warn_skipped(archive)
    if not quiet:
        err(_("exported {messages} messages ({value:.1f} MB) from {folders} folders to {out} "
              "({kind})").format(
              messages=report.messages, value=report.bytes / 1e6, folders=report.folders,
              out=out, kind=kind))
    for problem in report.problems:
        err(_("problem: {problem}").format(problem=problem))
    if report.problems:
        err(_("some messages could not be read from the archive: run 'archiver verify'"))
        sys.exit(EXIT_PARTIAL)
