"""A server's [ALERT] reaches the user (RFC 3501 7.1), once, cleaned (tests/fakeimap.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from archiver.account import Endpoint, TLSOptions
from archiver.archive import Archive
from archiver.restore.journal import RestoreJournal
from archiver.restore.target import ImapTarget
from archiver.restore.upload import Restore, RestoreOptions
from archiver.sources.alerts import alert_text, printable
from archiver.stores import open_store
from tests.fakeimap import FakeImap, Mailbox
from tests.helpers import run_cli
from tests.integration.restore.test_restore_rewrites import CourierLike


def _msg(i: int) -> bytes:
    return b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n" % (i, i, i)


BOX: Mailbox = {b"INBOX": {1: _msg(1), 2: _msg(2)}, b"Work": {3: _msg(3)}}
HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.01,
                                          max_reconnects=1))


def backup(server: FakeImap, tmp_path: Path, *extra: str) -> tuple[int, Any, str]:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    code, out, err = run_cli(["backup", f"imap://u@{HOST}:{server.port}", str(tmp_path / "d"),
                              "--plaintext", "--password-file", str(pw), "--timeout", "5",
                              *extra])
    assert "Traceback" not in err, err
    return code, json.loads(out) if out.strip() else None, err


def alert_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "server alert" in line]


class GreetingAlert(FakeImap):
    def greeting(self) -> bytes:
        return b"* OK [ALERT] System maintenance at 18:00 JST\r\n"


def test_an_alert_in_the_greeting_is_shown_once_and_kept_in_the_notes(tmp_path: Path) -> None:
    with GreetingAlert(BOX) as server:
        code, summary, err = backup(server, tmp_path, "--json")
    assert code == 0, err
    line = f"server alert from {HOST}: System maintenance at 18:00 JST"
    assert alert_lines(err) == [f"archiver: {line}"]
    assert summary["notes"] == [line]


class MotdAfterGreeting(FakeImap):
    """Cyrus IMAP 3.6 sends its motd file as a second untagged line right after the
    greeting, before any command: imaplib reads it while it asks for CAPABILITY inside
    its constructor, before archiver can watch the lines (tests/integration/test_cyrus.py
    shows it on the real server)."""

    def greeting(self) -> bytes:
        return super().greeting() + b"* OK [ALERT] Mail server moves on 2004-03-31\r\n"


def test_an_alert_right_after_the_greeting_is_shown_too(tmp_path: Path) -> None:
    with MotdAfterGreeting(BOX) as server:
        code, summary, err = backup(server, tmp_path, "--json")
    assert code == 0, err
    line = f"server alert from {HOST}: Mail server moves on 2004-03-31"
    assert alert_lines(err) == [f"archiver: {line}"]
    assert summary["notes"] == [line]


def test_an_alert_is_shown_with_quiet_too(tmp_path: Path) -> None:
    with GreetingAlert(BOX) as server:
        code, _, err = backup(server, tmp_path, "--quiet")
    assert code == 0, err
    assert alert_lines(err) == [f"archiver: server alert from {HOST}: System maintenance at "
                                "18:00 JST"]


class LoginAlerts(FakeImap):
    def reply_login(self, tag: bytes, rest: bytes) -> bytes:
        return (b"* OK [ALERT] Your password expires in 3 days\r\n"
                + tag + b" OK [ALERT] Mailbox 95% full\r\n")


def test_alerts_after_login_untagged_and_tagged_are_shown(tmp_path: Path) -> None:
    with LoginAlerts(BOX) as server:
        code, summary, err = backup(server, tmp_path, "--json")
    assert code == 0, err
    assert summary["notes"] == [f"server alert from {HOST}: Your password expires in 3 days",
                                f"server alert from {HOST}: Mailbox 95% full"]
    assert len(alert_lines(err)) == 2


class PasswordExpired(FakeImap):
    def reply_login(self, tag: bytes, rest: bytes) -> bytes:
        return tag + b" NO [ALERT] Password expired: change it at https://id.example\r\n"


def test_a_login_refused_with_an_alert_says_it_in_its_one_line_error(tmp_path: Path) -> None:
    with PasswordExpired(BOX) as server:
        code, _, err = backup(server, tmp_path, "--quiet")
    assert code == 4, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "refused the login for user 'u'" in lines[0]
    assert "Password expired: change it at https://id.example" in lines[0]


class ExamineAlert(FakeImap):
    def reply_examine(self, tag: bytes, rest: bytes) -> bytes:
        return (b"* NO [ALERT] Quota: \x1b[2J98% used\x07\r\n"
                + super().reply_examine(tag, rest))


def test_an_alert_mid_run_is_shown_once_and_control_characters_are_not_printed(
        tmp_path: Path) -> None:
    with ExamineAlert(BOX) as server:  # two folders: the alert comes twice
        code, summary, err = backup(server, tmp_path, "--json")
    assert code == 0, err
    assert "\x1b" not in err and "\x07" not in err
    assert alert_lines(err) == [f"archiver: server alert from {HOST}: Quota: ?[2J98% used?"]
    assert summary["notes"] == [f"server alert from {HOST}: Quota: ?[2J98% used?"]


class AlertingTarget(CourierLike):
    """A restore target that warns while the messages are APPENDed (read by the writer)."""

    def handlers(self) -> dict[bytes, Callable[[bytes, bytes], bytes]]:
        handlers = super().handlers()
        append = handlers[b"APPEND"]
        return {**handlers,
                b"APPEND": lambda t, r: b"* OK [ALERT] Target quota almost full\r\n" + append(t, r)}


def test_a_restore_targets_alert_during_append_is_in_the_restore_notes(tmp_path: Path) -> None:
    with GreetingAlert({b"INBOX": {1: _msg(1)}}) as old:
        code, _, err = backup(old, tmp_path, "--quiet")
    assert code == 0, err
    dest = tmp_path / "d"
    with AlertingTarget() as target:
        ep = Endpoint("imap", HOST, target.port, "u", TLSOptions(plaintext=True))
        sink = ImapTarget(ep, "pw", timeout=5)
        shown: list[str] = []
        sink.alert_watch.on_alert = shown.append
        sink.connect()
        archive = Archive.open_existing(dest)
        journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user).open(True)
        try:
            summary = Restore(archive, open_store(dest, archive.format), sink, journal,
                              RestoreOptions()).run()
        finally:
            journal.close()
            sink.close()
            archive.close()
    assert summary.status == "ok" and summary.uploaded == 1
    assert shown == [f"server alert from {HOST}: Target quota almost full"]
    assert summary.notes == shown


def test_alert_text_reads_every_form_and_nothing_else() -> None:
    assert alert_text(b"* OK [ALERT] a b\r\n") == "a b"
    assert alert_text(b"* NO [ALERT] quota") == "quota"
    assert alert_text(b"a12 NO [ALERT] Password expired\r\n") == "Password expired"
    assert alert_text(b"* ok [alert] lower case") == "lower case"
    assert alert_text(b"* BYE [ALERT] going down") == "going down"
    assert alert_text(b"* OK [ALERT]\r\n") == "(no text)"
    assert alert_text(b"* OK [READ-ONLY] fine") is None
    assert alert_text(b"* 3 FETCH (UID 4 BODY[] {12}\r\n") is None
    assert alert_text(b"+ [ALERT] continuation") is None


def test_printable_cleans_control_and_bidi_characters_and_bounds_the_length() -> None:
    assert printable(b"a\x1b[31mred\x00\r\nb") == "a?[31mred???b"
    assert printable("evil\u202etxt".encode()) == "evil?txt"
    assert printable(b"  spaced \t out ") == "spaced ? out"
    assert printable(b"\xff\xfe ok") == "\ufffd\ufffd ok"
    assert len(printable(b"x" * 100_000)) == 500
