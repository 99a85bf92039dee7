"""``archiver export``: copy an archive into another form (Thunderbird, mbox, Maildir, .eml)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from archiver.cli.common import err, require_index, warn_skipped
from archiver.cli.summaries import folders
from archiver.cli.translated import TranslatedCommand
from archiver.export import KINDS
from archiver.i18n import _, ngettext
from archiver.units import human_size

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
    from archiver.archive import Archive
    from archiver.errors import EXIT_PARTIAL, UsageError
    from archiver.export import export_archive

    if out is None and kind != "thunderbird":
        raise UsageError(_("export --to {kind} needs OUT, the directory to write into: "
                           "'archiver export DEST OUT --to {kind}'").format(kind=kind))
    if profile and out is not None:
        raise UsageError(_("--profile is for an export straight into Thunderbird: leave out "
                           "OUT or --profile"))
    archive = Archive.open_existing(dest.expanduser())
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
        err(ngettext("exported {n} message ({size}) from {folders} to {out} ({kind})",
                     "exported {n} messages ({size}) from {folders} to {out} ({kind})",
                     report.messages).format(n=report.messages, size=human_size(report.bytes),
                                             folders=folders(report.folders), out=where,
                                             kind=kind))
        already = getattr(report, "already", 0)
        if already:
            err(ngettext("{n} message was exported before and not added again",
                         "{n} messages were exported before and not added again",
                         already).format(n=already))
        if out is None:
            err(_("start Thunderbird: Local Folders -> {name}").format(name=Path(where).name))
    for problem in report.problems:
        err(_("problem: {problem}").format(problem=problem))
    if report.problems:
        err(_("some messages could not be read from the archive: run 'archiver verify'"))
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
    """Install into a profile's Local Folders: found, checked (no Maildir store,
    Thunderbird closed), then written (a rerun adds only new messages)."""
    from archiver.export.install import default_name, install
    from archiver.export.profile import (
        add_local_folders,
        find_profile,
        local_folders,
        thunderbird_kept_out,
    )

    prof = find_profile(choice)
    with thunderbird_kept_out(prof.path):
        lf = local_folders(prof.path)
        if not lf.configured:
            add_local_folders(prof.path)
            if not quiet:
                err(_("profile {profile} had no Local Folders yet: added them ({path})").format(
                    profile=prof.path, path=lf.path))
        report = install(archive, lf.path, name or default_name(archive))
    for folder in report.repaired:
        err(_("{folder}: took back what an interrupted export left unrecorded (written "
              "again now)").format(folder=folder))
    return report
