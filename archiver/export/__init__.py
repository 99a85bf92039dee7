"""``archiver export``: copy an archive into another form, never changing it.

Forms (one module each): ``thunderbird`` (a "Local Folders" tree of mbox
files wrapped in one folder, written by :mod:`~archiver.export.install`),
``mbox`` (mboxrd files in the same tree shape), ``maildir`` (a plain
Maildir tree) and ``eml`` (one ``.eml`` file per message).  Messages are read
only through ``open_store(archive.dest, archive.format).message_chunks(entry)``,
so every archive format exports the same way.

Constant memory: the index is read record by record into the folded state
plus, per message, only what the form needs beyond it (the Date header when
there is no INTERNALDATE; the subject for ``eml``), and each message is
copied in chunks (:mod:`archiver.export.framing`), never held whole.  A
message that cannot be read is reported and whatever of it was written is
taken back.

OUT must not exist or be an empty directory (and must not lie inside the
archive): an export never mixes with other files, and a second export never
half-overwrites the first.  Files are created ``0600`` and directories
``0700`` (it is private mail); the run ends with ``sync()``.

This module holds the run and the choice of form; :mod:`archiver.export.plan`
the message list in a stable order; :mod:`archiver.export.common` what the forms share (dates,
output files, file names that are safe on Windows and macOS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from archiver import platform
from archiver.archive import Archive
from archiver.errors import DestinationError, UsageError
from archiver.export.common import Writer
from archiver.export.framing import Message, Unreadable
from archiver.export.plan import ExportReport, plan
from archiver.fsutil import DIR_MODE, translate_os_errors
from archiver.i18n import _

KINDS = ("thunderbird", "mbox", "maildir", "eml")


def check_out(out: Path, dest: Path) -> None:
    """OUT must be new or an empty directory, outside the archive (else exit 6)."""
    real_out, real_dest = out.resolve(), dest.resolve()
    if real_out == real_dest or real_dest in real_out.parents:
        raise DestinationError(_("{out} is inside the archive {dest}: export writes "
                                 "elsewhere; choose a directory outside it").format(
                                 out=out, dest=dest))
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DestinationError(_("{out} exists and is not a directory: choose a new or "
                                     "empty directory for the export").format(out=out))
        if any(out.iterdir()):
            raise DestinationError(_("{out} is not empty: export writes only into a new or "
                                     "empty directory; choose another one or empty it").format(
                                     out=out))
    else:
        with translate_os_errors(_("creating {path}").format(path=out)):
            out.mkdir(mode=DIR_MODE, parents=True)


def export_archive(archive: Archive, out: Path, kind: str,
                   portable: bool = False, name: Optional[str] = None) -> ExportReport:
    """Write every archived message of ``archive`` into ``out`` in form ``kind``.

    ``portable`` (maildir): name files with ``;2,`` even where OUT takes ``:``.
    ``name`` (thunderbird): the wrapping folder (:mod:`archiver.export.install`).
    """
    if kind not in KINDS:
        raise UsageError(_("unknown export form '{kind}': choose one of {names}").format(
                           kind=kind, names=', '.join(KINDS)))
    from archiver.stores import open_store

    if kind == "thunderbird":
        from archiver.export.install import default_name, install

        check_out(out, archive.dest)
        wrapped = install(archive, out, name or default_name(archive))
        platform.sync_tree(out)
        return wrapped

    jobs = plan(archive, kind)
    check_out(out, archive.dest)
    writer = _writer(kind, out, portable)
    report = ExportReport()
    store = open_store(archive.dest, archive.format)
    try:
        with translate_os_errors(_("writing into {path}").format(path=out)):
            writer.folders(jobs)
            for job in jobs:
                writer.begin(job)
                report.folders += 1
                for item in job.items:
                    try:
                        msg = Message.archived(store, item.entry)
                        writer.add(item, msg)
                    except Unreadable as exc:
                        report.problems.append(_("{folder}: message {id} ({path}) unreadable: "
                                                 "{exc}").format(
                                                 folder=item.folder, id=item.id,
                                                 path=item.entry.path, exc=exc))
                        continue
                    report.messages += 1
                    report.bytes += msg.copied
                writer.end()
    finally:
        store.close()
    platform.sync_tree(out)  # "done" means on disk (one os.sync where there is one)
    return report


def _writer(kind: str, out: Path, portable: bool = False) -> Writer:
    if kind == "mbox":
        from archiver.export.mbox import MboxWriter

        return MboxWriter(out)
    if kind == "maildir":
        from archiver.export.maildir import MaildirWriter
        from archiver.naming import probe

        with translate_os_errors(_("writing into {out}").format(out=out)):
            naming = probe(out, portable)  # OUT is new or empty: its own file system decides
        return MaildirWriter(out, naming.delimiter)
    from archiver.export.eml import EmlWriter

    return EmlWriter(out)


