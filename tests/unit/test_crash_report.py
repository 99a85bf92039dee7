"""A bug is a short report with exit 70, never a traceback for the user (archiver/crash.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import archiver.offline.listing
from archiver.archive import Archive
from archiver.errors import EXIT_INTERNAL
from tests.helpers import run_cli


@pytest.fixture
def broken_ls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``archiver ls DEST`` on a valid archive, with a bug planted in the listing."""
    dest = tmp_path / "a"
    Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "h", "user": "u"}
                           ).close()

    def bug(archive: Archive) -> None:
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(archiver.offline.listing, "list_folders", bug)
    monkeypatch.setattr("archiver.crash.crash_dir", lambda: tmp_path / "logs")
    return ["ls", str(dest)]


def test_a_bug_is_exit_70_with_a_saved_report_and_no_traceback(
        broken_ls: list[str], tmp_path: Path) -> None:
    code, out, err = run_cli(broken_ls)
    assert code == EXIT_INTERNAL == 70
    assert "Traceback" not in err
    assert "internal error: ZeroDivisionError: planted bug" in err
    assert "Please report this" in err and "run the same command again" in err
    reports = list((tmp_path / "logs").glob("crash-*.txt"))
    assert len(reports) == 1 and str(reports[0]) in err
    text = reports[0].read_text()
    assert "Traceback" in text and "planted bug" in text and "archiver ls" in text
    assert reports[0].stat().st_mode & 0o777 == 0o600
    assert len(err.strip().splitlines()) <= 3


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_prints_the_traceback(broken_ls: list[str], monkeypatch: pytest.MonkeyPatch,
                                    how: str) -> None:
    if how == "env":
        monkeypatch.setenv("ARCHIVER_DEBUG", "1")
        args = broken_ls
    else:
        args = ["--debug", *broken_ls]
    code, _, err = run_cli(args)
    assert code == 70
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_a_user_mistake_is_still_one_line_not_a_crash_report(tmp_path: Path) -> None:
    code, _, err = run_cli(["ls", str(tmp_path / "nothing-here")])
    assert code == 6 and "internal error" not in err
    assert len(err.strip().splitlines()) == 1
