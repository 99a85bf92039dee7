"""The lines a run ends with: grammar through ngettext, decimal units, a next step."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from archiver.cli.summaries import backup_line, next_step, restore_line, verify_line
from archiver.jobs import Summary


def test_one_new_message_is_singular_and_two_are_plural() -> None:
    one = backup_line(Summary(folders=1, new=1, new_bytes=512, flags_updated=1))
    two = backup_line(Summary(folders=2, new=2, new_bytes=3400, flags_updated=2))
    assert "1 folder (0 unchanged)" in one and "1 new message (512 B)" in one
    assert "1 flag update," in one
    assert "2 folders (0 unchanged)" in two and "2 new messages (3.4 kB)" in two
    assert "2 flag updates," in two


def test_a_small_backup_is_not_zero_point_zero_megabytes() -> None:
    line = backup_line(Summary(folders=3, new=4, new_bytes=4096))
    assert "0.0 MB" not in line and "(4.1 kB)" in line


def test_next_step_names_ls_and_the_real_export_syntax() -> None:
    line = next_step(Path("/home/a b/mail-archive"))
    assert line.startswith("Next: archiver ls '/home/a b/mail-archive'")
    # archiver export DEST OUT --to thunderbird (archiver/cli/export.py)
    assert ("archiver export '/home/a b/mail-archive' '/home/a b/mail-archive-thunderbird' "
            "--to thunderbird") in line


def test_restore_and_verify_lines_use_the_same_grammar_and_units() -> None:
    summary = SimpleNamespace(dry_run=False, folders=1, created=["x"], uploaded=1,
                              uploaded_bytes=2_500_000, already=0, found=0, skipped_deleted=0,
                              seconds=1.25)
    line = restore_line(summary)
    assert line.startswith("1 folder (created 1), uploaded 1 message (2.5 MB)")
    report = SimpleNamespace(checked=1, bytes=900, ok=True, missing=[], changed=[], extra=[])
    assert verify_line(report) == "1 message checked (900 B): all good"
