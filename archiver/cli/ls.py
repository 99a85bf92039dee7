"""``archiver ls``: an archive's folders, or one folder's messages, from the index."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import warn_skipped
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _
from archiver.units import human_size


@click.command(name="ls", cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("folder", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def ls_command(dest: Path, folder: Optional[str], as_json: bool) -> None:
    """List DEST's folders (counts, sizes), or the messages of FOLDER."""
    from archiver.reading import open_archive

    archive = open_archive(dest.expanduser())
    _ls(archive, dest, folder, as_json)
    warn_skipped(archive)


def _ls(archive: Any, dest: Path, folder: Optional[str], as_json: bool) -> None:
    from archiver.errors import UsageError
    from archiver.offline.listing import list_folders, list_messages

    if folder is None:
        for f in list_folders(archive):
            if as_json:
                click.echo(json.dumps(asdict(f), ensure_ascii=False))
            else:
                gone = ("  " + _("({n} gone from server)").format(n=f.gone)) if f.gone else ""
                click.echo(f"{f.messages:7d} {human_size(f.bytes):>9}  {f.name}{gone}")
        return
    lines = list_messages(archive, folder)
    if lines is None:
        raise UsageError(_("no folder '{folder}' in {dest}: 'archiver ls {dest}' lists "
                           "them").format(folder=folder, dest=dest))
    for m in lines:
        if as_json:
            click.echo(json.dumps(asdict(m), ensure_ascii=False))
        else:
            date = (m.date or "")[:10]
            click.echo(f"{m.id}  {date:10}  {fit(m.sender or '', 32)}  {m.subject or ''}"
                       + ("  " + _("[gone]") if m.gone else ""))


def fit(text: str, width: int) -> str:
    """Pad or cut to ``width`` terminal columns (Japanese characters take two)."""
    out: list[str] = []
    used = 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width - (1 if len(text) > len(out) + 1 else 0):
            out.append("…")
            used += 1
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * max(0, width - used)
