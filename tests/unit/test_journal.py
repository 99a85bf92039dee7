"""The restore journal without a server: replaying records, merging two places, naming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archiver.archive import Archive
from archiver.index import IndexWriter
from archiver.restore.journal import RestoreJournal, archive_key, journal_name


def _landed(uid: int, t: str, to_uidvalidity: int = 7) -> dict[str, Any]:
    return {"v": 1, "type": "landed", "target": "INBOX", "folder": "INBOX", "uidvalidity": 1,
            "uid": uid, "sha256": "x", "to_uidvalidity": to_uidvalidity, "to_uid": uid,
            "key": ["m:<a>", 10, None], "how": "append", "t": t}


def _folder(uidvalidity: int, t: str) -> dict[str, Any]:
    return {"v": 1, "type": "folder", "target": "INBOX", "folder": "INBOX",
            "uidvalidity": uidvalidity, "t": t}


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = IndexWriter(path, 0)
    w.append(records)
    w.close()


def test_a_recreated_target_folder_forgets_what_landed_in_the_old_one(tmp_path: Path) -> None:
    j = RestoreJournal(tmp_path, "h", 993, "u")
    _write(j.path, [_folder(7, "2026-01-01T00:00:00+00:00"),
                    _landed(1, "2026-01-01T00:00:01+00:00"),
                    _landed(2, "2026-01-01T00:00:01+00:00"),
                    _folder(8, "2026-01-02T00:00:00+00:00"),
                    _landed(2, "2026-01-02T00:00:01+00:00", to_uidvalidity=8)])
    j.open(write=False)
    assert j.folders == {"INBOX": 8}
    assert sorted(k[3] for k in j.landed) == [2]  # message 1 landed only in the old folder


def test_two_journals_are_merged_in_time_order(tmp_path: Path) -> None:
    dest_dir, state_dir = tmp_path / "dest", tmp_path / "state"
    j = RestoreJournal(state_dir, "h", 993, "u", also_read=[dest_dir / journal_name("h", 993, "u")])
    _write(dest_dir / journal_name("h", 993, "u"),
           [_folder(7, "2026-01-01T00:00:00+00:00"), _landed(1, "2026-01-01T00:00:01+00:00")])
    _write(j.path, [_landed(2, "2026-01-03T00:00:01+00:00")])
    j.open(write=False)
    assert sorted(k[3] for k in j.landed) == [1, 2]
    # the newer folder record in the file read first: time, not file order, decides
    _write(state_dir / "later" / j.path.name, [_folder(9, "2026-01-04T00:00:00+00:00")])
    k = RestoreJournal(state_dir / "later", "h", 993, "u",
                       also_read=[dest_dir / journal_name("h", 993, "u")])
    k.open(write=False)
    assert k.folders == {"INBOX": 9} and not k.landed


def _archive(dest: Path, meta: dict[str, Any]) -> Archive:
    (dest / ".archiver").mkdir(parents=True)
    (dest / ".archiver" / "archive.json").write_text(json.dumps(meta))
    return Archive.open_existing(dest)


def test_archive_key_is_the_archive_not_where_it_is_mounted(tmp_path: Path) -> None:
    meta = {"v": 1, "format": "maildir", "created": "2026-01-01T00:00:00+00:00",
            "source": {"protocol": "imap", "host": "Old.Example", "user": "s1234"}}
    one = archive_key(_archive(tmp_path / "dvd", meta))
    assert one == archive_key(_archive(tmp_path / "elsewhere", meta))
    assert one.startswith("s1234@old.example-")
    other = archive_key(_archive(tmp_path / "b", {**meta, "created": "2026-01-02T00:00:00+00:00"}))
    assert other != one
    undated = {k: v for k, v in meta.items() if k != "created"}
    assert archive_key(_archive(tmp_path / "c", undated)) != \
        archive_key(_archive(tmp_path / "d", undated))
