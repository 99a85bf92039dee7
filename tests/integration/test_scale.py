"""Per-folder costs stay per folder: nothing done for each new folder grows with the
number of folders already archived (10,000 folders, issue 11).  Timing lives in
scripts/bench.py; these tests count the work instead."""

from __future__ import annotations

from pathlib import Path

import pytest

import archiver.engine
import archiver.names
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, run_backup
from archiver.sources.imap import ImapSource
from archiver.stores import open_store
from tests.fakeimap import FakeImap


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
