"""Every sync call is there and in order: write < sync < rename < dir fsync < index append.

A kill -9 cannot tell synced from unsynced data (the page cache survives a
killed process), so this test watches the calls instead: it records every
open/write/fsync/syncfs/rename/mkdir of real backups (first run, then an
incremental one with new mail, flag changes and an expunge) and a restore,
by inode (tests/syscall_log.py), and checks for each record of the index
(and of the restore journal), at the instant it became durable:

* Maildir: the message file's bytes were synced (fsync or syncfs) *before*
  its rename into cur/, and cur/ was fsynced after the rename;
* mbox: the appended bytes were synced, and the mbox file's name is durable;
* every directory created on the way (folder, cur/, .sbd/) was made durable
  by an fsync of its parent;
* the index (and the journal) is fsynced after each append, and its own name
  is durable before its first record counts;
* folders.json, the snapshot, archive.json and a rebuilt index (reindex)
  are written tmp -> fsync -> rename -> dir fsync, and folders.json/snapshot
  only after the last index frame they describe.

Removing or reordering any of these calls makes this test fail
(docs/RELIABILITY.md lists which call each check guards).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import archiver.durable as durable
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli
from tests.syscall_log import SyscallLog

ATOMIC = ("folders.json", "snapshot.json.zst", "archive.json")


def _load(dovecot: DovecotServer, user: MailUser) -> None:
    dovecot.create_folder(user, "Archive")
    dovecot.create_folder(user, "Archive/2003")
    dovecot.create_folder(user, "講義")
    # The last folder prepared is a nested one, so no later folder's creation happens to
    # fsync DEST (which would make its .sbd/ name durable by accident).
    dovecot.create_folder(user, "講義/2004")
    for i in range(12):  # more than durable._BULK: the syncfs path is taken in INBOX
        dovecot.append(user, "INBOX", f"Subject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\n"
                                      f"From here\r\nbody {i}\r\n".encode(), ["\\Seen"])
    dovecot.append(user, "Archive/2003", b"Subject: old\r\n\r\nold\r\n")
    dovecot.append(user, "講義", "Subject: 資料\r\n\r\n本文\r\n".encode())
    dovecot.append(user, "講義/2004", "Subject: 2004\r\n\r\n本文\r\n".encode())


def _change(dovecot: DovecotServer, user: MailUser) -> None:
    for i in range(10):
        dovecot.append(user, "INBOX", f"Subject: new{i}\r\n\r\nnew {i}\r\n".encode())
    dovecot.set_flags(user, "INBOX", 1, ["\\Flagged", "\\Answered"])
    dovecot.expunge(user, "INBOX", 2)


class Checker:
    def __init__(self, log: SyscallLog, dest: Path) -> None:
        self.log = log
        self.dest = dest.resolve()
        self.problems: list[str] = []

    def fail(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def ancestors_durable(self, path: str, before: int) -> None:
        """Every directory created on the way to ``path`` is named durably before ``before``."""
        p = Path(path).parent
        while len(p.parts) >= len(self.dest.parts):
            made = self.log.naming(str(p), before)
            if made is not None and made.parent is not None and not self.log.synced_between(
                    made.parent, made.seq, before, directory=True):
                self.fail(f"directory {p} created but its parent not fsynced before use")
            p = p.parent

    def named_file(self, path: str, before: int, what: str) -> None:
        """``path`` got its file by a rename (or create) whose data and name are durable."""
        ev = self.log.naming(path, before)
        if ev is None:
            self.fail(f"{what}: {path} was never named before it was recorded")
            return
        assert ev.ino is not None and ev.parent is not None
        last = self.log.last_write(ev.ino, before)
        if last is not None:
            limit = ev.seq if ev.detail in ("replace", "rename") and last.seq < ev.seq else before
            if not self.log.synced_between(ev.ino, last.seq, limit):
                self.fail(f"{what}: {path}: bytes not synced before "
                          + ("its rename" if limit == ev.seq else "it was recorded"))
        if not self.log.synced_between(ev.parent, ev.seq, before, directory=True):
            self.fail(f"{what}: {path}: its directory was not fsynced after the "
                      f"{ev.detail} and before the record")
        self.ancestors_durable(path, before)

    def appended_file(self, path: str, before: int, what: str) -> None:
        """An append-only file (mbox): the last bytes before ``before`` are synced."""
        inos = [ev.ino for ev in self.log.events
                if ev.path == path and ev.ino is not None and ev.seq < before]
        if not inos:
            self.fail(f"{what}: {path} never written")
            return
        ino = inos[-1]
        last = self.log.last_write(ino, before)
        if last is not None and not self.log.synced_between(ino, last.seq, before):
            self.fail(f"{what}: {path}: appended bytes not synced before the record")
        made = self.log.naming(path, before)
        if made is not None and made.parent is not None and not self.log.synced_between(
                made.parent, made.seq, before, directory=True):
            self.fail(f"{what}: {path}: created but its directory not fsynced before use")
        self.ancestors_durable(path, before)

    def records(self, suffix: str, fmt: str) -> int:
        count = 0
        first: dict[str, int] = {}
        for seq, rec in self.log.index_records(suffix):
            count += 1
            index_path = next(ev.path for ev in self.log.events if ev.seq == seq)
            first.setdefault(index_path, seq)
            kind = rec.get("type")
            path = str(self.dest / rec["path"]) if isinstance(rec.get("path"), str) else None
            if kind == "msg" and path is not None:
                if fmt == "maildir":
                    self.named_file(path, seq, f"msg {rec.get('folder')}")
                else:
                    self.appended_file(path, seq, f"msg {rec.get('folder')}")
            elif kind == "flags" and path is not None and fmt == "maildir":
                self.named_file(path, seq, f"flags {rec.get('folder')}")
        for index_path, seq in first.items():  # the index's own name before it counts
            made = self.log.naming(index_path, seq)
            if made is not None and made.parent is not None and not self.log.synced_between(
                    made.parent, made.seq, seq, directory=True):
                self.fail(f"{index_path}: created but .archiver not fsynced before its "
                          "first record")
        return count

    def appends_all_synced(self) -> None:
        """No index-like file ends the run with written bytes that were never fsynced."""
        for ev in self.log.events:
            if (ev.kind == "write" and ev.path.endswith(".jsonl.zst") and ev.ino is not None
                    and not self.log.synced_between(ev.ino, ev.seq, 1 << 62)):
                self.fail(f"{ev.path}: an append was never fsynced")

    def atomic_files(self) -> None:
        last_record = max((ev.seq for ev in self.log.events
                           if ev.kind == "record" and ev.path.endswith("index.jsonl.zst")),
                          default=0)
        for ev in self.log.events:
            base = os.path.basename(ev.path)
            replaced_index = base == "index.jsonl.zst" and ev.detail == "replace"  # reindex
            if ev.kind != "name" or (base not in ATOMIC and not replaced_index):
                continue
            assert ev.ino is not None and ev.parent is not None
            last = self.log.last_write(ev.ino, ev.seq)
            if last is not None and not self.log.synced_between(ev.ino, last.seq, ev.seq):
                self.fail(f"{ev.path}: renamed into place before its bytes were synced")
            if not self.log.synced_between(ev.parent, ev.seq, 1 << 62, directory=True):
                self.fail(f"{ev.path}: its directory was not fsynced after the rename")
            name = os.path.basename(ev.path)
            if name in ("folders.json", "snapshot.json.zst") and ev.seq < last_record:
                self.fail(f"{ev.path}: written before the index frames it describes")


def _run_logged(dest: Path, args: list[str], env: dict[str, str]) -> SyscallLog:
    log = SyscallLog(dest)  # DEST itself is created by the first backup: its name counts too
    with log:
        code, _, err = run_cli(args, env=env)
    assert code == 0, err
    return log


@pytest.mark.parametrize("fmt,sync", [("maildir", "syncfs"), ("maildir", "fsync"),
                                      ("mbox", "fsync")])
def test_every_record_follows_write_sync_rename_dirsync(
        dovecot: DovecotServer, dovecot_new: DovecotServer, mail_user: MailUser,
        tmp_path: Path, fmt: str, sync: str) -> None:
    _load(dovecot, mail_user)
    dest = tmp_path / "a"
    env = {durable.SYNC_ENV: sync}
    from tests.helpers import source_args

    args = ["backup", *source_args(dovecot, mail_user, dest), "--format", fmt]
    problems: list[str] = []
    counted = 0
    for step in ("first", "incremental"):
        if step == "incremental":
            _change(dovecot, mail_user)
        log = _run_logged(dest, args, env)
        if sync == "syncfs" and step == "first":
            assert any(ev.kind == "syncfs" for ev in log.events), "syncfs was not used"
        check = Checker(log, dest)
        counted += check.records("index.jsonl.zst", fmt)
        check.appends_all_synced()
        check.atomic_files()
        problems += [f"{step}: {p}" for p in check.problems]
    assert counted > 20
    if sync == "fsync":  # a rebuilt index is renamed into place like the other files
        log = _run_logged(dest, ["reindex", str(dest), "--force"], env)
        check = Checker(log, dest)
        check.atomic_files()
        assert any(ev.detail == "replace" and ev.path.endswith("index.jsonl.zst")
                   for ev in log.events)
        problems += [f"reindex: {p}" for p in check.problems]
    if sync == "syncfs":  # the restore journal, once (the upload is the same in every case)
        target = dovecot_new.new_user("order")
        pw = password_file(target, tmp_path / ".pwt")
        log = _run_logged(dest, ["restore", str(dest),
                                 f"imaps://{target.name}@127.0.0.1:{dovecot_new.imaps_port}",
                                 "--target-cafile", str(dovecot_new.cafile),
                                 "--target-password-file", str(pw)], env)
        check = Checker(log, dest)
        assert check.records(".jsonl.zst", fmt) > 0
        check.appends_all_synced()
        problems += [f"restore: {p}" for p in check.problems]
    assert not problems, "\n".join(problems)
    assert backup(dovecot, mail_user, dest, "--format", fmt)[0] == 0
