"""``archiver export``: copy an archive into another form (Thunderbird, mbox, Maildir, .eml)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from archiver.cli.common import err, require_index, warn_skipped
from archiver.cli.summaries import folders
from archiver.cli.translated import TranslatedCommand
from archiver.export import KINDS
from archiver.i18n import _, ngettext
from archiver.units import human_size


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "kind", type=click.Choice(KINDS), required=True,
              help="thunderbird: Local Folders tree; mbox: mboxrd files; maildir: plain "
                   "Maildir tree; eml: one .eml file per message.")
@click.option("--portable-names", is_flag=True,
              help="--to maildir: name files with ';2,' instead of ':2,' even where OUT "
                   "allows ':' (for a copy on Windows or an exFAT stick).")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def export(dest: Path, out: Path, kind: str, portable_names: bool, quiet: bool) -> None:
    """Copy every message of DEST into OUT (a new or empty directory) in another form.

    The archive is only read, never changed.
    """
    from archiver.archive import Archive
    from archiver.errors import EXIT_PARTIAL
    from archiver.export import export_archive

    archive = Archive.open_existing(dest.expanduser())
    require_index(archive, dest)
    report = export_archive(archive, out.expanduser(), kind, portable_names)
    warn_skipped(archive)
    if not quiet:
        err(ngettext("exported {n} message ({size}) from {folders} to {out} ({kind})",
                     "exported {n} messages ({size}) from {folders} to {out} ({kind})",
                     report.messages).format(n=report.messages, size=human_size(report.bytes),
                                             folders=folders(report.folders), out=out,
                                             kind=kind))
    for problem in report.problems:
        err(_("problem: {problem}").format(problem=problem))
    if report.problems:
        err(_("some messages could not be read from the archive: run 'archiver verify'"))
        sys.exit(EXIT_PARTIAL)
