"""``archiver folders``: list the server's folders before choosing what to back up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    Logging,
    SourceArgs,
    err,
    log_option,
    namespace_option,
    open_source,
    source_options,
    verbose_option,
)
from archiver.cli.translated import TranslatedCommand


@click.command(cls=TranslatedCommand)
@click.argument("source")
@source_options
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="Print the folders as JSON on stdout.")
@verbose_option
@log_option
def folders(source: str, all_namespaces: bool, as_json: bool, verbose: bool,
            log_file: Optional[Path], **source_params: Any) -> None:
    """List the folders of SOURCE with their messages and size (read-only).

    \b
    The names are the ones --folder and --exclude match (decoded, '/' between
    levels); \\Noselect folders hold no mail, only other folders.
    """
    from archiver.i18n import ngettext
    from archiver.survey import survey

    with Logging(verbose, log_file) as logging:
        src = open_source(SourceArgs.from_params(source, source_params), logging.trace)
        try:
            found = survey(src, all_namespaces)
        finally:
            src.close()
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in found.folders], ensure_ascii=False))
    else:
        for line in table([row(f) for f in found.folders]):
            click.echo(line)
    if found.left_out:
        err(ngettext("note: {n} folder in other users' or shared namespaces is not listed: "
                     "use --all-namespaces to see it",
                     "note: {n} folders in other users' or shared namespaces are not listed: "
                     "use --all-namespaces to see them", found.left_out).format(n=found.left_out))


def row(f: Any) -> list[str]:
    """One folder's cells: name, messages, size, marks (special use, \\Noselect, server name)."""
    from archiver.i18n import _, ngettext
    from archiver.units import human_size as human

    count = "" if f.messages is None else ngettext("{n} message", "{n} messages",
                                                    f.messages).format(n=f.messages)
    size = "" if f.bytes is None else human(f.bytes)
    marks = [m for m in (f.special_use, "\\Noselect" if f.noselect else None) if m]
    if f.server_name != f.name:
        marks.append(_("(on the server: {name})").format(name=f.server_name))
    return [f.name, count, size, " ".join(marks)]


def width(text: str) -> int:
    """Columns on a terminal: East Asian wide and full-width characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(rows: list[list[str]]) -> list[str]:
    """Rows as aligned text lines (numbers right-aligned), for Japanese names too."""
    if not rows:
        return []
    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        name = r[0] + " " * (widths[0] - width(r[0]))
        nums = [" " * (widths[i] - width(r[i])) + r[i] for i in (1, 2)]
        out.append("  ".join([name, *nums, r[3]]).rstrip())
    return out
