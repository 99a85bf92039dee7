"""`archiver backup` against a real Dovecot: complete, exact, incremental, read-only."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from archiver.archive import Archive
from archiver.index import read_index
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import archived_files, backup, index_records, keyword_letters, run_cli

DOVECOT_INFO = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}


def _info(flags: set[str]) -> str:
    return "".join(sorted(DOVECOT_INFO[f] for f in flags if f in DOVECOT_INFO)
                   + (["P"] if "$Forwarded" in flags else []))


def test_full_backup_is_byte_exact_with_flags_dates_and_utf8_folders(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    user = loaded_user.user
    before = dovecot.fingerprint(user)
    served = dovecot.fetch_all(user)
    dest = tmp_path / "archive"
    code, out, err = backup(dovecot, user, dest, "--json")
    assert code == 0, err
    summary = json.loads(out)
    total = sum(len(v) for v in served.values())
    assert summary["status"] == "ok" and summary["new"] == total
    records = {(r["folder"], r["uid"]): r for r in index_records(dest) if r["type"] == "msg"}
    for folder, messages in served.items():
        assert (dest / Path(*folder.split("/")) / "cur").is_dir(), folder
        for uid, data, flags, idate in messages:
            rec = records[(folder, uid)]
            path = dest / rec["path"]
            assert path.read_bytes() == data, (folder, uid)
            assert path.name.endswith(":2," + "".join(sorted(_info(flags)))
                                      + keyword_letters(path.parent.parent, flags)), (
                path.name, flags)
            assert abs(path.stat().st_mtime - idate.timestamp()) < 1
            assert set(rec["keywords"]) == {f for f in flags if not f.startswith("\\")}
            assert datetime.fromisoformat(rec["internaldate"]) == idate
    assert dovecot.fingerprint(user) == before, "the backup changed the server"
    assert run_cli(["verify", str(dest)])[0] == 0


def test_files_are_private_and_japanese_headers_decoded(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    for path in [dest, *dest.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    subjects = {r.get("subject") for r in index_records(dest) if r["type"] == "msg"}
    assert any(s and any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in s)
               for s in subjects), subjects


def test_rerun_fetches_nothing_and_skips_unchanged_folders(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    files = archived_files(dest)
    size = (dest / ".archiver" / "index.jsonl.zst").stat().st_size
    code, out, _ = backup(dovecot, loaded_user.user, dest, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["new"] == 0
    assert summary["folders_skipped"] == summary["folders"] - 0
    assert archived_files(dest) == files
    assert (dest / ".archiver" / "index.jsonl.zst").stat().st_size == size


def test_new_mail_flag_changes_and_expunges_are_picked_up(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    uids = [dovecot.append(u, "INBOX", f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
            for i in range(3)]
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    dovecot.set_flags(u, "INBOX", uids[0], ["\\Seen", "\\Flagged", "$label1"])
    dovecot.expunge(u, "INBOX", uids[1])
    dovecot.append(u, "INBOX", b"Subject: new\r\n\r\nnew\r\n")
    code, out, err = backup(dovecot, u, dest, "--json")
    summary = json.loads(out)
    assert code == 0, err
    assert (summary["new"], summary["flags_updated"], summary["gone"]) == (1, 1, 1)
    names = sorted(p.name for p in (dest / "INBOX" / "cur").iterdir())
    assert len(names) == 4, names  # the expunged one is kept
    assert any(n.endswith(":2,FS" + keyword_letters(dest / "INBOX", {"$label1"}))
               for n in names)
    recs = index_records(dest)
    assert any(r["type"] == "flags" and r["keywords"] == ["$label1"] for r in recs)
    assert any(r["type"] == "gone" and r["uid"] == uids[1] for r in recs)
    assert run_cli(["verify", str(dest)])[0] == 0
    again = json.loads(backup(dovecot, u, dest, "--json")[1])
    assert (again["new"], again["flags_updated"], again["gone"]) == (0, 0, 0)


def test_uidvalidity_change_does_not_duplicate_and_keeps_real_duplicates(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    same = b"Subject: twin\r\n\r\nidentical\r\n"
    for data in (same, same, b"Subject: other\r\n\r\nx\r\n"):
        dovecot.append(u, "Lists", data)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    dovecot.bump_uidvalidity(u, "Lists")
    dovecot.append(u, "Lists", same)  # a third twin arrives with the new UIDVALIDITY
    code, out, err = backup(dovecot, u, dest, "--json")
    assert code == 0, err
    files = list((dest / "Lists" / "cur").iterdir())
    assert len(files) == 4, sorted(f.name for f in files)
    assert sorted(f.read_bytes() for f in files).count(same) == 3
    assert run_cli(["verify", str(dest)])[0] == 0
    st = Archive.open_existing(dest).state().folders["Lists"]
    assert len([m for m in st.messages.values() if not m.gone]) == 4


def test_hostile_folder_names_stay_inside_dest(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    names = ["..", "a/../b", "cur", ".hidden", "new/x", "Back\\slash", "100%", "star*"]
    for name in names:
        dovecot.append(u, name, f"Subject: {name}\r\n\r\nx\r\n".encode())
    dest = tmp_path / "deep" / "a"
    code, _, err = backup(dovecot, u, dest)
    assert code == 0, err
    real = os.path.realpath(dest)
    for p in (tmp_path / "deep").rglob("*"):
        if p != dest and p.name != ".pw" and p.parent.name != ".pw":
            assert os.path.realpath(p).startswith(real + os.sep), p
    folders = Archive.open_existing(dest).state().folders
    assert set(names) <= set(folders)
    dirs = [f.path for f in folders.values()]
    assert len(set(dirs)) == len(dirs)
    for d in dirs:
        assert all(part not in ("..", ".", "cur", "new", "tmp") for part in d.split("/")), d
        assert (dest / d / "cur").is_dir()


def test_folder_and_exclude_globs(dovecot: DovecotServer, mail_user: MailUser,
                                  tmp_path: Path) -> None:
    for folder in ("INBOX", "Archive/2003", "Archive/2004", "Trash"):
        dovecot.append(mail_user, folder, b"Subject: x\r\n\r\nx\r\n")
    dest = tmp_path / "a"
    code, _, err = backup(dovecot, mail_user, dest, "--folder", "Archive",
                          "--exclude", "Archive/2004")
    assert code == 0, err
    assert set(Archive.open_existing(dest).state().folders) == {"Archive", "Archive/2003"} or \
        set(Archive.open_existing(dest).state().folders) == {"Archive/2003"}


def test_zero_byte_and_malformed_messages_are_kept_exactly(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    dovecot.write_maildir_file(u, "INBOX", b"")
    odd = [b"no header at all", b"\r\n\r\nempty header block", b"A: b\rbare\rcr\r",
           b"From: x\r\n\r\nFrom the start\r\n>From quoted\r\n", b"X: " + b"y" * 1_000_000]
    for data in odd:
        dovecot.append(u, "INBOX", data)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    served = sorted(m[1] for m in dovecot.fetch_all(u)["INBOX"])
    stored = sorted(p.read_bytes() for p in (dest / "INBOX" / "cur").iterdir())
    assert stored == served and b"" in stored


def test_index_is_zstd_jsonl_with_the_documented_fields(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    dovecot.append(mail_user, "受信箱/講義", "Subject: 講義\r\n\r\n本文\r\n".encode(),
                   flags=["\\Seen"])
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    recs = read_index(dest / ".archiver" / "index.jsonl.zst").records
    msg = next(r for r in recs if r["type"] == "msg")
    for key in ("v", "type", "folder", "uidvalidity", "uid", "path", "size", "rfc822_size",
                "sha256", "internaldate", "flags", "keywords", "message_id", "date", "from",
                "to", "subject"):
        assert key in msg, key
    assert msg["rfc822_size"] == msg["size"]  # Dovecot reports what it serves
    assert msg["folder"] == "受信箱/講義" and msg["path"].startswith("受信箱/講義/cur/")
    assert msg["subject"] == "講義"
    assert datetime.fromisoformat(msg["internaldate"]).tzinfo is not None
    assert datetime.fromisoformat(msg["t"]) <= datetime.now(timezone.utc)


def test_noselect_parent_becomes_a_plain_directory(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    with dovecot.session(mail_user) as c:
        c.create_folder("講座/2004")  # Dovecot lists the parent "講座" as \Noselect
        c.append("講座/2004", b"Subject: x\r\n\r\nx\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    assert (dest / "講座").is_dir() and not (dest / "講座" / "cur").exists()
    assert len(list((dest / "講座" / "2004" / "cur").iterdir())) == 1
    assert run_cli(["verify", str(dest)])[0] == 0


def test_ls_lists_folders_and_decoded_japanese_messages(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    import base64

    encoded = base64.b64encode("ゼミの資料".encode("iso2022_jp")).decode()
    subject = f"=?ISO-2022-JP?B?{encoded}?="
    dovecot.append(mail_user, "研究室/ゼミ 資料",
                   f"From: =?UTF-8?B?{base64.b64encode('山田'.encode()).decode()}?= <y@x.jp>\r\n"
                   f"Subject: {subject}\r\nDate: Tue, 2 Mar 2004 10:00:00 +0900\r\n\r\n本文\r\n"
                   .encode())
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    code, out, _ = run_cli(["ls", str(dest)])
    assert code == 0 and "研究室/ゼミ 資料" in out
    code, out, _ = run_cli(["ls", str(dest), "研究室/ゼミ 資料"])
    assert code == 0 and "ゼミの資料" in out and "山田" in out and "2004-03-02" in out
    code, out, err = run_cli(["ls", str(dest), "No such"])
    assert code == 2 and "no folder" in err
    code, out, _ = run_cli(["ls", str(dest), "--json"])
    assert any(json.loads(line)["name"] == "研究室/ゼミ 資料" for line in out.splitlines())
