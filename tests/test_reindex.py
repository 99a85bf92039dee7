"""`archiver reindex`: rebuild the index from the Maildir files (and the snapshot)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.index import IndexState, read_index
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli

MSG_FIELDS = ("folder", "uidvalidity", "uid", "sha256", "size", "flags", "path")


@dataclass
class Backed:
    dest: Path
    user: MailUser


@pytest.fixture(scope="module")
def backed(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Backed:
    """The nasty corpus backed up, then a keyword change and an expunge backed up too."""
    user = dovecot.new_user("reindex")
    messages = corpus.nasty_messages()
    uids = corpus.load(dovecot, user, messages, corpus.folder_names())
    dest = tmp_path_factory.mktemp("reindex") / "archive"
    assert backup(dovecot, user, dest)[0] == 0
    inbox = [u for m, u in zip(messages, uids) if m.folder == corpus.INBOX]
    dovecot.set_flags(user, corpus.INBOX, inbox[0], ["\\Seen", "$label3", "$Forwarded"])
    dovecot.expunge(user, corpus.INBOX, inbox[1])
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    return Backed(dest, user)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)  # copy2: mtimes (INTERNALDATEs) kept
    return dst


def _state(dest: Path) -> IndexState:
    return Archive.open_existing(dest).state()


def _msgs(state: IndexState) -> dict[tuple[str, int, int], dict[str, object]]:
    out = {}
    for m in state.messages():
        out[(m.folder, m.uidvalidity, m.uid)] = {
            "folder": m.folder, "uidvalidity": m.uidvalidity, "uid": m.uid, "sha256": m.sha256,
            "size": m.size, "flags": sorted(m.flags), "path": m.path,
            "keywords": sorted(m.keywords), "gone": m.gone, "uidl": m.uidl}
    return out


def _pick(d: dict[tuple[str, int, int], dict[str, object]], fields: tuple[str, ...]
          ) -> dict[tuple[str, int, int], tuple[object, ...]]:
    return {k: tuple(v[f] for f in fields) for k, v in d.items()}


def test_reindex_without_snapshot_recovers_the_msg_records(backed: Backed,
                                                            tmp_path: Path) -> None:
    dest = _copy(backed.dest, tmp_path / "a")
    before = _msgs(_state(dest))
    assert any(v["gone"] for v in before.values())
    assert (dest / ".archiver" / "snapshot.json.zst").is_file()  # every backup refreshes it
    (dest / ".archiver" / "snapshot.json.zst").unlink()
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    code, _out, err = run_cli(["reindex", str(dest)])
    assert code == 0, err
    assert "no snapshot" in err
    after = _msgs(_state(dest))
    assert _pick(after, MSG_FIELDS) == _pick(before, MSG_FIELDS)
    # keywords: only $Forwarded (the P letter) survives without the index
    for key, v in before.items():
        kept = [k for k in v["keywords"] if k == "$Forwarded"]  # type: ignore[attr-defined]
        assert after[key]["keywords"] == kept, key
    assert not any(v["gone"] for v in after.values())
    recs = {(r["folder"], r["uid"]): r for r in read_index(dest / ".archiver/index.jsonl.zst")
            .records if r["type"] == "msg"}
    iso = recs[(corpus.INBOX, min(u for f, _uv, u in before if f == corpus.INBOX))]
    assert iso["subject"] == "講義資料について" and iso["internaldate"].startswith("1999-")
    assert run_cli(["verify", str(dest)])[0] == 0
    assert not (dest / ".archiver" / "folders.json").exists()  # next backup re-lists all


def test_backup_after_reindex_fetches_nothing_and_restores_keywords(
        dovecot: DovecotServer, backed: Backed, tmp_path: Path) -> None:
    dest = _copy(backed.dest, tmp_path / "a")
    before = _msgs(_state(dest))
    (dest / ".archiver" / "snapshot.json.zst").unlink()  # the re-list path, without one
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    assert run_cli(["reindex", str(dest)])[0] == 0
    code, out, err = backup(dovecot, backed.user, dest, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["new"] == 0 and summary["flags_updated"] >= 1 and summary["gone"] == 1
    after = _msgs(_state(dest))
    assert _pick(after, (*MSG_FIELDS, "keywords", "gone")) == _pick(
        before, (*MSG_FIELDS, "keywords", "gone"))


def test_reindex_with_snapshot_recovers_keywords_and_gone(backed: Backed,
                                                          tmp_path: Path) -> None:
    dest = _copy(backed.dest, tmp_path / "a")
    before = _msgs(_state(dest))
    code, _out, err = run_cli(["reindex", str(dest), "--snapshot"])
    assert code == 0 and "snapshot written" in err, err
    assert (dest / ".archiver" / "snapshot.json.zst").exists()
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    code, _out, err = run_cli(["reindex", str(dest)])
    assert code == 0 and "snapshot of" in err, err
    after = _msgs(_state(dest))
    fields = (*MSG_FIELDS, "keywords", "gone")
    assert _pick(after, fields) == _pick(before, fields)
    folders = Archive.open_existing(dest).state().folders
    assert folders[corpus.DOT].separator == "/" and folders["INBOX"].server_name == "INBOX"


def test_damaged_index_is_moved_aside_never_deleted(backed: Backed, tmp_path: Path) -> None:
    dest = _copy(backed.dest, tmp_path / "a")
    index = dest / ".archiver" / "index.jsonl.zst"
    code, _out, err = run_cli(["reindex", str(dest)])
    assert code == 2 and "reads cleanly" in err and err.count("\n") == 1
    data = bytearray(index.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\0" * 64  # a corrupt frame mid-file
    index.write_bytes(bytes(data))
    code, _out, err = run_cli(["reindex", str(dest)])
    assert code == 0, err
    aside = list((dest / ".archiver").glob("index.jsonl.zst.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)
    assert run_cli(["verify", str(dest)])[0] == 0
    assert run_cli(["reindex", str(dest), "--force"])[0] == 0  # a sound one, kept too
    assert len(list((dest / ".archiver").glob("index.jsonl.zst.damaged-*"))) == 2


def test_reindex_refuses_other_formats(backed: Backed, tmp_path: Path) -> None:
    dest = _copy(backed.dest, tmp_path / "a")
    meta = dest / ".archiver" / "archive.json"
    meta.write_text(json.dumps(dict(json.loads(meta.read_text()), format="mbox")))
    code, _out, err = run_cli(["reindex", str(dest), "--force"])
    assert code == 2 and "supports only maildir" in err and err.count("\n") == 1


def test_reindex_pop3_sights(dovecot: DovecotServer, mail_user: MailUser,
                             tmp_path: Path) -> None:
    for i in range(3):
        dovecot.append(mail_user, "INBOX",
                       f"From: p{i}@example.org\r\nSubject: pop {i}\r\n"
                       f"Date: Mon, 0{i + 1} Mar 2004 10:00:00 +0900\r\n\r\nbody {i}\r\n"
                       .encode())
    dest = tmp_path / "pop"
    pw = password_file(mail_user, tmp_path / ".pw")
    args = ["backup", f"pop3s://{mail_user.name}@127.0.0.1:{dovecot.pop3s_port}", str(dest),
            "--cafile", str(dovecot.cafile), "--password-file", str(pw), "--timeout", "20"]
    assert run_cli(args)[0] == 0
    before = _msgs(_state(dest))
    assert len(before) == 3 and all(v["uidl"] for v in before.values())
    plain = _copy(dest, tmp_path / "plain")
    (plain / ".archiver" / "index.jsonl.zst").unlink()
    assert run_cli(["reindex", str(plain)])[0] == 0
    after = _msgs(_state(plain))
    assert _pick(after, MSG_FIELDS) == _pick(before, MSG_FIELDS)  # same keys, no UIDL
    code, out, err = run_cli([*args[:2], str(plain), *args[3:], "--json"])
    assert code == 0 and json.loads(out)["new"] == 0, err  # nothing fetched again
    assert run_cli(["reindex", str(dest), "--snapshot"])[0] == 0
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    assert run_cli(["reindex", str(dest)])[0] == 0
    assert _msgs(_state(dest)) == before
