"""One read path: every command folds the index the same way and survives nonsense records.

The records here are the ones the issue found crashing ``ls``/``verify``
(a TypeError and a ValueError); each command must skip them, say how many
it skipped and how to rebuild, and carry on with the good records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.archive import Archive
from archiver.index import IndexWriter, folder_record, message_key, msg_record
from archiver.state import IndexState
from tests.helpers import run_cli

GOOD = b"Subject: hello\r\n\r\nbody\r\n"


def _archive(tmp_path: Path, bad: list[dict[str, Any]]) -> Path:
    import hashlib

    dest = tmp_path / "a"
    Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "h", "user": "u"}
                           ).close()
    cur = dest / "INBOX" / "cur"
    cur.mkdir(parents=True)
    (dest / "INBOX" / "new").mkdir()
    (cur / "7.1.archiver:2,S").write_bytes(GOOD)
    writer = IndexWriter(dest / ".archiver" / "index.jsonl.zst", 0)
    writer.append([folder_record("INBOX", "INBOX", "INBOX", "/", []),
                   msg_record("INBOX", message_key(7, 1), path="INBOX/cur/7.1.archiver:2,S",
                              size=len(GOOD), sha256=hashlib.sha256(GOOD).hexdigest(),
                              internaldate=None, flags=["\\Seen"], keywords=[],
                              subject="hello"),
                   *bad])
    writer.close()
    return dest


NONSENSE = [
    {"v": 1, "type": "folder", "folder": "Other", "dir": "Other", "attributes": 1},
    {"v": 1, "type": "msg", "folder": "INBOX", "uidvalidity": 7, "uid": 2, "size": "abc",
     "path": "INBOX/cur/x"},
    {"v": 1, "type": "msg", "folder": "INBOX", "uidvalidity": float("inf"), "uid": 3},
    {"v": 1, "type": "flags", "folder": "INBOX", "uidvalidity": 7, "uid": 1, "flags": 5},
]


@pytest.mark.parametrize("command", [["ls"], ["ls", "INBOX"], ["verify"], ["search", "hello"],
                                     ["export", "OUT", "--to", "eml"]])
def test_commands_skip_nonsense_records_and_say_how_to_rebuild(
        tmp_path: Path, command: list[str]) -> None:
    dest = _archive(tmp_path, NONSENSE)
    args = [command[0], str(dest), *[str(tmp_path / "out") if c == "OUT" else c
                                      for c in command[1:]]]
    code, out, err = run_cli(args)
    text = out + err
    assert "Traceback" not in text and "internal error" not in text, text
    assert "4 unreadable index records skipped" in text, text
    assert f"archiver reindex {dest} --force" in text
    if command[0] == "verify":
        assert code == 1  # an index with nonsense is a problem verify reports
    else:
        assert code == 0, text
    if command[0] in ("ls", "search"):
        assert "hello" in out or "INBOX" in out


def test_the_fold_keeps_the_good_records_and_counts_the_bad(tmp_path: Path) -> None:
    dest = _archive(tmp_path, NONSENSE)
    state, res = IndexState.read(dest / ".archiver" / "index.jsonl.zst")
    assert state.skipped == 4 and not res.torn
    inbox = state.folders["INBOX"]
    assert list(inbox.messages) == [(7, 1)]
    assert inbox.messages[(7, 1)].flags == ("\\Seen",)  # the bad flags record changed nothing
    assert "Other" not in state.folders


def test_a_sound_index_says_nothing(tmp_path: Path) -> None:
    dest = _archive(tmp_path, [])
    code, out, err = run_cli(["ls", str(dest)])
    assert code == 0 and "skipped" not in err
    code, out, _ = run_cli(["verify", str(dest), "--json"])
    assert code == 0 and json.loads(out)["ok"]
