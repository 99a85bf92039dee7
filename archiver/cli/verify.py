"""``archiver verify``: re-hash every archived message against the index."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(dest: Path, as_json: bool) -> None:
    """Re-hash every message in DEST against the index; exit 1 on any problem."""
    from archiver.archive import Archive
    from archiver.errors import EXIT_VERIFY_PROBLEMS
    from archiver.offline.verify import verify_archive

    report = verify_archive(Archive.open_existing(dest.expanduser()))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for kind, items in (("missing", report.missing), ("changed", report.changed),
                            ("extra", report.extra), ("index", report.index_problems)):
            for item in items:
                click.echo(f"{kind}: {item}")
        click.echo(f"{report.checked} messages checked ({report.bytes / 1e6:.1f} MB): "
                   + ("all good" if report.ok else
                      f"{len(report.missing)} missing, {len(report.changed)} changed, "
                      f"{len(report.extra)} extra"))
    if not report.ok:
        sys.exit(EXIT_VERIFY_PROBLEMS)
