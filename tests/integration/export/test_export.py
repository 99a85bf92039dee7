"""`archiver export`: Thunderbird Local Folders, mboxrd, Maildir and .eml from a real backup."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.export.common import safe_name
from archiver.export.framing import mbox_entry
from archiver.offline.catalog import Item, catalog
from archiver.stores.mboxrd import quote as mboxrd_quote
from archiver.stores.mboxrd import unquote as mboxrd_unquote
from tests import corpus
from tests.dovecot import DovecotServer
from tests.helpers import archived_files, build_archive, run_cli

STATUS = {"\\Seen": 0x1, "\\Answered": 0x2, "\\Flagged": 0x4}


@pytest.fixture(scope="module")
def archive_dir(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(dovecot, tmp_path_factory.mktemp("export"))


def _export(dest: Path, out: Path, kind: str) -> None:
    before = archived_files(dest), sorted(p.name for p in (dest / ".archiver").iterdir())
    index = (dest / ".archiver" / "index.jsonl.zst").read_bytes()
    code, _out, err = run_cli(["export", str(dest), str(out), "--to", kind])
    assert code == 0, err
    assert "exported" in err
    after = archived_files(dest), sorted(p.name for p in (dest / ".archiver").iterdir())
    assert after == before and (dest / ".archiver/index.jsonl.zst").read_bytes() == index


def _by_folder(dest: Path) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for item in catalog(Archive.open_existing(dest)):
        out.setdefault(item.folder, []).append(item)
    for items in out.values():
        items.sort(key=lambda i: (i.entry.uidvalidity, i.entry.uid))
    return out


def _tb_path(out: Path, folder: str) -> Path:
    parts = folder.split("/")
    return out.joinpath(*[p + ".sbd" for p in parts[:-1]], parts[-1])


def _strip_mozilla(data: bytes) -> tuple[list[bytes], bytes]:
    lines = []
    for _ in range(3):
        line, _sep, data = data.partition(b"\n")
        lines.append(line.rstrip(b"\r"))
    return lines, data


def _same(got: bytes, original: bytes) -> bool:
    """Equal up to the final line end mbox adds to a message that lacks one (and the
    second empty line the mbox form writes after CRLF mail, see export.mbox_entry)."""
    return got.rstrip(b"\r\n") == original.rstrip(b"\r\n") and len(got) - len(original) <= 3


def test_thunderbird_tree_read_back_message_by_message(archive_dir: Path,
                                                       tmp_path: Path) -> None:
    top = tmp_path / "tb"
    _export(archive_dir, top, "thunderbird")
    user = Archive.open_existing(archive_dir).meta["source"]["user"]
    wrapper = top / f"old-mail ({user})"
    assert sorted(p.name for p in top.iterdir()) == [wrapper.name, wrapper.name + ".sbd"]
    assert wrapper.is_file() and wrapper.stat().st_size == 0
    out = top / (wrapper.name + ".sbd")
    folders = _by_folder(archive_dir)
    state = Archive.open_existing(archive_dir).state()
    for name in state.folders:
        assert _tb_path(out, name).is_file(), name
        if "/" in name:
            parent = name.rsplit("/", 1)[0]
            assert _tb_path(out, parent).is_file() and _tb_path(out, parent + ".sbd").is_dir()
    assert (out / "Archive.sbd" / "2003.sbd" / "Lectures.sbd" / "Spring Term").is_file()
    assert (out / "受信箱.sbd" / "講義").is_file() and (out / "Empty").stat().st_size == 0
    assert not list(out.rglob("*.msf"))
    checked = 0
    for name, items in folders.items():
        box = mailbox.mbox(_tb_path(out, name), create=False)
        keys = list(box.keys())
        assert len(keys) == len(items), name
        for key, item in zip(keys, items):
            original = (archive_dir / item.entry.path).read_bytes()
            moz, rest = _strip_mozilla(box.get_bytes(key))
            status = int(moz[0].split(b": ")[1], 16)
            want = sum(v for f, v in STATUS.items() if f in item.entry.flags)
            want |= 0x1000 if "$Forwarded" in item.entry.keywords else 0
            assert moz[0].startswith(b"X-Mozilla-Status: ") and status == want, item.entry
            assert moz[1] == b"X-Mozilla-Status2: 00000000"
            keys_line = moz[2].decode()
            assert keys_line.startswith("X-Mozilla-Keys: ") and len(keys_line) >= 16 + 80
            assert keys_line.split()[1:] == [k for k in item.entry.keywords
                                              if k != "$Forwarded"]
            assert _same(mboxrd_unquote(rest), original), (name, item.entry.path)
            msg = box.get_message(key)
            assert msg.get("Message-ID") == item.rec.get("message_id") or not item.rec.get(
                "message_id"), item.entry.path
            assert box.get_message(key).get_from().startswith("- ")
            checked += 1
    assert checked == len(catalog(Archive.open_existing(archive_dir)))
    deep = _tb_path(out, corpus.DEEP).read_bytes()
    assert b"\n>From the start of a line\r\n>>From an escaped one\r\n>>>From double\r\n" \
        b">From \r\n" in deep
    first = datetime.fromisoformat(folders["INBOX"][0].rec["internaldate"])
    assert first == datetime.fromisoformat("1999-03-15T01:07:01+09:00")  # corpus._date(1)
    assert _tb_path(out, "INBOX").read_bytes().startswith(b"From - Sun Mar 14 16:07:01 1999\n")


def test_mbox_form_from_lines_and_mailutils_count(archive_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mbox"
    _export(archive_dir, out, "mbox")
    folders = _by_folder(archive_dir)
    for name, items in folders.items():
        path = _tb_path(out, name)
        box = mailbox.mbox(path, create=False)
        assert len(box) == len(items), name
        for key, item in zip(box.keys(), items):
            original = (archive_dir / item.entry.path).read_bytes()
            assert _same(mboxrd_unquote(box.get_bytes(key)), original), item.entry.path
            when = datetime.fromisoformat(item.rec["internaldate"]).astimezone(timezone.utc)
            sender = "bounce@example.org" if b"Return-Path: <bounce" in original \
                else "MAILER-DAEMON"
            assert box.get_message(key).get_from() == \
                f"{sender} {when.strftime('%a %b %e %H:%M:%S %Y')}"
        if shutil.which("messages"):
            proc = subprocess.run(["messages", "-q", str(path)], capture_output=True,
                                  text=True, check=False)
            assert proc.stdout.strip() == str(len(items)), (name, proc.stdout, proc.stderr)
        if shutil.which("frm") and items:
            proc = subprocess.run(["frm", str(path)], capture_output=True, check=False)
            assert proc.stdout.count(b"\n") == len(items), (name, proc.stdout)


def test_mboxrd_quoting_round_trips() -> None:
    body = (b"From: a@example.org\nSubject: q\n\nFrom here\n>From there\n>>From far\n"
            b"From\nFromage\n >From indented\n")
    quoted = mboxrd_quote(body)
    assert b"\n>From here\n>>From there\n>>>From far\nFrom\nFromage\n >From indented\n" in quoted
    assert mboxrd_unquote(quoted) == body
    entry = mbox_entry("From - Thu Jan  1 00:00:00 1970", b"From x\r\nno newline")
    assert entry == b"From - Thu Jan  1 00:00:00 1970\n>From x\r\nno newline\r\n\n"
    path_ok = mbox_entry("From - x", b"", ["X-A: 1"])
    assert path_ok == b"From - x\nX-A: 1\n\n"


def test_maildir_form_is_byte_exact_with_flags(archive_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "md"
    _export(archive_dir, out, "maildir")
    assert archived_files(out) == archived_files(archive_dir)
    for item in catalog(Archive.open_existing(archive_dir)):
        a, b = archive_dir / item.entry.path, out / item.entry.path
        assert abs(a.stat().st_mtime - b.stat().st_mtime) < 1
    assert (out / "Empty" / "cur").is_dir()
    # the keyword letters come with their dovecot-keywords (same first-use order here)
    kw = sorted(p.relative_to(archive_dir) for p in archive_dir.rglob("dovecot-keywords"))
    assert kw and kw == sorted(p.relative_to(out) for p in out.rglob("dovecot-keywords"))
    assert all((out / p).read_bytes() == (archive_dir / p).read_bytes() for p in kw)
    inbox = mailbox.Maildir(out / "INBOX", create=False)
    assert len(inbox) == len(list((archive_dir / "INBOX" / "cur").iterdir()))


_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def test_eml_names_are_safe_and_files_exact(archive_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eml"
    _export(archive_dir, out, "eml")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == len(catalog(Archive.open_existing(archive_dir)))
    seen: set[str] = set()
    for p in files:
        for part in p.relative_to(out).parts:
            assert not _UNSAFE.search(part) and part[-1] not in ". " and len(part) <= 150, part
            assert len(part.encode()) <= 255
        assert p.name.endswith(".eml") and re.match(r"\d{4}-\d\d-\d\d \d{4} ", p.name), p
        folded = str(p.relative_to(out)).casefold()
        assert folded not in seen
        seen.add(folded)
    dup = sorted(p.name for p in (out / "[Work] Reports (2002)").iterdir()
                 if "exact duplicate" in p.name)
    assert len(dup) == 2 and dup[0] == dup[1].replace(".eml", " (2).eml"), dup
    by_bytes = {p.read_bytes(): p for p in files}
    for item in catalog(Archive.open_existing(archive_dir)):
        data = (archive_dir / item.entry.path).read_bytes()
        assert data in by_bytes
        when = datetime.fromisoformat(item.rec["internaldate"])
        assert abs(by_bytes[data].stat().st_mtime - when.timestamp()) < 1
    jp = [p.name for p in (out / "INBOX").iterdir() if "講義資料について" in p.name]
    stamp = datetime.fromisoformat("1999-03-15T01:07:01+09:00").astimezone()  # local time
    assert jp == [f"{stamp:%Y-%m-%d %H%M} 講義資料について.eml"]


def test_safe_name_rules() -> None:
    assert safe_name('a<b>c:d"e/f\\g|h?i*j') == "a_b_c_d_e_f_g_h_i_j"
    assert safe_name("受信箱 ゼミ") == "受信箱 ゼミ"
    assert safe_name("trailing. ") == "trailing__" and safe_name(".hidden") == "_hidden"
    assert safe_name("CON") == "CON_" and safe_name("com1.txt") == "com1_.txt"
    assert safe_name("Nul .tar.gz") == "Nul _.tar.gz" and safe_name("CONSOLE") == "CONSOLE"
    assert safe_name("tab\there\x7f") == "tab_here_" and safe_name("") == "_"
    long = safe_name("あ" * 300)
    assert len(long) <= 100 and len(long.encode()) <= 200


def test_export_refuses_a_non_empty_out_or_one_inside_the_archive(archive_dir: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _out, err = run_cli(["export", str(archive_dir), str(out), "--to", "eml"])
    assert code == 6 and "not empty" in err and err.count("\n") == 1
    assert os.listdir(out) == ["keep.txt"]
    code, _out, err = run_cli(["export", str(archive_dir), str(archive_dir / "x"),
                               "--to", "mbox"])
    assert code == 6 and "inside the archive" in err and not (archive_dir / "x").exists()
    code, _out, err = run_cli(["export", str(archive_dir), str(tmp_path / "n"), "--to", "pdf"])
    assert code == 2
