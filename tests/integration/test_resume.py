"""A large message cut in the middle resumes from the bytes on disk, never a splice.

Messages above ``stream_threshold`` are fetched in ``BODY.PEEK[]<offset.length>``
pieces into a resumable spool (archiver/resume.py).  Against the real Dovecot
through tests/proxy.py: several cuts within one message cost about one
message plus at most a piece per cut, and a kill -9 mid-message is continued
by the rerun.  Against tests/fakeimap.py: short pieces, a wrong origin, and a
spool that belongs to another message.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, Summary, run_backup
from archiver.sources.imap import ImapSource
from archiver.stores import open_store
from tests.dovecot import DovecotServer, MailUser
from tests.fakeimap import Closed, FakeImap
from tests.helpers import archived_files, backup, backup_process, index_records, run_cli
from tests.integration.test_memory import _big_message
from tests.proxy import Fault, FaultProxy, only

MB = 1 << 20
SIZE = 20 * MB
CHUNK = 4 * MB  # the engine's default piece


@pytest.fixture(scope="module")
def big20(dovecot: DovecotServer) -> tuple[MailUser, bytes]:
    """A user with one ~20 MB message (served bytes, as a full fetch returns them)."""
    user = dovecot.new_user("resume")
    dovecot.write_maildir_file(user, "INBOX", _big_message(SIZE))
    served = dovecot.fetch_all(user)["INBOX"]
    assert len(served) == 1
    return user, served[0][1]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.05))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.05)


def _via(proxy: FaultProxy, server: DovecotServer) -> Any:
    return type("Via", (), {"imaps_port": proxy.port, "cafile": server.cafile})


def _assert_exact(dest: Path, served: bytes) -> None:
    assert list(archived_files(dest).values()) == [served]
    assert not [p for p in dest.rglob("*.partial*")], "a partial spool was left behind"
    assert run_cli(["verify", str(dest)])[0] == 0
    msgs = [r for r in index_records(dest) if r["type"] == "msg"]
    assert len(msgs) == 1


def test_cuts_in_a_big_message_cost_a_piece_each_not_the_message(
        dovecot: DovecotServer, big20: tuple[MailUser, bytes], tmp_path: Path,
        fast_retries: None) -> None:
    """Three cuts, each ~6 MB into its connection: the total read from the server is
    the message plus at most a piece per cut (starting over would read 38 MB)."""
    user, served = big20
    cuts = 3
    dest = tmp_path / "a"
    with FaultProxy(dovecot.imaps_port, only(set(range(1, cuts + 1)),
                                             Fault(cut_after=6 * MB))) as proxy:
        code, _, err = backup(_via(proxy, dovecot), user, dest, "--quiet")
        ended = [c.ended for c in proxy.connections]
        total = sum(c.down for c in proxy.connections)
    assert code == 0, err
    assert ended[:cuts] == ["cut"] * cuts, ended
    print(f"{len(served) / MB:.1f} MB message, {cuts} cuts: {total / MB:.1f} MB from the server")
    assert total <= len(served) + cuts * CHUNK + MB, f"{total / MB:.1f} MB read"
    _assert_exact(dest, served)


def test_kill_9_in_a_big_message_then_rerun_fetches_only_the_rest(
        dovecot: DovecotServer, big20: tuple[MailUser, bytes], tmp_path: Path) -> None:
    """The first run stalls ~10 MB in and is killed once a piece is on disk; the rerun
    reads from the server little more than the part not yet fetched."""
    user, served = big20
    dest = tmp_path / "a"
    with FaultProxy(dovecot.imaps_port, only({1}, Fault(stall_after=10 * MB))) as proxy:
        proc = backup_process(_via(proxy, dovecot), user, dest, "--quiet")
        deadline = time.monotonic() + 60
        kept = 0
        while time.monotonic() < deadline and proc.poll() is None:
            sidecars = list(dest.glob("INBOX/tmp/*.partial.json"))
            if sidecars:
                try:
                    kept = json.loads(sidecars[0].read_text())["length"]
                except (OSError, ValueError):
                    kept = 0
                if kept >= 2 * CHUNK:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert kept >= 2 * CHUNK, "the first run never got two pieces on disk"
        code, _, err = backup(_via(proxy, dovecot), user, dest, "--quiet")
        rerun = proxy.connections[-1].down
    assert code == 0, err
    print(f"kept {kept / MB:.1f} MB; the rerun read {rerun / MB:.1f} MB")
    assert rerun <= len(served) - kept + MB, f"the rerun read {rerun / MB:.1f} MB"
    _assert_exact(dest, served)


# ---------------------------------------------------------------- scripted servers

BODY = b"Subject: big\r\n\r\n" + b"".join(b"line %06d of the big one\r\n" % i
                                           for i in range(10_000))
FAKE_DATE = "2024-01-01T10:00:00+09:00"  # tests/fakeimap.py's INTERNALDATE
OPTS = dict(stream_threshold=20_000, stream_chunk=30_000, backoff=0.01, max_reconnects=3)


def _fake_backup(server: FakeImap, dest: Path, fmt: str = "maildir") -> Summary:
    ep = parse_endpoint(f"imap://u@127.0.0.1:{server.port}", tls=TLSOptions(plaintext=True))
    arc = Archive.create_or_open(dest, fmt, {"protocol": "imap", "host": "127.0.0.1",
                                             "user": "u"})
    try:
        return run_backup(ImapSource(ep, "pw"), arc, open_store(dest, fmt),
                          BackupOptions(**OPTS))  # type: ignore[arg-type]
    finally:
        arc.close()


def _stored(dest: Path, fmt: str = "maildir") -> list[bytes]:
    store = open_store(dest, fmt)
    state = Archive.open_existing(dest).state()
    return [store.read_message(m) for f in state.folders.values() for m in f.messages.values()]


def _partial_fetches(server: FakeImap) -> list[int]:
    """The origins of every ``BODY.PEEK[]<origin.length>`` the client asked for."""
    return [int(m.group(1)) for c in server.commands
            for m in [re.search(rb"BODY\.PEEK\[\]<(\d+)\.", c)] if m]


class ShortPieces(FakeImap):
    """Answers every partial fetch with at most 7,000 bytes (a server may send fewer)."""

    def partial_item(self, seq: int, uid: int, body: bytes, start: int, length: int) -> bytes:
        return super().partial_item(seq, uid, body, start, min(length, 7_000))


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_short_pieces_before_the_end_are_continued_not_taken_as_the_end(
        tmp_path: Path, fmt: str) -> None:
    with ShortPieces({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, tmp_path / "a", fmt)
    assert summary.status == "ok", summary.problems
    assert _stored(tmp_path / "a", fmt) == [BODY]


class WrongOrigin(FakeImap):
    """Answers the second piece as if asked from byte 0: must never be appended."""

    def partial_item(self, seq: int, uid: int, body: bytes, start: int, length: int) -> bytes:
        if start > 0:
            piece = body[:length]
            return b"* %d FETCH (UID %d BODY[]<0> {%d}\r\n%s)\r\n" % (seq, uid, len(piece),
                                                                       piece)
        return super().partial_item(seq, uid, body, start, length)


def test_an_answer_from_another_origin_is_refused_not_appended(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    with WrongOrigin({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest)
    assert summary.status == "partial"
    assert any("answered from 0" in p for p in summary.problems), summary.problems
    assert _stored(dest) == [] and archived_files(dest) == {}
    assert not list(dest.rglob("*.partial*")), "the refused spool was kept"


def test_a_tiny_piece_size_still_resumes(tmp_path: Path) -> None:
    """Pieces smaller than the 4 KiB overlap: the overlap shrinks to half a piece."""
    dest = tmp_path / "a"
    _first_run(dest)
    _plant_spool(dest, BODY[:60_000])
    with FakeImap({b"INBOX": {1: BODY}}) as srv:
        ep = parse_endpoint(f"imap://u@127.0.0.1:{srv.port}", tls=TLSOptions(plaintext=True))
        arc = Archive.open_existing(dest)
        try:
            summary = run_backup(ImapSource(ep, "pw"), arc, open_store(dest, "maildir"),
                                 BackupOptions(**dict(OPTS, stream_chunk=1000)))  # type: ignore[arg-type]
        finally:
            arc.close()
    assert summary.status == "ok", summary.problems
    assert _stored(dest) == [BODY]
    assert min(_partial_fetches(srv)) == 60_000 - 500


def _plant_spool(dest: Path, data: bytes, **ident: Any) -> Path:
    """A partial spool of UID 1 as a killed run leaves it (sidecar included)."""
    tmp = dest / "INBOX" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    spool = tmp / f"{FakeImap.uidvalidity}.1.partial"
    spool.write_bytes(data)
    record = {"folder": "INBOX", "uidvalidity": FakeImap.uidvalidity, "uid": 1,
              "rfc822_size": len(BODY), "internaldate": FAKE_DATE,
              "length": len(data)}
    record.update(ident)
    (tmp / (spool.name + ".json")).write_text(json.dumps(record))
    return spool


def _first_run(dest: Path) -> None:
    """An archive with INBOX known, so a planted spool is where a rerun looks."""
    with FakeImap({b"INBOX": {}}) as srv:
        assert _fake_backup(srv, dest).status == "ok"


def test_a_planted_spool_of_this_message_is_continued(tmp_path: Path) -> None:
    """The control case: a sidecar naming this very message continues from its length."""
    dest = tmp_path / "a"
    _first_run(dest)
    _plant_spool(dest, BODY[:60_000])
    with FakeImap({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest)
    assert summary.status == "ok", summary.problems
    assert _stored(dest) == [BODY]
    assert 0 not in _partial_fetches(srv), "it started over"
    assert min(_partial_fetches(srv)) == 60_000 - 4096


@pytest.mark.parametrize("change", [
    {"rfc822_size": len(BODY) + 1}, {"internaldate": "2023-01-01T10:00:00+09:00"},
    {"uid": 2}, {"folder": "Other"}, {"length": 10**9}])
def test_a_spool_whose_sidecar_names_another_message_starts_over(
        tmp_path: Path, change: dict[str, Any]) -> None:
    dest = tmp_path / "a"
    _first_run(dest)
    _plant_spool(dest, b"X" * 60_000, **change)
    with FakeImap({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest)
    assert summary.status == "ok", summary.problems
    assert _stored(dest) == [BODY]
    assert _partial_fetches(srv)[0] == 0


def test_a_spool_with_other_bytes_under_the_same_name_and_size_starts_over(
        tmp_path: Path) -> None:
    """Same folder, UID, size and date (a server that reused a UID): the overlap the
    server must repeat differs, so the bytes on disk are thrown away, not continued."""
    dest = tmp_path / "a"
    _first_run(dest)
    other = BODY.replace(b"line", b"LINE")
    _plant_spool(dest, other[:60_000])
    with FakeImap({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest)
    assert summary.status == "ok", summary.problems
    assert _stored(dest) == [BODY]
    assert _partial_fetches(srv)[:2] == [60_000 - 4096, 0]


def test_a_spool_of_a_message_no_longer_on_the_server_is_removed(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    _first_run(dest)
    spool = _plant_spool(dest, BODY[:60_000])
    with FakeImap({b"INBOX": {2: b"Subject: small\r\n\r\nhi\r\n"}}) as srv:
        assert _fake_backup(srv, dest).status == "ok"
    assert not spool.exists() and not spool.with_name(spool.name + ".json").exists()


class CutMidMessage(FakeImap):
    """Drops the line when asked for a piece past 60,000 bytes (first connection) or past
    90,000 (second): two cuts within one message."""

    def partial_item(self, seq: int, uid: int, body: bytes, start: int, length: int) -> bytes:
        if self.connections <= 2 and start >= (self.connections + 1) * 30_000:
            raise Closed()
        return super().partial_item(seq, uid, body, start, length)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_line_cut_mid_message_resumes_in_the_same_run(tmp_path: Path, fmt: str) -> None:
    dest = tmp_path / "a"
    with CutMidMessage({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest, fmt)
    assert summary.status == "ok", summary.problems
    assert _stored(dest, fmt) == [BODY]
    origins = _partial_fetches(srv)
    assert origins.count(0) == 1, origins
    assert srv.served <= len(BODY) + 2 * 30_000, srv.served
    assert srv.connections == 3
    assert not list(dest.rglob("*.partial*")), "a spool or sidecar was left behind"


class EndlessPieces(FakeImap):
    """Answers every piece in full, at the origin asked, for ever."""

    def partial_item(self, seq: int, uid: int, body: bytes, start: int, length: int) -> bytes:
        return b"* %d FETCH (UID %d BODY[]<%d> {%d}\r\n%s)\r\n" % (seq, uid, start, length,
                                                                   b"x" * length)


def test_a_message_that_never_ends_is_refused_not_spooled_for_ever(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    with EndlessPieces({b"INBOX": {1: BODY}}) as srv:
        summary = _fake_backup(srv, dest)
    assert summary.status == "partial"
    assert any("listed as" in p for p in summary.problems), summary.problems
    assert len(_partial_fetches(srv)) <= 2 * len(BODY) // 30_000 + 3, "it went on too long"
    assert archived_files(dest) == {} and not list(dest.rglob("*.partial*"))
