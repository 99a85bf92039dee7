"""``archiver export``: copy an archive into another form (Thunderbird, mbox, Maildir, .eml)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from archiver.cli.common import err, require_index, warn_skipped
from archiver.cli.summaries import (
    export_lines,
    export_problem_lines,
    export_repaired,
    local_folders_added,
)
from archiver.cli.translated import TranslatedCommand
from archiver.export import KINDS
from archiver.i18n import _

if TYPE_CHECKING:
    from archiver.archive import Archive
    from archiver.export.install import InstallReport
    from archiver.export.plan import ExportReport


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path), required=False)
@click.option("--to", "kind", type=click.Choice(KINDS), required=True,
              help="thunderbird: Local Folders tree (without OUT: straight into your "
                   "Thunderbird profile); mbox: mboxrd files; maildir: plain Maildir tree; "
                   "eml: one .eml file per message.")
@click.option("--name", metavar="NAME",
              help="--to thunderbird: the folder that holds the export in Local Folders "
                   "(default 'old-mail (USER)').")
@click.option("--profile", metavar="NAME|PATH",
              help="--to thunderbird without OUT: the Thunderbird profile (a name from "
                   "profiles.ini or its directory; default: the default profile).")
@click.option("--portable-names", is_flag=True,
              help="--to maildir: name files with ';2,' instead of ':2,' even where OUT "
                   "allows ':' (for a copy on Windows or an exFAT stick).")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def export(dest: Path, out: Optional[Path], kind: str, name: Optional[str],
           profile: Optional[str], portable_names: bool, quiet: bool, as_json: bool) -> None:
    """Copy every message of DEST into OUT (a new or empty directory) in another form.

    With --to thunderbird and no OUT, install into the Local Folders of your
    Thunderbird profile (Thunderbird must be closed); a rerun adds only new
    messages. The archive is only read, never changed.
    """
    from archiver.errors import EXIT_PARTIAL, UsageError
    from archiver.export import export_archive
    from archiver.reading import open_archive

    if out is None and kind != "thunderbird":
        raise UsageError(_("export --to {kind} needs OUT, the directory to write into: "
                           "'archiver export DEST OUT --to {kind}'").format(kind=kind))
    if profile and out is not None:
        raise UsageError(_("--profile is for an export straight into Thunderbird: leave out "
                           "OUT or --profile"))
    archive = open_archive(dest.expanduser())
    require_index(archive, dest)
    report: ExportReport
    if out is None:
        report = _into_profile(archive, profile, name, quiet or as_json)
        where = str(report.wrapper)
    else:
        report = export_archive(archive, out.expanduser(), kind, portable_names, name)
        where = str(out)
    warn_skipped(archive)
    if as_json:
        click.echo(json.dumps(_summary(report, kind, where), ensure_ascii=False))
    elif not quiet:
        for line in export_lines(report, kind, where, into_profile=out is None):
            err(line)
    for line in export_problem_lines(report):
        err(line)
    if report.problems:
        sys.exit(EXIT_PARTIAL)


def _summary(report: ExportReport, kind: str, where: str) -> dict[str, Any]:
    """``export --json``: what was written where (status partial: exit 3)."""
    out: dict[str, Any] = {
        "status": "partial" if report.problems else "ok", "format": kind, "out": where,
        "folders": report.folders, "messages": report.messages, "bytes": report.bytes,
        "problems": list(report.problems)}
    for extra in ("already", "repaired"):
        if hasattr(report, extra):
            out[extra] = getattr(report, extra)
    return out


def _into_profile(archive: Archive, choice: Optional[str], name: Optional[str],
                  quiet: bool) -> InstallReport:
    """Install into a profile's Local Folders (:func:`archiver.export.install.into_profile`)."""
    from archiver.export.install import into_profile

    report = into_profile(archive, choice, name)
    if report.added_local_folders is not None and not quiet:
        err(local_folders_added(report))
    for folder in report.repaired:
        err(export_repaired(folder))
    return report
