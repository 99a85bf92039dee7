"""Honest progress (issue 12): bytes as they arrive, totals that add up, -v and --debug.

The issue's user watched ``0%| 1.96k/20.5M`` for minutes while 4 MB of a
20 MB message had arrived: the bar moved only when a whole message was done.
Here a real Dovecot serves a large message through a slowed proxy, and the
Progress the engine reports to must see the bytes grow *inside* that message.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, run_backup
from archiver.jobs import Summary
from archiver.progress import TerminalProgress
from archiver.restore.journal import RestoreJournal
from archiver.restore.target import ImapTarget
from archiver.restore.upload import Restore, RestoreOptions
from archiver.sources.imap import ImapSource
from archiver.sources.pop3 import Pop3Source
from archiver.stores import open_store
from tests.dovecot import DovecotServer, MailUser
from tests.fakeimap import FakeImap, Mailbox
from tests.helpers import backup, index_records, run_cli, source_args
from tests.proxy import Fault, FaultProxy, every, first

MB = 1_000_000


class Recorder(TerminalProgress):
    """The engine's Progress, counting as the CLI's does, with every byte event kept."""

    def __init__(self) -> None:
        super().__init__()  # mode "off": counts only
        self.events: list[tuple[float, str, int, int]] = []  # (time, kind, n, done bytes after)
        self._events_lock = threading.Lock()

    def transferred(self, nbytes: int) -> None:
        super().transferred(nbytes)
        with self._events_lock:
            self.events.append((time.monotonic(), "bytes", nbytes, self.done_bytes))

    def advance(self, messages: int, nbytes: int) -> None:
        super().advance(messages, nbytes)
        with self._events_lock:
            self.events.append((time.monotonic(), "messages", messages, self.done_bytes))


def _big_message(size: int) -> bytes:
    """A mail of about ``size`` bytes whose body does not compress (COMPRESS may be on)."""
    rnd = random.Random(12)
    raw = rnd.randbytes(size * 3 // 4)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body)


@pytest.fixture
def big_user(dovecot: DovecotServer) -> MailUser:
    user = dovecot.new_user("bigprog")
    dovecot.append(user, "INBOX", _big_message(6 * MB))
    dovecot.append(user, "INBOX", b"Subject: small\r\n\r\nsmall\r\n")
    return user


def _imap(port: int, dovecot: DovecotServer, user: MailUser, **kw: Any) -> ImapSource:
    ep = parse_endpoint(f"imaps://{user.name}@127.0.0.1:{port}",
                        tls=TLSOptions(cafile=dovecot.cafile))
    return ImapSource(ep, user.password, timeout=20, **kw)


def _run(source: Any, dest: Path, progress: Recorder, **options: Any) -> Summary:
    archive = Archive.create_or_open(dest, "maildir", {"host": "127.0.0.1", "user": "u",
                                                       "protocol": source.protocol})
    try:
        return run_backup(source, archive, open_store(dest, "maildir"),
                          BackupOptions(**options), progress)
    finally:
        archive.close()


def _assert_totals_exact(progress: Recorder, summary: Summary, dest: Path) -> None:
    msgs = [r for r in index_records(dest) if r["type"] == "msg"]
    sizes = sum(int(r.get("rfc822_size") or r["size"]) for r in msgs)
    assert summary.status == "ok", summary.problems
    assert progress.total_messages == progress.done_messages == summary.new == len(msgs)
    assert progress.total_bytes == progress.done_bytes == sizes


def _advances_inside_the_big_message(progress: Recorder, big: int) -> list[int]:
    """Byte totals reported before the big message's bytes were all counted (the
    small message is tens of bytes: whenever it came, these are the big one's)."""
    totals = []
    for _, kind, n, done in progress.events:
        if kind == "bytes" and n > 0:
            totals.append(done)
            if done >= big:
                break
    return [t for t in totals if t < big]


@pytest.mark.parametrize("mode", ["batch", "stream", "compressed"])
def test_the_bar_moves_inside_a_large_message_over_a_slow_link(
        dovecot: DovecotServer, big_user: MailUser, tmp_path: Path, mode: str) -> None:
    """About 6 MB at about 3 MB/s: the Progress sees many growing byte totals while the
    one message arrives, whether it comes in one literal (a batch), in resumable
    pieces (streamed) or through COMPRESS=DEFLATE."""
    size = len(dovecot.fetch_all(big_user)["INBOX"][0][1])
    options: dict[str, Any] = {"connections": 1}
    if mode == "stream":
        options.update(stream_threshold=1 << 20, stream_chunk=3 << 20)
    progress = Recorder()
    with FaultProxy(dovecot.imaps_port, every(Fault(delay=0.004)), chunk=16384) as proxy:
        src = _imap(proxy.port, dovecot, big_user,
                    compress="on" if mode == "compressed" else "off")
        started = time.monotonic()
        summary = _run(src, tmp_path / "a", progress, **options)
        took = time.monotonic() - started
    inside = _advances_inside_the_big_message(progress, size)
    assert len(inside) >= 10, (len(inside), took)
    assert inside == sorted(inside) and len(set(inside)) == len(inside)
    assert inside[0] < size // 4  # the first bytes showed long before the end
    # spread over the message's arrival (seconds), not a burst when it is complete
    times = [t for t, kind, n, d in progress.events if kind == "bytes" and n > 0 and d in inside]
    assert times[-1] - times[0] > 0.5 * took * 0.5, (times[-1] - times[0], took)
    assert src.compressed == (mode == "compressed")
    _assert_totals_exact(progress, summary, tmp_path / "a")
    print(f"{mode}: {len(inside)} byte advances inside a {size / MB:.1f} MB message, "
          f"{took:.1f} s")


