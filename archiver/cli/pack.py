"""``archiver pack`` and ``archiver unpack``: one account's archive as one compressed,
checksummed, random-access file for cold storage, and back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from archiver.cli.common import err
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _, ngettext
from archiver.units import human_size


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("pack", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace PACK if it exists.")
@click.option("--level", type=click.IntRange(1, 22), default=19, show_default=True,
              help="zstd compression level.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def pack(dest: Path, pack: Path, force: bool, level: int, as_json: bool, quiet: bool) -> None:
    """Pack the archive DEST into the single file PACK (compressed, checksummed).

    \b
    PACK holds every file of DEST (messages, index, archive.json, side files)
    and is read in place by ls, search, show, export, restore and verify;
    'archiver unpack PACK DEST' gives back the same tree byte for byte.
    A DEST in use by a backup is refused (exit 6).
    """
    from archiver.pack.writer import write_pack

    started = time.monotonic()
    report = write_pack(dest.expanduser(), pack.expanduser(), force=force, level=level)
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"status": "ok", "pack": str(pack), "files": report.files,
                               "bytes_in": report.bytes_in, "bytes_out": report.bytes_out,
                               "frames": report.frames, "dict_bytes": report.dict_bytes,
                               "seconds": round(seconds, 2)}))
    elif not quiet:
        ratio = report.bytes_out / report.bytes_in if report.bytes_in else 1.0
        err(ngettext("packed {n} file, {size_in} into {size_out} ({percent:.0%}) in "
                     "{seconds:.1f} s: {pack}",
                     "packed {n} files, {size_in} into {size_out} ({percent:.0%}) in "
                     "{seconds:.1f} s: {pack}", report.files).format(
            n=report.files, size_in=human_size(report.bytes_in),
            size_out=human_size(report.bytes_out), percent=ratio, seconds=seconds,
            pack=pack))


@click.command(cls=TranslatedCommand)
@click.argument("pack", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def unpack(pack: Path, dest: Path, as_json: bool, quiet: bool) -> None:
    """Unpack PACK into DEST (new or empty): the archive tree it was made from.

    Every file is checked against its SHA-256; a damaged pack is refused with
    what is damaged, and DEST is then left as it was.
    """
    from archiver.errors import UsageError
    from archiver.pack.reader import is_pack
    from archiver.pack.unpack import unpack as run_unpack

    if not is_pack(pack.expanduser()):
        raise UsageError(_("{pack} is not a pack made by 'archiver pack'").format(pack=pack))
    started = time.monotonic()
    report = run_unpack(pack.expanduser(), dest.expanduser())
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"status": "ok", "dest": str(dest), "files": report.files,
                               "bytes": report.bytes, "seconds": round(seconds, 2)}))
    elif not quiet:
        err(ngettext("unpacked {n} file ({size}) in {seconds:.1f} s into {dest}",
                     "unpacked {n} files ({size}) in {seconds:.1f} s into {dest}",
                     report.files).format(n=report.files, size=human_size(report.bytes),
                                          seconds=seconds, dest=dest))
