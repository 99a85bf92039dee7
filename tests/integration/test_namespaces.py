"""Courier's INBOX.Inbox and Cyrus's other users' / shared folders (issue 11), on tests/fakeimap.py.

Courier and Cyrus are not in the suite's real servers; their NAMESPACE and
LIST answers are scripted here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from tests.fakeimap import FakeImap, Mailbox
from tests.helpers import archived_files, index_records, run_cli


def _msg(tag: str) -> bytes:
    return b"Subject: %s\r\nMessage-ID: <%s@x>\r\n\r\nbody of %s\r\n" % (
        (tag.encode(),) * 3)


class Courier(FakeImap):
    separator = b"."
    namespace = b'(("INBOX." ".")) NIL NIL'


class Cyrus(FakeImap):
    separator = b"."
    namespace = (b'(("INBOX." ".")) (("Other Users." ".")) (("Shared Folders." "."))')
    noselect = frozenset({b"Other Users", b"Shared Folders"})


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.01,
                                          max_reconnects=1))


def backup(server: FakeImap, dest: Path, *extra: str) -> tuple[int, Any, str]:
    pw = dest.parent / "pw"
    pw.write_text("secret\n")
    code, out, err = run_cli(["backup", f"imap://u@127.0.0.1:{server.port}", str(dest),
                              "--plaintext", "--password-file", str(pw), "--timeout", "5",
                              "--json", *extra])
    assert "Traceback" not in err, err
    return code, json.loads(out) if out.strip() else None, err


def archived_by_folder(dest: Path) -> dict[str, set[bytes]]:
    """Logical folder -> the bodies its msg records point at."""
    files = archived_files(dest)
    out: dict[str, set[bytes]] = {}
    for rec in index_records(dest):
        if rec["type"] == "msg":
            out.setdefault(rec["folder"], set()).add(files[rec["path"]])
    return out


def folder_records(dest: Path) -> dict[str, dict[str, Any]]:
    return {r["folder"]: r for r in index_records(dest) if r["type"] == "folder"}


COURIER_BOX: Mailbox = {
    b"INBOX": {1: _msg("inbox-1"), 2: _msg("inbox-2")},
    b"INBOX.Inbox": {1: _msg("child-1")},
    b"INBOX.Inbox.Sub": {1: _msg("sub-1"), 5: _msg("sub-5")},
    b"INBOX.Sent": {3: _msg("sent-3")},
}


def test_courier_child_named_inbox_is_archived_as_its_own_folder(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Courier(COURIER_BOX) as server:
        code, summary, err = backup(server, dest)
        assert code == 0, err
        assert summary["problems"] == []
        again, summary2, err2 = backup(server, dest)  # a rerun fetches nothing again
    assert again == 0, err2
    assert summary2["new"] == 0
    assert archived_by_folder(dest) == {
        "INBOX": {_msg("inbox-1"), _msg("inbox-2")},
        "INBOX/Inbox": {_msg("child-1")},
        "INBOX/Inbox/Sub": {_msg("sub-1"), _msg("sub-5")},
        "Sent": {_msg("sent-3")},
    }
    records = folder_records(dest)
    assert records["INBOX/Inbox"]["server_name"] == "INBOX.Inbox"
    assert records["INBOX"]["server_name"] == "INBOX"
    assert len({r["dir"] for r in records.values()}) == 4


def test_excluding_the_child_named_inbox_keeps_the_real_inbox(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Courier(COURIER_BOX) as server:
        code, _, err = backup(server, dest, "--exclude", "INBOX/Inbox")
    assert code == 0, err
    assert sorted(archived_by_folder(dest)) == ["INBOX", "Sent"]


class Colliding(FakeImap):
    """Two server folders that name one logical folder: INBOX.Work and Work (no prefix for
    the second: a server listing a name outside its own personal namespace)."""

    separator = b"."
    namespace = b'(("INBOX." ".")) NIL NIL'


def test_two_server_folders_with_one_logical_name_are_a_problem_not_a_merge(
        tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    box: Mailbox = {b"INBOX": {1: _msg("i")}, b"INBOX.Work": {1: _msg("w-prefixed")},
                    b"Work": {1: _msg("w-bare")}}
    with Colliding(box) as server:
        code, summary, err = backup(server, dest)
    assert code == 3, err
    assert len(summary["problems"]) == 1
    problem = summary["problems"][0]
    assert "folder 'Work' and 'INBOX.Work' have the same name in the archive" in problem
    assert "problem: folder 'Work'" in err
    assert archived_by_folder(dest) == {"INBOX": {_msg("i")}, "Work": {_msg("w-prefixed")}}


CYRUS_BOX: Mailbox = {
    b"INBOX": {1: _msg("mine-1")},
    b"INBOX.Sent": {1: _msg("mine-sent")},
    b"Other Users": {},
    b"Other Users.dora": {1: _msg("dora-inbox")},
    b"Other Users.dora.Sent": {2: _msg("dora-sent")},
    b"Shared Folders": {},
    b"Shared Folders.news": {4: _msg("news-4")},
}


def test_cyrus_other_users_and_shared_folders_are_left_out_by_default(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Cyrus(CYRUS_BOX) as server:
        code, summary, err = backup(server, dest)
        examined = [c for c in server.commands if b"EXAMINE" in c.upper()]
    assert code == 0, err
    assert archived_by_folder(dest) == {"INBOX": {_msg("mine-1")}, "Sent": {_msg("mine-sent")}}
    assert summary["notes"] == ["3 folders in other users' or shared namespaces were not "
                                "archived: use --all-namespaces to include them"]
    assert not any(b"Other Users" in c or b"Shared" in c for c in examined), examined


def test_all_namespaces_archives_them_under_marked_names(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Cyrus(CYRUS_BOX) as server:
        code, summary, err = backup(server, dest, "--all-namespaces")
    assert code == 0, err
    assert summary["notes"] == []
    assert archived_by_folder(dest) == {
        "INBOX": {_msg("mine-1")}, "Sent": {_msg("mine-sent")},
        "#other/dora": {_msg("dora-inbox")}, "#other/dora/Sent": {_msg("dora-sent")},
        "#shared/news": {_msg("news-4")},
    }
    records = folder_records(dest)
    assert records["#other/dora/Sent"]["namespace"] == "other"
    assert records["#other/dora/Sent"]["server_name"] == "Other Users.dora.Sent"
    assert records["#shared/news"]["namespace"] == "shared"
    assert records["#other"]["namespace"] == "other"
    assert "namespace" not in records["Sent"] and "namespace" not in records["INBOX"]


def test_without_namespace_capability_everything_is_personal(tmp_path: Path) -> None:
    class Plain(FakeImap):
        separator = b"."

    dest = tmp_path / "dest"
    box: Mailbox = {b"INBOX": {1: _msg("i")}, b"Other Users.dora": {1: _msg("d")}}
    with Plain(box) as server:
        code, summary, err = backup(server, dest)
    assert code == 0, err
    assert summary["notes"] == []
    assert archived_by_folder(dest) == {"INBOX": {_msg("i")}, "Other Users/dora": {_msg("d")}}


def test_a_rebuilt_index_keeps_other_namespaces_marked(tmp_path: Path) -> None:
    from archiver.archive import Archive

    dest = tmp_path / "dest"
    with Cyrus(CYRUS_BOX) as server:
        code, _, err = backup(server, dest, "--all-namespaces")
    assert code == 0, err
    assert (dest / ".archiver" / "snapshot.json.zst").exists()
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    code, _, err = run_cli(["reindex", str(dest)])
    assert code == 0, err
    folders = Archive.open_existing(dest).state().folders
    assert folders["#other/dora/Sent"].namespace == "other"
    assert folders["#shared/news"].namespace == "shared"
    assert folders["Sent"].namespace == "personal"


def test_an_old_folder_record_reads_as_personal_and_unknown_fields_are_ignored() -> None:
    from archiver.state import IndexState

    state = IndexState()
    state.fold({"v": 1, "type": "folder", "folder": "Sent", "dir": "Sent",
                "server_name": "INBOX.Sent", "separator": ".", "attributes": []})
    state.fold({"v": 1, "type": "folder", "folder": "#other/d", "dir": "%23other/d",
                "server_name": "Other Users.d", "separator": ".", "attributes": [],
                "namespace": "other", "from_the_future": {"x": 1}})
    assert state.folders["Sent"].namespace == "personal"
    assert state.folders["#other/d"].namespace == "other"
    assert state.skipped == 0
