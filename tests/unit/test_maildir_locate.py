"""A Maildir message is found by its base name when the index names an older file name.

A flag change renames the file (directory fsynced) before its ``flags``
record is written; a crash between the two leaves the file under a newer
name than the index says (docs/FORMAT.md, "Message files").  Readers must
still find it, and verify must not call it missing (nor extra).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from archiver.archive import Archive
from archiver.index import IndexWriter, folder_record, message_key, msg_record
from archiver.stores.maildir import MaildirStore
from tests.helpers import run_cli

BODY = b"Subject: renamed\r\n\r\nbody\r\n"


def _archive(tmp_path: Path) -> Path:
    dest = tmp_path / "a"
    Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "h", "user": "u"}
                           ).close()
    for sub in ("cur", "new", "tmp"):
        (dest / "INBOX" / sub).mkdir(parents=True)
    (dest / "INBOX" / "cur" / "5.1.archiver:2,").write_bytes(BODY)
    writer = IndexWriter(dest / ".archiver" / "index.jsonl.zst", 0)
    writer.append([folder_record("INBOX", "INBOX", "INBOX", "/", []),
                   msg_record("INBOX", message_key(5, 1), path="INBOX/cur/5.1.archiver:2,",
                              size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest(),
                              internaldate=None, flags=[], keywords=[], subject="renamed")])
    writer.close()
    # the crash: renamed for \Seen \Flagged, the flags record never written
    cur = dest / "INBOX" / "cur"
    os.replace(cur / "5.1.archiver:2,", cur / "5.1.archiver:2,FS")
    return dest


def test_readers_find_the_file_by_its_base_name(tmp_path: Path) -> None:
    dest = _archive(tmp_path)
    entry = Archive.open_existing(dest).state().folders["INBOX"].messages[(5, 1)]
    store = MaildirStore(dest)
    assert store.locate(entry).name == "5.1.archiver:2,FS"
    assert store.read_message(entry) == BODY
    assert b"".join(store.message_chunks(entry, 7)) == BODY
    store.check_message(entry)


def test_verify_show_and_export_accept_the_newer_name(tmp_path: Path) -> None:
    dest = _archive(tmp_path)
    code, out, _ = run_cli(["verify", str(dest), "--json"])
    report = json.loads(out)
    assert code == 0 and report["missing"] == [] and report["extra"] == [], report
    item_id = hashlib.sha256(BODY).hexdigest()[:12]
    code, out, err = run_cli(["show", str(dest), item_id])
    assert code == 0 and "renamed" in out, err
    code, _, err = run_cli(["export", str(dest), str(tmp_path / "out"), "--to", "eml"])
    assert code == 0, err
    assert [p.read_bytes() for p in (tmp_path / "out").rglob("*.eml")] == [BODY]
