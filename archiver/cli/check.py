"""``archiver check``: will the mail not yet archived fit on DEST, and how long will it take?"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    Logging,
    SourceArgs,
    endpoint_identity,
    err,
    folder_options,
    log_option,
    namespace_option,
    open_source,
    source_options,
    verbose_option,
)
from archiver.cli.translated import TranslatedCommand


@click.command(cls=TranslatedCommand)
@click.argument("source")
@click.argument("dest", type=click.Path(path_type=Path))
@source_options
@folder_options
@namespace_option
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default=None,
              help="Archive format to reckon with (default: DEST's own, else maildir).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@verbose_option
@log_option
def check(source: str, dest: Path, include: tuple[str, ...], exclude: tuple[str, ...],
          all_namespaces: bool, fmt: Optional[str], as_json: bool, verbose: bool,
          log_file: Optional[Path], **source_params: Any) -> None:
    """Check that the mail of SOURCE not yet in DEST fits there (exit 6 if not).

    \b
    Logs in, adds up the messages DEST does not hold yet (each file rounded
    up to DEST's cluster size, plus room for the index), compares that with
    DEST's free space and times a short sample fetch.  Reads only: DEST is
    neither created nor written, the server not changed.
    """
    from archiver.archive import Archive
    from archiver.errors import EXIT_DESTINATION
    from archiver.i18n import _, ngettext
    from archiver.preflight import measure_rate, select, space_needed
    from archiver.reading import open_archive
    from archiver.space import cluster_size
    from archiver.units import human_size as human

    dest = dest.expanduser()
    if fmt is None:
        fmt = "maildir"
        if (dest / ".archiver" / "archive.json").is_file():
            fmt = open_archive(dest).format
    chosen: str = fmt
    held: list[Archive] = []
    with Logging(verbose, log_file) as logging:
        src = open_source(SourceArgs.from_params(source, source_params), logging.trace,
                          before_password=lambda ep: held.append(Archive.prepare(
                              dest, chosen, endpoint_identity(ep), lock=False)))
        try:
            archive = held[0]
            pre = select(src, archive, include, exclude, all_namespaces,
                         listing_hint=f"archiver folders {source}")
            need, volume = space_needed(src, pre, archive, chosen, dest)
            rate = measure_rate(src, need.folders, pre.selected)
        finally:
            src.close()
    seconds = rate.estimate(need.bytes, need.messages, len(need.folders))
    fits = need.needed_bytes <= volume.free
    if as_json:
        # exit 6 keeps the JSON error form (status, exit, error, reason) with the figures
        verdict_json: dict[str, object] = {"status": "ok"} if fits else {
            "status": "error", "exit": EXIT_DESTINATION,
            "error": _("the mail not yet archived does not fit on {where}").format(
                where=volume.path), "reason": "no-space"}
        click.echo(json.dumps({
            **verdict_json, "needed_bytes": need.needed_bytes, "free_bytes": volume.free,
            "fits": fits,
            "estimated_seconds": None if seconds is None else round(seconds, 6),
            "messages": need.messages, "bytes": need.bytes, "cluster_bytes": need.cluster,
            "format": chosen, "notes": pre.notes}, ensure_ascii=False))
    else:
        for note in pre.notes:
            err(_("note: {note}").format(note=note))
        numbers = ngettext(
            "{n} message not yet archived ({size}), {needed} on disk with {cluster} "
            "clusters and the index; {free} free on {where}",
            "{n} messages not yet archived ({size}), {needed} on disk with {cluster} "
            "clusters and the index; {free} free on {where}", need.messages).format(
            n=need.messages, size=human(need.bytes), needed=human(need.needed_bytes),
            cluster=cluster_size(need.cluster), free=human(volume.free), where=volume.path)
        if not need.messages:
            when = _("nothing to fetch")
        elif seconds is None:
            when = _("time unknown (the sample fetch got nothing)")
        else:
            when = _("about {t} to fetch (measured on a {size} sample)").format(
                t=_duration(seconds), size=human(rate.bytes))
        verdict = _("fits") if fits else _("does not fit")
        click.echo(_("{verdict}: {numbers}; {when}").format(verdict=verdict, numbers=numbers,
                                                              when=when))
    if not fits:
        sys.exit(EXIT_DESTINATION)


def _duration(seconds: float) -> str:
    from archiver.i18n import _

    if seconds < 90:
        return _("{n} s").format(n=max(1, round(seconds)))
    if seconds < 5400:
        return _("{n} min").format(n=round(seconds / 60))
    return _("{n:.1f} h").format(n=seconds / 3600)
