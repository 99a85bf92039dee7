"""``archiver show``: one archived message, decoded for reading, or its exact bytes."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, cast

import click

from archiver.cli.common import require_index, warn_skipped
from archiver.cli.translated import TranslatedCommand


@click.command(cls=TranslatedCommand)
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("message_id", metavar="ID")
@click.option("--raw", is_flag=True, help="Write the exact archived bytes to stdout.")
def show(dest: Path, message_id: str, raw: bool) -> None:
    """Show message ID (at least 6 hex digits of its ID) from DEST.

    Decoded headers, the text (HTML converted to text when there is no plain
    text), and the attachments' names.  --raw writes the exact bytes instead
    (e.g. 'archiver show DEST ID --raw > message.eml').
    """
    from archiver.offline.show import find, read, render
    from archiver.reading import open_archive

    archive = open_archive(dest.expanduser())
    require_index(archive, dest)
    items = find(archive, message_id)
    warn_skipped(archive)
    data = read(archive, items[0])
    if raw:
        # click's stubs type get_binary_stream as "object" in some releases
        stream = cast(Callable[[str], BinaryIO], click.get_binary_stream)("stdout")
        stream.write(data)
        stream.flush()
        return
    click.echo(render(items, data), nl=False)
