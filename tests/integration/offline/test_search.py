"""`archiver search` and `archiver show` over a real backup and over synthetic indexes.

``offline_archive`` (module scope) backs up the nasty corpus plus a few more
Japanese messages once; test_export.py and test_reindex.py reuse its helpers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.index import IndexWriter
from archiver.offline.search import Query, search
from tests import corpus
from tests.dovecot import DovecotServer
from tests.helpers import REPO, build_archive, index_records, run_cli


@pytest.fixture(scope="module")
def archive_dir(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(dovecot, tmp_path_factory.mktemp("offline"))


def _search(dest: Path, *args: str) -> list[dict[str, object]]:
    code, out, err = run_cli(["search", str(dest), "--json", *args])
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _subjects(hits: list[dict[str, object]]) -> set[object]:
    return {h["subject"] for h in hits}


# ---------------------------------------------------------------- search


def test_search_finds_japanese_subject_and_width_variants(archive_dir: Path) -> None:
    assert _subjects(_search(archive_dir, "講義資料")) == {"講義資料について"}
    kana = "ｺｳｷﾞ ﾉ ｵｼﾗｾ ＡＢＣ１２３"
    for needle in ("コウギ", "ｺｳｷﾞ", "abc123", "ＡＢＣ", "おしらせ" and "オシラセ"):
        assert _subjects(_search(archive_dir, needle)) == {kana}, needle
    # from and to are searched too, case-insensitively; several words must all match
    assert _subjects(_search(archive_dir, "YAMADA@EXAMPLE")) == {"講義資料について"}
    assert _subjects(_search(archive_dir, "山田", "講義")) == {"講義資料について"}
    assert _search(archive_dir, "山田", "no-such-word") == []
    assert {h["subject"] for h in _search(archive_dir, "--from", "山田 太郎")} \
        == {"講義資料について"}
    assert _subjects(_search(archive_dir, "--subject", "ゼミ")) == {"ゼミ"}


def test_search_lines_carry_the_ids_ls_prints(archive_dir: Path) -> None:
    code, out, err = run_cli(["search", str(archive_dir), "講義資料"])
    assert code == 0, err
    assert out.count("\n") == 1 and "講義資料について" in out and "INBOX" in out
    short_id = out.split()[0]
    assert len(short_id) == 12
    code, ls_out, _ = run_cli(["ls", str(archive_dir), "INBOX"])
    assert any(line.split()[0] == short_id for line in ls_out.splitlines())


def test_search_date_filters_and_bad_dates(archive_dir: Path) -> None:
    day = _search(archive_dir, "--since", "1999-04-12", "--before", "1999-04-13")
    assert "講義資料について" in _subjects(day)
    assert all(str(h["date"]).startswith("1999-04-12") for h in day)
    assert "講義資料について" not in _subjects(_search(archive_dir, "--before", "1999-04-12"))
    assert "講義資料について" not in _subjects(_search(archive_dir, "--since", "1999-04-13"))
    every = _search(archive_dir)
    later = _search(archive_dir, "--since", "2004-05-01")
    assert _subjects(later) >= {"sjis base64", "html only"} and len(later) < len(every)
    for bad in ("2004-13-01", "yesterday", "2004/05/01"):
        code, out, err = run_cli(["search", str(archive_dir), "--since", bad])
        assert code == 2 and out == "" and err.count("\n") == 1 and "YYYY-MM-DD" in err, err


def test_search_body_decodes_japanese_charsets(archive_dir: Path) -> None:
    assert _search(archive_dir, "講義の資料を送ります") == []  # only in the body
    hits = _search(archive_dir, "--body", "講義の資料を送ります")  # ISO-2022-JP body
    assert _subjects(hits) == {"講義資料について"}
    assert _subjects(_search(archive_dir, "--body", "ソフトウェア表示の確認①")) \
        == {"sjis base64"}  # Shift_JIS (cp932) in base64
    assert _subjects(_search(archive_dir, "--body", "ダメ文字")) == {"ゼミ"}  # 8-bit Shift_JIS
    assert _subjects(_search(archive_dir, "--body", "htmlだけの&本文")) == {"html only"}
    assert _search(archive_dir, "--body", "hidden()") == []  # script text is not text
    assert _subjects(_search(archive_dir, "--body", "café déjà vu — a very long line")) \
        == {"Café déjà vu"}  # quoted-printable with a soft line break
    assert _subjects(_search(archive_dir, "--body", "添付です")) == {"sjis attachment name"}
    assert _subjects(_search(archive_dir, "--body", "unterminated")) == {"broken MIME"}
    assert _subjects(_search(archive_dir, "--body", "--folder", "Sent", "html")) \
        == {"html only"}
    code, _out, err = run_cli(["search", str(archive_dir), "--body"])
    assert code == 2 and err.count("\n") == 1


def test_search_folder_glob_includes_children(archive_dir: Path) -> None:
    folders = {h["folder"] for h in _search(archive_dir, "--folder", "Archive")}
    assert folders == {corpus.DEEP}
    folders = {h["folder"] for h in _search(archive_dir, "--folder", "研究室")}
    assert folders == {corpus.JA_LAB}


def test_search_not_an_archive(tmp_path: Path) -> None:
    code, _out, err = run_cli(["search", str(tmp_path), "x"])
    assert code == 6 and err.count("\n") == 1


# ---------------------------------------------------------------- show


def _id_of(dest: Path, message_id: str) -> str:
    for rec in index_records(dest):
        if rec["type"] == "msg" and rec.get("message_id") == message_id:
            return str(rec["sha256"])
    raise AssertionError(message_id)


def test_show_decodes_headers_text_and_attachments(archive_dir: Path) -> None:
    sha = _id_of(archive_dir, "<iso2022jp@example.jp>")
    code, out, err = run_cli(["show", str(archive_dir), sha[:8]])
    assert code == 0, err
    assert "From:     山田 太郎 <yamada@example.jp>" in out
    assert "Subject:  講義資料について" in out and "Folder:   INBOX  [Seen]" in out
    assert "来週の講義の資料を送ります。\nよろしくお願いします。" in out
    code, out, err = run_cli(["show", str(archive_dir), _id_of(archive_dir,
                                                               "<rfc2231@example.jp>")[:12]])
    assert code == 0, err
    assert "添付します。" in out and "ゼミ資料 2003.pdf  (application/pdf, 280 B)" in out
    code, out, err = run_cli(["show", str(archive_dir), _id_of(archive_dir,
                                                               "<sjis-att@example.jp>")])
    assert code == 0, err
    assert "資料①.xls  (application/vnd.ms-excel, 4 B)" in out and "添付です" in out
    code, out, err = run_cli(["show", str(archive_dir), _id_of(archive_dir,
                                                               "<html@example.jp>")[:6]])
    assert code == 0, err
    assert "ＨＴＭＬだけの&本文\n\n二行目" in out and "hidden" not in out and "<p>" not in out
    assert "Cc:       dave@example.jp" in out


def test_show_raw_is_byte_exact(archive_dir: Path) -> None:
    for rec in index_records(archive_dir):
        if rec["type"] != "msg" or rec.get("message_id") not in (
                "<iso2022jp@example.jp>", "<sjis-body@example.jp>", None):
            continue
        proc = subprocess.run([sys.executable, "-m", "archiver", "show", str(archive_dir),
                               rec["sha256"][:10], "--raw"], capture_output=True,
                              cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (archive_dir / rec["path"]).read_bytes()


def test_show_every_message_without_crashing(archive_dir: Path) -> None:
    for rec in index_records(archive_dir):
        if rec["type"] == "msg":
            code, out, err = run_cli(["show", str(archive_dir), rec["sha256"]])
            assert code == 0 and out.startswith("ID:"), (rec["path"], err)


def test_show_bad_ids_are_one_line_usage_errors(archive_dir: Path, tmp_path: Path) -> None:
    for bad in ("abc", "zzzzzzzz", "000000000000"):
        code, out, err = run_cli(["show", str(archive_dir), bad])
        assert code == 2 and out == "" and err.count("\n") == 1, (bad, err)
    dest = synthetic_archive(tmp_path / "syn", [
        msg_record("INBOX", 1, sha="abcdef01" + "0" * 56),
        msg_record("INBOX", 2, sha="abcdef02" + "0" * 56)])
    code, _out, err = run_cli(["show", str(dest), "abcdef"])
    assert code == 2 and "ambiguous" in err and err.count("\n") == 1
    code, _out, err = run_cli(["show", str(dest), "abcdef02"])
    assert code == 2 and "cannot be read" in err  # known ID, but its file is not there


# ---------------------------------------------------------------- synthetic indexes


def synthetic_archive(dest: Path, records: list[dict[str, object]]) -> Path:
    """An archive directory with only archive.json and an index of ``records``."""
    meta = dest / ".archiver"
    meta.mkdir(parents=True)
    (meta / "archive.json").write_text(json.dumps(
        {"v": 1, "format": "maildir", "source": {"protocol": "imap", "host": "h", "user": "u"},
         "created": "2026-01-01T00:00:00+00:00"}))
    folders = sorted({str(r["folder"]) for r in records})
    writer = IndexWriter(meta / "index.jsonl.zst", 0)
    writer.append([{"v": 1, "type": "folder", "folder": f, "dir": f, "server_name": f,
                    "separator": "/", "attributes": []} for f in folders])
    for i in range(0, len(records), 1000):
        writer.append(records[i:i + 1000])
    writer.close()
    return dest


def msg_record(folder: str, uid: int, *, sha: str | None = None, subject: str = "s",
               sender: str = "a@example.org", date: str = "2003-04-01T09:00:00+09:00"
               ) -> dict[str, object]:
    import hashlib

    sha = sha or hashlib.sha256(f"{folder}/{uid}".encode()).hexdigest()
    return {"v": 1, "type": "msg", "folder": folder, "uidvalidity": 1, "uid": uid,
            "path": f"{folder}/cur/1.{uid}.archiver:2,S", "size": 1000, "sha256": sha,
            "internaldate": date, "flags": ["\\Seen"], "keywords": [],
            "message_id": f"<{uid}@example.org>", "date": date, "from": sender,
            "to": "alice@example.jp", "subject": subject, "t": "2026-01-01T00:00:00+00:00"}


def test_search_20000_records_is_fast(tmp_path: Path) -> None:
    words = ["講義資料", "ゼミ", "ｶﾀｶﾅ", "Report", "会議のお知らせ", "Re: 研究室"]
    records = [msg_record(f"F{i % 40}", i, subject=f"{words[i % 6]} {i}",
                          sender=f"山田 {i % 97} <u{i % 97}@example.jp>",
                          date=f"{1999 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+09:00")
               for i in range(20000)]
    dest = synthetic_archive(tmp_path / "big", records)
    archive = Archive.open_existing(dest)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        hits = list(search(archive, Query(terms=["カタカナ"], since="2001-01-01")))
        best = min(best, time.perf_counter() - start)
    assert hits and all(h.text("subject").startswith("ｶﾀｶﾅ") for h in hits)
    print(f"search over 20,000 records: {best:.3f} s")
    assert best < 1.5  # ~0.2 s on the 2-core test machine; generous for slow CI


def test_a_missing_index_is_named_with_the_fix(tmp_path: Path) -> None:
    dest = synthetic_archive(tmp_path / "syn", [msg_record("INBOX", 1)])
    (dest / ".archiver" / "index.jsonl.zst").unlink()
    for args in (["search", str(dest), "x"], ["show", str(dest), "abcdef"],
                 ["export", str(dest), str(tmp_path / "out"), "--to", "eml"]):
        code, _out, err = run_cli(args)
        assert code == 2 and "archiver reindex" in err and err.count("\n") == 1, (args, err)
