"""``archiver reindex``: rebuild a lost or damaged index from the message files."""

from __future__ import annotations

from pathlib import Path

import click

from archiver.cli.common import err
from archiver.cli.translated import TranslatedCommand


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
    from archiver.archive import Archive
    from archiver.offline.reindex import rebuild_index
    from archiver.snapshot import write_snapshot

    archive = Archive.open_existing(dest.expanduser())
    if snapshot:
        info = write_snapshot(archive)
        err(f"snapshot written: {info.path} ({info.folders} folders, "
             f"{info.messages} message notes, {info.size / 1024:.0f} KB)")
        return
    report = rebuild_index(archive, force=force)
    if report.moved_aside is not None:
        err(f"the old index was kept as {report.moved_aside}")
    err(f"index rebuilt: {report.folders} folders, {report.messages} messages"
         + (f", snapshot of {report.snapshot_time} applied" if report.snapshot_time else
            ", no snapshot (keywords other than $Forwarded and POP3 UIDLs are not known)"))
    for problem in report.skipped:
        err(f"skipped: {problem}")
