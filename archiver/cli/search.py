"""``archiver search``: find archived messages offline (headers from the index, bodies too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from archiver.cli.common import err, require_index, warn_skipped
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _, ngettext


@click.command(cls=TranslatedCommand)
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
    A space between Japanese words is optional ("講義 資料" finds 講義資料).
    Prints: ID  DATE  FOLDER  FROM  SUBJECT  (use the ID with 'archiver show').
    """
    from archiver.errors import UsageError
    from archiver.offline.search import Query, as_dict, display_width, format_line, parse_day
    from archiver.offline.search import search as run_search
    from archiver.reading import open_archive

    query = Query(terms=text, sender=sender, subject=subject,
                  since=parse_day(since, "--since"), before=parse_day(before, "--before"),
                  folders=folders, body=body)
    if body and not any(t.strip() for t in text):
        raise UsageError(_("--body searches the message text for TEXT: give TEXT "
                         "(e.g. archiver search DEST --body 議事録)"))
    archive = open_archive(dest.expanduser())
    require_index(archive, dest)
    hits = list(run_search(archive, query))
    warn_skipped(archive)
    if as_json:
        for item in hits:
            click.echo(json.dumps(as_dict(item), ensure_ascii=False))
        return
    width = min(24, max([display_width(i.folder) for i in hits] + [6]))
    for item in hits:
        click.echo(format_line(item, width))
    err(ngettext("{n} message found", "{n} messages found", len(hits)).format(n=len(hits)))
