"""Per-folder costs stay per folder: nothing done for each new folder grows with the
number of folders already archived (10,000 folders, issue 11).  Timing lives in
scripts/bench.py; these tests count the work instead."""

from __future__ import annotations

import json
from pathlib import Path

import imapclient
import pytest

import archiver.engine
import archiver.names
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, run_backup
from archiver.sources.imap import ImapSource
from archiver.sources.responses import status_from as _status_from
from archiver.stores import open_store
from tests.dovecot import DovecotServer, MailUser
from tests.fakeimap import FakeImap
from tests.helpers import backup


def _backup(server: FakeImap, dest: Path) -> None:
    ep = parse_endpoint(f"imap://u@127.0.0.1:{server.port}", tls=TLSOptions(plaintext=True))
    arc = Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "127.0.0.1",
                                                   "user": "u"})
    try:
        summary = run_backup(ImapSource(ep, "pw"), arc, open_store(dest, "maildir"),
                             BackupOptions())
    finally:
        arc.close()
    assert summary.status == "ok", summary.problems


def test_new_folders_fold_each_taken_path_once(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Giving 60 new folders their paths folds about 60 paths, not 60 x 60 / 2."""
    calls = 0
    real = archiver.names.fold_key

    def counting(path: str) -> str:
        nonlocal calls
        calls += 1
        return real(path)

    monkeypatch.setattr(archiver.names, "fold_key", counting)
    monkeypatch.setattr(archiver.engine, "fold_key", counting)
    box = {b"F%03d" % i: {1: b"Subject: %d\r\n\r\nx\r\n" % i} for i in range(60)}
    with FakeImap(box) as srv:
        _backup(srv, tmp_path / "a")
    state = Archive.open_existing(tmp_path / "a").state()
    assert len({f.path.lower() for f in state.folders.values()}) == 60
    assert calls <= 4 * 60, f"{calls} fold_key calls for 60 new folders"


def test_folder_counters_come_with_the_listing_not_one_status_each(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot has LIST-STATUS: no STATUS command per folder, the same counters as
    STATUS gives, and a no-op rerun still skips every folder."""
    names = ["INBOX", "Sent", "受信箱", "受信箱/講義", "Archive/2003"]
    with dovecot.session(mail_user) as c:
        for i, name in enumerate(names * 2):
            dovecot.append(mail_user, name, b"Subject: %d\r\n\r\nx\r\n" % i, client=c)
    ep = parse_endpoint(f"imaps://{mail_user.name}@127.0.0.1:{dovecot.imaps_port}",
                        tls=TLSOptions(cafile=dovecot.cafile))
    src = ImapSource(ep, mail_user.password)
    src.connect()
    try:
        assert "LIST-STATUS" in src.capabilities
        folders = src.folders()
        listed = {f.name: src.status(f) for f in folders}
        by_status = {f.name: _status_from(src.client.folder_status(f.raw_name,
                                                                   src._status_items()))
                     for f in folders}
    finally:
        src.close()
    assert set(names) <= set(listed)
    assert listed == by_status
    calls = []
    real = imapclient.IMAPClient.folder_status
    monkeypatch.setattr(imapclient.IMAPClient, "folder_status",
                        lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--quiet")[0] == 0
    code, out, _ = backup(dovecot, mail_user, dest, "--quiet", "--json")
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["folders_skipped"] == len(listed)
    assert calls == [], f"{len(calls)} STATUS commands"