def test_pop3_counts_a_message_while_it_arrives(dovecot: DovecotServer, big_user: MailUser,
                                                tmp_path: Path) -> None:
    progress = Recorder()
    with FaultProxy(dovecot.pop3s_port, every(Fault(delay=0.004)), chunk=16384) as proxy:
        ep = parse_endpoint(f"pop3s://{big_user.name}@127.0.0.1:{proxy.port}",
                            tls=TLSOptions(cafile=dovecot.cafile))
        summary = _run(Pop3Source(ep, big_user.password, timeout=20), tmp_path / "p", progress)
    size = max(len(d) for _, d, _, _ in dovecot.fetch_all(big_user)["INBOX"])
    assert len(_advances_inside_the_big_message(progress, size)) >= 5
    assert summary.status == "ok"
    assert progress.done_bytes == progress.total_bytes
    assert progress.done_messages == progress.total_messages == 2


def test_a_restore_counts_a_large_message_while_it_is_sent(
        dovecot: DovecotServer, dovecot_new: DovecotServer, big_user: MailUser,
        tmp_path: Path) -> None:
    """The upload side: the bytes of a 6 MB APPEND literal move the Progress while they go
    through a slowed line, and the total is exact once both messages have landed."""
    dest = tmp_path / "a"
    assert backup(dovecot, big_user, dest, "--quiet")[0] == 0
    target_user = dovecot_new.new_user("bigup")
    size = max(len(d) for _, d, _, _ in dovecot.fetch_all(big_user)["INBOX"])
    progress = Recorder()
    with FaultProxy(dovecot_new.imaps_port, every(Fault(up_delay=0.004)), chunk=16384) as proxy:
        ep = parse_endpoint(f"imaps://{target_user.name}@127.0.0.1:{proxy.port}",
                            tls=TLSOptions(cafile=dovecot_new.cafile))
        sink = ImapTarget(ep, target_user.password, timeout=20, compress="off")
        sink.connect()
        archive = Archive.open_existing(dest)
        journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user).open(True)
        try:
            summary = Restore(archive, open_store(dest, archive.format), sink, journal,
                              RestoreOptions(connections=1), progress).run()
        finally:
            journal.close()
            sink.close()
            archive.close()
    assert summary.status == "ok" and summary.uploaded == 2
    assert len(_advances_inside_the_big_message(progress, size)) >= 10
    assert progress.done_bytes == progress.total_bytes == summary.uploaded_bytes
    assert progress.done_messages == progress.total_messages == 2


def _spread_user(dovecot: DovecotServer) -> MailUser:
    user = dovecot.new_user("spread")
    for folder in ("INBOX", "Sent", "講義/2024", "Archive"):
        for i in range(12):
            dovecot.append(user, folder, b"Subject: %d\r\n\r\n" % i + b"y" * (3000 + 997 * i)
                           + b"\r\n")
    return user


