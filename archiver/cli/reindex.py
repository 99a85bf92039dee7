"""``archiver reindex``: rebuild a lost or damaged index from the message files."""

from __future__ import annotations

from pathlib import Path

import click

from archiver.cli.common import err
from archiver.cli.summaries import folders, messages
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _
from archiver.units import human_size


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--snapshot", is_flag=True,
              help="Do not rebuild: save a snapshot of what only the index knows "
                   "(keywords, folder names, POP3 UIDLs, gone marks) for a later rebuild.")
@click.option("--force", is_flag=True,
              help="Rebuild even though the index reads cleanly (it is kept, renamed).")
def reindex(dest: Path, snapshot: bool, force: bool) -> None:
    """Rebuild DEST's lost or damaged index from the message files.

    \b
    The old index, if any, is kept as .archiver/index.jsonl.zst.damaged-TIME.
    What the files cannot tell (keywords other than $Forwarded, the real names
    of cut folder names, POP3 UIDLs, which messages left the server) comes
    from .archiver/snapshot.json.zst when present: run
    'archiver reindex DEST --snapshot' after backups to keep one.
    """
    from archiver.offline.reindex import rebuild_index
    from archiver.reading import open_archive
    from archiver.snapshot import write_snapshot

    archive = open_archive(dest.expanduser())
    archive.require_writable()
    if snapshot:
        info = write_snapshot(archive)
        err(_("snapshot written: {path} ({folders}, flags and dates of {messages}, "
              "{size})").format(path=info.path, folders=folders(info.folders),
                                messages=messages(info.messages), size=human_size(info.size)))
        return
    report = rebuild_index(archive, force=force)
    if report.moved_aside is not None:
        err(_("the old index was kept as {moved_aside}").format(
              moved_aside=report.moved_aside))
    if report.snapshot_time:
        err(_("index rebuilt: {folders} folders, {messages} messages, snapshot of {time} "
              "applied").format(folders=report.folders, messages=report.messages,
                                time=report.snapshot_time))
    else:
        err(_("index rebuilt: {folders} folders, {messages} messages, no snapshot (keywords "
              "other than $Forwarded and POP3 UIDLs are not known)").format(
              folders=report.folders, messages=report.messages))
    for problem in report.skipped:
        err(_("skipped: {problem}").format(problem=problem))
