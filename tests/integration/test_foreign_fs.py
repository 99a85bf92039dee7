"""Archives on real foreign file systems: an exFAT stick and NTFS with Win32 names.

Each image (tests/foreignfs.py) gets the whole chain with the nasty corpus
and hostile folder names: backup -> rerun (a no-op) -> verify -> export (every
form) -> restore to a second Dovecot, compared byte for byte.  Both file
systems refuse ``:``, so the archive must have probed that and named its
files ``…;2,<info>``; Windows' device names, ``a:b``, ``?``/``*``, trailing
dots and spaces, case twins, very long names and deep nesting must all land.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.foreignfs import ForeignFS
from tests.helpers import archived_files, backup, password_file, run_cli
from tests.winpaths import win32_name_problem

LONG_JA = "長い名前" * 20  # 240 UTF-8 bytes: cut by the component rule
LONG_ASCII = "L" * 200  # fits a component, not the path budget
DEEP = "/".join(f"deep{i:02d}" + "x" * 14 for i in range(10))  # 209 characters of path
HOSTILE = ["講義資料", "Work", "work", "CON", "nul.txt", "Com1.log", "a:b", "trail.",
           "space ", "what?", "star*", 'pipe|quote"lt<', LONG_JA, LONG_ASCII, DEEP]


def _load(server: DovecotServer, user: MailUser) -> None:
    # the zero-byte corpus message cannot be restored by APPEND (test_restore covers it)
    messages = [m for m in corpus.nasty_messages() if m.data]
    corpus.load(server, user, messages, corpus.folder_names())
    with server.session(user) as c:
        for i, folder in enumerate(HOSTILE):
            body = (f"Subject: in {folder}\r\nMessage-ID: <h{i}@t>\r\n\r\n"
                    f"hostile folder {i}\r\n").encode()
            server.append(user, folder, body, ("\\Seen", "\\Flagged") if i % 2 else (),
                          corpus._date(i), client=c)


def _contents(server: DovecotServer, user: MailUser
              ) -> dict[str, Counter[tuple[bytes, frozenset[str], float]]]:
    return {folder: Counter((data, frozenset(flags), when.timestamp())
                            for _, data, flags, when in msgs)
            for folder, msgs in server.fetch_all(user).items()}


def _snapshot(dest: Path) -> tuple[list[str], bytes]:
    return sorted(archived_files(dest)), (dest / ".archiver" / "index.jsonl.zst").read_bytes()


def test_backup_rerun_verify_export_restore_on_a_foreign_file_system(
        foreign_fs: ForeignFS, dovecot: DovecotServer, dovecot_new: DovecotServer,
        tmp_path: Path) -> None:
    old = dovecot.new_user("foreign")
    _load(dovecot, old)
    dest = foreign_fs.mountpoint / "archive"

    code, _out, err = backup(dovecot, old, dest)
    assert code == 0, err
    assert "Traceback" not in err
    meta = json.loads((dest / ".archiver" / "archive.json").read_text(encoding="utf-8"))
    assert meta["naming"]["info_delimiter"] == ";", meta  # both refuse ':'
    assert meta["naming"]["case_insensitive"] is foreign_fs.case_insensitive, meta
    files = archived_files(dest)
    assert files and all(";2," in rel and ":" not in rel for rel in files), sorted(files)[:5]
    for rel in files:
        for part in Path(rel).parts:
            assert win32_name_problem(part) is None, (rel, win32_name_problem(part))
        assert len(rel) + len("C:\\Users\\student\\Documents\\mail\\") < 260, rel
    assert Counter(files.values()) == Counter(  # byte-exact, every message once
        data for msgs in dovecot.fetch_all(old).values() for _, data, _, _ in msgs)

    # rerun: nothing new, nothing renamed, the index untouched
    before = _snapshot(dest)
    code, _out, err = backup(dovecot, old, dest)
    assert code == 0, err
    assert _snapshot(dest) == before

    code, out, err = run_cli(["verify", str(dest), "--json"])
    assert code == 0, err
    assert json.loads(out)["ok"] is True

    for kind in ("thunderbird", "mbox", "maildir", "eml"):
        out_dir = foreign_fs.mountpoint / f"export-{kind}"
        code, _out, err = run_cli(["export", str(dest), str(out_dir), "--to", kind])
        assert code == 0, f"{kind}: {err}"
        written = [p for p in out_dir.rglob("*") if p.is_file()]
        assert written, kind
        if kind == "maildir":
            names = [p.name for p in written if p.parent.name == "cur"]
            assert len(names) == len(files) and all(";2," in n for n in names), names[:3]
        if kind == "eml":
            assert len([p for p in written if p.suffix == ".eml"]) == len(files)

    new = dovecot_new.new_user("foreign-back")
    pw = password_file(new, tmp_path / "pw")
    code, out, err = run_cli(["restore", str(dest),
                              f"imaps://{new.name}@127.0.0.1:{dovecot_new.imaps_port}",
                              "--target-cafile", str(dovecot_new.cafile),
                              "--target-password-file", str(pw), "--timeout", "20",
                              "--include-deleted", "--json"])
    assert code == 0, err
    want, got = _contents(dovecot, old), _contents(dovecot_new, new)
    assert sorted(got) == sorted(want)  # every hostile name made it back
    for folder in want:
        assert got[folder] == want[folder], folder  # bytes, flags and INTERNALDATE
    assert os.path.ismount(foreign_fs.mountpoint)
