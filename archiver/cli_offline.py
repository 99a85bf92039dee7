"""Commands that use an archive offline: ``search``, ``show``, ``reindex``, ``export``.

A thin click layer like :mod:`archiver.cli`: the library does the work
(:mod:`archiver.search`, :mod:`archiver.show`, :mod:`archiver.reindex`,
:mod:`archiver.export`), imported inside each command so ``archiver
--version`` stays fast.  Errors are :class:`~archiver.errors.ArchiverError`
subclasses; ``cli.run()`` prints them as one line with their exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

EXPORT_KINDS = ("thunderbird", "mbox", "maildir", "eml")


def _err(text: str) -> None:
    click.echo(text, err=True)


def _require_index(archive: Any, dest: Path) -> None:
    """A missing index makes an archive look empty: say so, and how to rebuild it."""
    from archiver.errors import UsageError

    if not archive.index_path.exists():
        raise UsageError(f"{dest} has no index ({archive.index_path} is missing): "
                         f"'archiver reindex {dest}' rebuilds it from the message files")


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1)
@click.option("--from", "sender", metavar="TEXT", help="The sender contains TEXT.")
@click.option("--subject", metavar="TEXT", help="The subject contains TEXT.")
@click.option("--since", metavar="YYYY-MM-DD", help="Dated on or after this day.")
@click.option("--before", metavar="YYYY-MM-DD", help="Dated before this day.")
@click.option("--folder", "folders", multiple=True, metavar="GLOB",
              help="Only folders matching GLOB (children included); repeatable.")
@click.option("--body", is_flag=True,
              help="TEXT may also match the message text (reads the messages: slower).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def search(dest: Path, text: tuple[str, ...], sender: Optional[str], subject: Optional[str],
           since: Optional[str], before: Optional[str], folders: tuple[str, ...], body: bool,
           as_json: bool) -> None:
    """Find messages in DEST whose subject, sender or recipients contain TEXT.

    \b
    Case-insensitive; full-width and half-width forms match each other.
    Several TEXT words must all match; quote a phrase ("講義 資料").
    Prints: ID  DATE  FOLDER  FROM  SUBJECT  (use the ID with 'archiver show').
    """
    from archiver.archive import Archive
    from archiver.errors import UsageError
    from archiver.search import Query, as_dict, display_width, format_line, parse_day
    from archiver.search import search as run_search

    query = Query(terms=text, sender=sender, subject=subject,
                  since=parse_day(since, "--since"), before=parse_day(before, "--before"),
                  folders=folders, body=body)
    if body and not any(t.strip() for t in text):
        raise UsageError("--body searches the message text for TEXT: give TEXT "
                         "(e.g. archiver search DEST --body 議事録)")
    archive = Archive.open_existing(dest.expanduser())
    _require_index(archive, dest)
    hits = list(run_search(archive, query))
    if as_json:
        for item in hits:
            click.echo(json.dumps(as_dict(item), ensure_ascii=False))
        return
    width = min(24, max([display_width(i.folder) for i in hits] + [6]))
    for item in hits:
        click.echo(format_line(item, width))
    _err(f"{len(hits)} message{'s' if len(hits) != 1 else ''} found")


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("message_id", metavar="ID")
@click.option("--raw", is_flag=True, help="Write the exact archived bytes to stdout.")
def show(dest: Path, message_id: str, raw: bool) -> None:
    """Show message ID (at least 6 hex digits of its ID) from DEST.

    Decoded headers, the text (HTML converted to text when there is no plain
    text), and the attachments' names.  --raw writes the exact bytes instead
    (e.g. 'archiver show DEST ID --raw > message.eml').
    """
    from archiver.archive import Archive
    from archiver.show import find, read, render

    archive = Archive.open_existing(dest.expanduser())
    _require_index(archive, dest)
    items = find(archive, message_id)
    data = read(archive, items[0])
    if raw:
        out = click.get_binary_stream("stdout")
        out.write(data)
        out.flush()
        return
    click.echo(render(items, data), nl=False)


@click.command()
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
    from archiver.reindex import rebuild_index, write_snapshot

    archive = Archive.open_existing(dest.expanduser())
    if snapshot:
        info = write_snapshot(archive)
        _err(f"snapshot written: {info.path} ({info.folders} folders, "
             f"{info.messages} message notes, {info.size / 1024:.0f} KB)")
        return
    report = rebuild_index(archive, force=force)
    if report.moved_aside is not None:
        _err(f"the old index was kept as {report.moved_aside}")
    _err(f"index rebuilt: {report.folders} folders, {report.messages} messages"
         + (f", snapshot of {report.snapshot_time} applied" if report.snapshot_time else
            ", no snapshot (keywords other than $Forwarded and POP3 UIDLs are not known)"))
    for problem in report.skipped:
        _err(f"skipped: {problem}")


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "kind", type=click.Choice(EXPORT_KINDS), required=True,
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
    _require_index(archive, dest)
    report = export_archive(archive, out.expanduser(), kind)
    if not quiet:
        _err(f"exported {report.messages} messages ({report.bytes / 1e6:.1f} MB) from "
             f"{report.folders} folders to {out} ({kind})")
    for problem in report.problems:
        _err(f"problem: {problem}")
    if report.problems:
        _err("some messages could not be read from the archive: run 'archiver verify'")
        sys.exit(EXIT_PARTIAL)


def register(group: click.Group) -> None:
    """Add the offline commands to the ``archiver`` group."""
    for command in (search, show, reindex, export):
        group.add_command(command)
