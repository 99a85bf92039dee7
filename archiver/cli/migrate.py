"""``archiver migrate``: back up SOURCE and restore it to TARGET in one overlapped run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    Logging,
    SourceArgs,
    err,
    folder_options,
    namespace_option,
    naming_the_server,
    open_source,
    open_target,
    output_options,
    parse_maps,
    print_notes,
    show_alerts,
    source_identity,
    source_options,
    state_dir,
    target_options,
    warn_skipped,
)
from archiver.cli.restore import print_restore, print_verify
from archiver.cli.summaries import migrate_archive_line, seconds_text
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _


def default_via(host: str, user: str) -> Path:
    """Where migrate keeps its archive when --via is not given: one directory per account."""
    import platformdirs

    from archiver.names import encode_component

    return (Path(platformdirs.user_data_dir("archiver")) / encode_component(host.lower())
            / encode_component(user))


@click.command(cls=TranslatedCommand)
@click.argument("source")
@click.argument("target")
@click.option("--via", type=click.Path(path_type=Path), metavar="PATH",
              help="The local archive (default: HOST/USER under the user data directory).")
@source_options
@folder_options
@namespace_option
@target_options
@click.option("--no-dedup", is_flag=True,
              help="Do not look for messages already on the target (only the journal counts).")
@output_options
def migrate(source: str, target: str, via: Optional[Path], include: tuple[str, ...],
            exclude: tuple[str, ...], all_namespaces: bool, target_user: Optional[str],
            target_password_file: Optional[Path], target_cafile: Optional[Path],
            target_insecure: bool, prefix: str, maps: tuple[str, ...], special_use: bool,
            include_deleted: bool, no_dedup: bool, quiet: bool, as_json: bool, verbose: bool,
            log_file: Optional[Path], **source_params: Any) -> None:
    """Move every folder of SOURCE to TARGET through a local archive, then verify.

    \b
    The backup and the upload overlap (each folder is uploaded as soon as it
    is archived).  The archive (--via) is kept; rerun after new mail arrived
    on SOURCE to move just the new mail.  --timeout applies to both servers.
    """
    from archiver.archive import Archive
    from archiver.engine import BackupOptions
    from archiver.errors import EXIT_PARTIAL, EXIT_VERIFY_PROBLEMS
    from archiver.malloc import fix_mmap_threshold
    from archiver.preflight import select
    from archiver.restore.journal import RestoreJournal
    from archiver.restore.migrate import run_migrate
    from archiver.restore.upload import RestoreOptions
    from archiver.stores import open_store

    fix_mmap_threshold()  # message buffers go back to the system when freed
    args = SourceArgs.from_params(source, source_params)
    with Logging(verbose, log_file) as logging:
        with naming_the_server("source", source):
            src = open_source(args, logging.trace)
        endpoint = src.endpoint
        try:  # a --folder or --map that matches no folder: exit 2 before anything is made
            pre = select(src, None, include, exclude, all_namespaces, f"archiver folders {source}",
                         maps=[old for old, _new in parse_maps(maps)])
        except BaseException:
            src.close()
            raise
        sink = None
        archive = None
        journal = None
        try:
            with naming_the_server("target", target):
                sink = open_target(target, endpoint.user, target_user, target_password_file,
                                   target_cafile, target_insecure, args.timeout,
                                   logging.trace)
            dest = (via or default_via(endpoint.host, endpoint.user)).expanduser()
            archive = Archive.create_or_open(dest, None, source_identity(src))
            ep = sink.endpoint
            journal = RestoreJournal.for_archive(archive, ep.host, ep.port, ep.user,
                                                 state_dir()).open(True)
            progress = logging.progress(quiet)
            show_alerts(progress, src, sink)
            try:
                result = run_migrate(
                    src, archive, open_store(archive.dest, archive.format), sink, journal,
                    BackupOptions(include=list(include), exclude=list(exclude),
                                  connections=args.connections,
                                  all_namespaces=all_namespaces, preflight=pre),
                    RestoreOptions(prefix=prefix, maps=parse_maps(maps),
                                   special_use=special_use, include_deleted=include_deleted,
                                   dedup=not no_dedup, include=list(include),
                                   exclude=list(exclude), connections=args.connections),
                    progress)
            finally:
                progress.close()
        finally:
            src.close()
            for closable in (journal, sink, archive):
                if closable is not None:
                    closable.close()
    for warning in src.warnings:
        err(warning)
    if archive is not None:
        warn_skipped(archive)
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    b = result.backup
    if not (quiet or as_json):
        err(migrate_archive_line(dest, b))
    if not (quiet or as_json):
        print_notes(b.notes, _("note (backup)"), src)
    for problem in b.problems:
        err(_("problem (backup): {problem}").format(problem=problem))
    print_restore(result.restore, quiet or as_json, sink)
    if result.verify is not None:
        print_verify(result.verify, quiet or as_json)
    if not (quiet or as_json):
        err(_("migrate: {seconds}").format(seconds=seconds_text(result.seconds)))
    if result.status == "partial":
        sys.exit(EXIT_PARTIAL)
    if result.status == "missing":
        sys.exit(EXIT_VERIFY_PROBLEMS)
