"""The lines a run ends with: what it did, in words and units a person reads at once.

One place for the summary texts of backup, migrate, restore and verify, so
they share the grammar ("1 new message", "2 new messages", through
``ngettext``), the units (decimal, :func:`archiver.units.human_size`: never
"0.0 MB") and the translations.  Each function returns the text; the
commands decide where it goes (stderr, or nothing with ``--quiet``/``--json``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from archiver.i18n import _, ngettext
from archiver.units import human_size


def seconds_text(seconds: float) -> str:
    return _("{seconds:.1f} s").format(seconds=seconds)


def new_messages(n: int, nbytes: int) -> str:
    """``1 new message (3.4 kB)``, ``2 new messages (1.2 MB)``."""
    return ngettext("{n} new message ({size})", "{n} new messages ({size})", n).format(
        n=n, size=human_size(nbytes))


def messages(n: int) -> str:
    return ngettext("{n} message", "{n} messages", n).format(n=n)


def folders(n: int) -> str:
    return ngettext("{n} folder", "{n} folders", n).format(n=n)


def backup_line(summary: Any) -> str:
    """The backup's one-line summary."""
    parts = [
        ngettext("{n} folder ({unchanged} unchanged)", "{n} folders ({unchanged} unchanged)",
                 summary.folders).format(n=summary.folders, unchanged=summary.folders_skipped),
        new_messages(summary.new, summary.new_bytes),
        _("{n} already archived").format(n=summary.already),
        ngettext("{n} flag update", "{n} flag updates", summary.flags_updated).format(
            n=summary.flags_updated),
        _("{n} gone from server").format(n=summary.gone),
        seconds_text(summary.seconds),
    ]
    return _(", ").join(parts)


def next_step(dest: Path) -> str:
    """After a good backup: how to look at it, and how to open it in Thunderbird."""
    where = shlex.quote(str(dest))
    export_to = shlex.quote(str(dest).rstrip("/") + "-thunderbird")
    return _("Next: archiver ls {dest}  ·  archiver export {dest} {out} --to thunderbird"
             ).format(dest=where, out=export_to)


def migrate_archive_line(dest: Path, backup: Any) -> str:
    """migrate's line about its archive (the backup half)."""
    return _("archive {dest}: {new}, {already} already archived").format(
        dest=dest, new=new_messages(backup.new, backup.new_bytes), already=backup.already)


def restore_line(summary: Any) -> str:
    """restore's (and migrate's) one-line summary of the upload."""
    if summary.dry_run:
        made = _("would create {n}").format(n=len(summary.created))
        sent = ngettext("would upload {n} message ({size})",
                        "would upload {n} messages ({size})", summary.uploaded)
    else:
        made = _("created {n}").format(n=len(summary.created))
        sent = ngettext("uploaded {n} message ({size})", "uploaded {n} messages ({size})",
                        summary.uploaded)
    parts = [
        _("{folders} ({made})").format(folders=folders(summary.folders), made=made),
        sent.format(n=summary.uploaded, size=human_size(summary.uploaded_bytes)),
        _("{n} already restored").format(n=summary.already),
        _("{n} already on the target").format(n=summary.found),
        _("{n} \\Deleted left out").format(n=summary.skipped_deleted),
        seconds_text(summary.seconds),
    ]
    return _(", ").join(parts)


def verify_line(report: Any) -> str:
    """verify's last line: how much was checked, and what is wrong."""
    checked = ngettext("{n} message checked ({size})", "{n} messages checked ({size})",
                       report.checked).format(n=report.checked, size=human_size(report.bytes))
    if report.ok:
        return _("{checked}: all good").format(checked=checked)
    return _("{checked}: {missing} missing, {changed} changed, {extra} extra").format(
        checked=checked, missing=len(report.missing), changed=len(report.changed),
        extra=len(report.extra))


def export_lines(report: Any, kind: str, where: str, into_profile: bool) -> list[str]:
    """``archiver export``'s summary (and the web page's after "Open in Thunderbird")."""
    lines = [ngettext("exported {n} message ({size}) from {folders} to {out} ({kind})",
                      "exported {n} messages ({size}) from {folders} to {out} ({kind})",
                      report.messages).format(n=report.messages, size=human_size(report.bytes),
                                              folders=folders(report.folders), out=where,
                                              kind=kind)]
    already = getattr(report, "already", 0)
    if already:
        lines.append(ngettext("{n} message was exported before and not added again",
                              "{n} messages were exported before and not added again",
                              already).format(n=already))
    if into_profile:
        lines.append(_("start Thunderbird: Local Folders -> {name}").format(
            name=Path(where).name))
    return lines


def export_problem_lines(report: Any) -> list[str]:
    """The messages an export could not read, and the fix (empty when all went well)."""
    lines = [_("problem: {problem}").format(problem=p) for p in report.problems]
    if report.problems:
        lines.append(_("some messages could not be read from the archive: run "
                       "'archiver verify'"))
    return lines


def local_folders_added(report: Any) -> str:
    return _("profile {profile} had no Local Folders yet: added them ({path})").format(
        profile=report.profile, path=report.added_local_folders)


def export_repaired(folder: str) -> str:
    return _("{folder}: took back what an interrupted export left unrecorded (written "
             "again now)").format(folder=folder)
