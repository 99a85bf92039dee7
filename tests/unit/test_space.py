"""The space arithmetic (archiver.space) and the pattern hints (archiver.patterns), no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.errors import UsageError
from archiver.patterns import Candidate, check_patterns, nearest
from archiver.space import (
    MAILDIR_DIRS,
    MBOX_PER_MESSAGE,
    METADATA_FIXED,
    METADATA_PER_MESSAGE,
    FolderNew,
    disk_need,
    nearest_existing,
    upper_bound,
)

KIB = 1024
EXFAT = 128 * KIB


def test_maildir_rounds_every_file_to_the_cluster() -> None:
    need = disk_need([FolderNew("INBOX", {1: 3000, 2: EXFAT + 1, 3: 0})], "maildir", EXFAT)
    files = EXFAT + 2 * EXFAT + 0
    meta = -(-(METADATA_FIXED + 3 * METADATA_PER_MESSAGE) // EXFAT) * EXFAT
    assert need.needed_bytes == files + MAILDIR_DIRS * EXFAT + meta
    assert need.messages == 3 and need.bytes == 3000 + EXFAT + 1


def test_mbox_rounds_once_per_folder_file() -> None:
    sizes = {uid: 3000 for uid in range(1, 41)}  # 40 small messages
    maildir = disk_need([FolderNew("INBOX", sizes, fresh=False)], "maildir", EXFAT)
    mbox = disk_need([FolderNew("INBOX", sizes, fresh=False)], "mbox", EXFAT)
    assert mbox.needed_bytes < maildir.needed_bytes / 4
    body = 40 * (3000 + MBOX_PER_MESSAGE)
    meta = -(-(METADATA_FIXED + 40 * METADATA_PER_MESSAGE) // EXFAT) * EXFAT
    assert mbox.needed_bytes == -(-body // EXFAT) * EXFAT + EXFAT + meta


def test_nothing_new_in_an_existing_archive_needs_nothing() -> None:
    assert disk_need([], "maildir", 4096, new_archive=False).needed_bytes == 0
    assert disk_need([], "maildir", 4096, new_archive=True).needed_bytes >= METADATA_FIXED


def test_nearest_existing_parent(tmp_path: Path) -> None:
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path
    (tmp_path / "f").write_text("x")
    assert nearest_existing(tmp_path / "f") == tmp_path


FOLDERS = [Candidate("INBOX"), Candidate("送信済み", "\\Sent"), Candidate("下書き"),
           Candidate("Archive/2003"), Candidate("草稿", "\\Drafts", "INBOX.草稿")]


def test_nearest_by_special_use_then_known_names_then_spelling() -> None:
    assert [c.label() for c in nearest("Sent", FOLDERS)][:1] == ["送信済み (\\Sent)"]
    assert nearest("Drafts", FOLDERS)[0].name == "草稿"  # by its SPECIAL-USE
    assert "下書き" in [c.name for c in nearest("Drafts", FOLDERS)]  # by its known name
    assert nearest("Archiv/2003", FOLDERS)[0].name == "Archive/2003"
    assert nearest("inbox/x", FOLDERS)[0].name == "INBOX"
    assert nearest("Drafts", FOLDERS)[0].label() == "草稿 (INBOX.草稿, \\Drafts)"


def test_include_and_map_must_match_exclude_only_notes() -> None:
    assert check_patterns(FOLDERS, include=["Archive"], exclude=["Junk"]) == [
        "--exclude 'Junk' matches no folder on the server: nothing was left out by it"]
    with pytest.raises(UsageError, match=r"--folder 'Sent' .*nearest: 送信済み \(\\Sent\)"):
        check_patterns(FOLDERS, include=["Sent"])
    with pytest.raises(UsageError, match="--map 'Archive/2004'"):
        check_patterns(FOLDERS, maps=["Archive/2004"], where="archive")
    assert check_patterns(FOLDERS, include=["inbox"], maps=["Archive"]) == []


@given(st.lists(st.lists(st.integers(0, 3 * EXFAT), max_size=30), max_size=6),
       st.sampled_from(["maildir", "mbox"]), st.sampled_from([512, 4 * KIB, EXFAT]))
def test_status_bound_is_never_below_the_exact_need(
        folders: list[list[int]], fmt: str, cluster: int) -> None:
    """The quick check may only skip the size listing when the truth fits too."""
    exact = disk_need([FolderNew(f"f{i}", dict(enumerate(sizes, 1)))
                       for i, sizes in enumerate(folders)], fmt, cluster)
    bound = upper_bound([(len(s), sum(s)) for s in folders], fmt, cluster)
    assert bound >= exact.needed_bytes
