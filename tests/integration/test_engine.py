"""The backup engine when the destination fails mid-run: fail-stop, exit 6, then a clean rerun.

Sync failures are injected at ``os.fsync`` and ``archiver.durable.syncfs``
(a disk that starts failing), so the stores, the pipeline and the engine
above them run as in production.  Every test ends with a rerun that must complete and
verify: a failure never leaves an archive a rerun cannot repair.
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

import archiver.durable as durable
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, run_backup
from archiver.errors import DestinationError
from archiver.sources.imap import ImapSource
from archiver.stores import open_store
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, index_records, run_cli


def _load(dovecot: DovecotServer, user: MailUser, folders: dict[str, int]) -> None:
    for folder, count in folders.items():
        if folder != "INBOX":
            dovecot.create_folder(user, folder)
        for i in range(count):
            dovecot.append(user, folder, f"Subject: {folder} {i}\r\nMessage-ID: <{folder}.{i}@x>"
                                         f"\r\n\r\nbody {i} {'x' * (i * 37)}\r\n".encode())


def _failing_after(calls: int, err: int) -> Callable[[int], None]:
    """An ``fsync`` that works ``calls`` times, then fails with ``err`` (a dying disk)."""
    real = os.fsync
    seen = [0]

    def fsync(fd: int) -> None:
        seen[0] += 1
        if seen[0] > calls:
            raise OSError(err, "simulated " + errno.errorcode[err])
        real(fd)

    return fsync


def _archived(dest: Path) -> Counter[tuple[str, str]]:
    return Counter((r["folder"], r["sha256"]) for r in index_records(dest) if r["type"] == "msg")


def _served(dovecot: DovecotServer, user: MailUser) -> Counter[tuple[str, str]]:
    import hashlib

    return Counter((folder, hashlib.sha256(data).hexdigest())
                   for folder, msgs in dovecot.fetch_all(user).items() for _, data, _, _ in msgs)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_failed_batch_stops_the_run_and_never_marks_its_folder_complete(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """A batch whose sync fails: no later batch is recorded and folders.json (which lets a
    CONDSTORE rerun skip an unchanged folder) does not name the folder."""
    _load(dovecot, mail_user, {"INBOX": 40, "Later": 5})
    monkeypatch.setenv(durable.SYNC_ENV, "fsync")
    dest = tmp_path / "a"
    ep = parse_endpoint(f"imaps://{mail_user.name}@127.0.0.1:{dovecot.imaps_port}",
                        tls=TLSOptions(cafile=dovecot.cafile))
    arc = Archive.create_or_open(dest, fmt, {"protocol": "imap", "host": "127.0.0.1",
                                             "user": mail_user.name})
    # Enough fsyncs for the archive's own files and two batches of 5, then EIO.
    monkeypatch.setattr(os, "fsync", _failing_after(12, errno.EIO))
    with pytest.raises(DestinationError, match="input/output error"):
        run_backup(ImapSource(ep, mail_user.password), arc, open_store(dest, fmt),
                   BackupOptions(batch_count=5))
    arc.close()
    monkeypatch.undo()
    counters = json.loads((dest / ".archiver" / "folders.json").read_text() or "{}") \
        if (dest / ".archiver" / "folders.json").exists() else {}
    assert "INBOX" not in counters and "Later" not in counters
    recorded = [r for r in index_records(dest) if r["type"] == "msg"]
    assert len(recorded) < 40  # the run stopped at the failed batch
    report = json.loads(run_cli(["verify", str(dest), "--json"])[1])
    assert report["missing"] == [] and report["changed"] == []  # what is recorded is whole
    assert backup(dovecot, mail_user, dest, "--format", fmt)[0] == 0
    assert _archived(dest) == _served(dovecot, mail_user)
    assert code_ok(run_cli(["verify", str(dest)]))


def code_ok(result: tuple[int, str, str]) -> bool:
    return result[0] == 0


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_syncfs_write_error_is_exit_6_and_the_batch_is_not_recorded(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    """EIO/ENOSPC from syncfs: pages may be lost already, so nothing of the batch is recorded."""
    _load(dovecot, mail_user, {"INBOX": 30})
    monkeypatch.setenv(durable.SYNC_ENV, "syncfs")

    def broken(fd: int) -> None:
        raise OSError(err, "simulated")

    monkeypatch.setattr(durable, "syncfs", broken)
    dest = tmp_path / "a"
    code, _, text = backup(dovecot, mail_user, dest)
    assert code == 6, text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    assert not [r for r in index_records(dest) if r["type"] == "msg"]
    monkeypatch.undo()
    assert backup(dovecot, mail_user, dest)[0] == 0
    assert _archived(dest) == _served(dovecot, mail_user)


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM, errno.EINVAL])
def test_syncfs_refused_falls_back_to_per_file_fsync_and_completes(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    _load(dovecot, mail_user, {"INBOX": 30})
    monkeypatch.setenv(durable.SYNC_ENV, "syncfs")
    calls = Counter[str]()
    real_fsync = os.fsync

    def refused(fd: int) -> None:
        calls["syncfs"] += 1
        raise OSError(err, "simulated")

    def counting_fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    monkeypatch.setattr(durable, "syncfs", refused)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    dest = tmp_path / "a"
    code, _, text = backup(dovecot, mail_user, dest)
    assert code == 0, text
    assert calls["syncfs"] == 1  # refused once, then never asked again in this run
    assert calls["fsync"] >= 30  # every message file was fsynced instead
    assert _archived(dest) == _served(dovecot, mail_user)


def test_eio_on_the_destination_is_one_line_and_exit_6_not_a_traceback(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _load(dovecot, mail_user, {"INBOX": 3})
    monkeypatch.setenv(durable.SYNC_ENV, "fsync")
    monkeypatch.setattr(os, "fsync", _failing_after(0, errno.EIO))
    code, _, text = backup(dovecot, mail_user, tmp_path / "a")
    assert code == 6, text
    assert text.startswith("archiver: error:") and "input/output error" in text
    assert len(text.strip().splitlines()) == 1