def test_totals_add_up_exactly_with_several_connections_and_a_cut(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    """Three connections report into one Progress, and the first loses its line in the
    middle of a batch: the redone pass changes the total by the difference only and the
    bytes that arrived before the cut are taken back, so done == total to the byte."""
    user = _spread_user(dovecot)
    progress = Recorder()
    with FaultProxy(dovecot.imaps_port, first(Fault(cut_after=80_000))) as proxy:
        summary = _run(_imap(proxy.port, dovecot, user, compress="off"), tmp_path / "a",
                       progress, connections=3, batch_bytes=20_000, batch_count=4, backoff=0.1)
        assert proxy.connections[0].ended == "cut"
        assert len(proxy.connections) >= 4  # 3 connections and a reconnect
    _assert_totals_exact(progress, summary, tmp_path / "a")


class _FailsSome(FakeImap):
    """Sends the bodies of a batch naming UID 5 and then refuses it (bytes arrived for
    nothing); never delivers UID 7."""

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        uids = self.uids(rest.split(b" ")[2])
        if b"BODY.PEEK[]" in rest.upper() and 7 in uids:
            return tag + b" NO [SERVERBUG] cannot\r\n"
        if b"BODY.PEEK[]" in rest.upper() and 5 in uids and len(uids) > 1:
            sent = super().reply_fetch(tag, rest)
            return sent[: sent.rindex(tag)] + tag + b" NO [SERVERBUG] try again\r\n"
        return super().reply_fetch(tag, rest)


def test_failed_and_refused_messages_leave_the_byte_total_right(tmp_path: Path) -> None:
    mailbox: Mailbox = {b"INBOX": {uid: b"Subject: %d\r\n\r\n%s\r\n" % (uid, b"x" * 500 * uid)
                                   for uid in range(1, 11)}}
    progress = Recorder()
    with _FailsSome(mailbox) as server:
        ep = parse_endpoint(f"imap://u@127.0.0.1:{server.port}", tls=TLSOptions(plaintext=True))
        summary = _run(ImapSource(ep, "p", timeout=10), tmp_path / "a", progress,
                       batch_bytes=20_000, batch_count=3, connections=1)
    assert len(summary.problems) == 1 and "7" in summary.problems[0]
    archived = sum(len(b) for uid, b in mailbox[b"INBOX"].items() if uid != 7)
    assert progress.done_messages == progress.total_messages == 9
    assert progress.done_bytes == progress.total_bytes == archived


# ---------------------------------------------------------------- what the CLI prints


def test_off_a_terminal_a_progress_line_comes_every_few_seconds(
        dovecot: DovecotServer, big_user: MailUser, tmp_path: Path) -> None:
    with FaultProxy(dovecot.imaps_port, every(Fault(delay=0.004)), chunk=16384) as proxy:
        args = source_args(dovecot, big_user, tmp_path / "a")
        args[0] = args[0].replace(str(dovecot.imaps_port), str(proxy.port))
        code, out, err = run_cli(["backup", *args, "--compress", "off", "--connections", "1"],
                                 env={"ARCHIVER_PROGRESS_INTERVAL": "0.5"})
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 2, err
    assert " of 6.2 MB (" in lines[0] and "of 2 messages" in lines[0] and "MB/s" in lines[0], lines
    assert "\r" not in err and "\x1b" not in err  # no bar in a log
    assert out == ""
    assert "Next: archiver ls " in err and "--to thunderbird" in err


def test_quiet_silences_the_progress_lines(dovecot: DovecotServer, big_user: MailUser,
                                          tmp_path: Path) -> None:
    code, out, err = backup(dovecot, big_user, tmp_path / "a", "--quiet",
                            env={"ARCHIVER_PROGRESS_INTERVAL": "0.05"})
    assert code == 0 and out == "" and err == "", err


def _spoken(dovecot: DovecotServer, user: MailUser) -> None:
    dovecot.append(user, "INBOX", b"Subject: one\r\n\r\none\r\n")
    dovecot.append(user, "受信箱/講義", b"Subject: two\r\n\r\ntwo\r\n")
    dovecot.append(user, "受信箱/講義", b"Subject: three\r\n\r\nthree\r\n")


PROTOCOL = ("FETCH", "LOGIN", "CAPABILITY", "imapclient", "> ", "< ")


def test_verbose_shows_folder_lines_and_no_protocol(dovecot: DovecotServer,
                                                    mail_user: MailUser, tmp_path: Path) -> None:
    _spoken(dovecot, mail_user)
    code, _, err = backup(dovecot, mail_user, tmp_path / "a", "-v")
    assert code == 0, err
    assert "INBOX: 1 new message (" in err
    assert "受信箱/講義: 2 new messages (" in err  # the decoded name, not &U9dP4TDx-
    assert "round trip" in err  # the engine's informative notes
    assert not [line for line in err.splitlines() if any(p in line for p in PROTOCOL)], err
    assert "1 folder" not in err and "3 new messages (" in err  # grammar of the summary
    code, _, err = backup(dovecot, mail_user, tmp_path / "a", "-v")
    assert "INBOX: nothing new" in err and "0 new messages (0 B)" in err


def test_debug_adds_the_protocol_trace_with_the_password_redacted(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _spoken(dovecot, mail_user)
    args = source_args(dovecot, mail_user, tmp_path / "a")
    code, out, err = run_cli(["--debug", "backup", *args])
    assert code == 0, err
    assert "BODY.PEEK[]" in err and "LOGIN" in err
    assert "LOGIN **REDACTED**" in err  # imapclient redacts the LOGIN line
    assert mail_user.password not in err + out


def test_log_file_gets_the_notes_and_the_full_trace(dovecot: DovecotServer,
                                                    mail_user: MailUser, tmp_path: Path) -> None:
    _spoken(dovecot, mail_user)
    log = tmp_path / "run.log"
    code, _, err = backup(dovecot, mail_user, tmp_path / "a", "--log", str(log))
    assert code == 0, err
    text = log.read_text()
    assert "BODY.PEEK[]" in text and "round trip" in text and "受信箱/講義: 2 new messages" in text
    assert mail_user.password not in text
    assert "BODY.PEEK[]" not in err and "round trip" not in err  # the console stays plain

