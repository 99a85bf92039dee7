"""The mbox store: Thunderbird-style layout, mboxrd, exact bytes via offsets, crash repair."""

from __future__ import annotations

import json
import mailbox
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions, run_backup
from archiver.sources.imap import ImapSource
from archiver.stores.mbox import MboxStore, mbox_path, quote, unquote
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, backup_process, index_records, run_cli


@given(st.lists(st.sampled_from([b"From ", b">From ", b">>From x", b"\r\n", b"\n", b"\r",
                                 b"text", b">", b"From", b" "]), max_size=40))
def test_mboxrd_quoting_round_trips(parts: list[bytes]) -> None:
    data = b"".join(parts)
    quoted = quote(data)
    assert unquote(quoted) == data
    for line in quoted.split(b"\n"):
        assert not line.startswith(b"From ")


def test_thunderbird_layout_and_reserved_suffixes() -> None:
    assert mbox_path(("INBOX",)) == "Inbox"  # Thunderbird's name for it
    assert mbox_path(("INBOX", "x")) == "Inbox.sbd/x"
    assert mbox_path(("a", "INBOX")) == "a.sbd/INBOX"
    assert mbox_path(("受信箱", "講義")) == "受信箱.sbd/講義"
    assert mbox_path(("a.sbd",)) == "a%2Esbd"
    assert mbox_path(("x", "y.msf")) == "x.sbd/y%2Emsf"


def _messages_from_mbox(dest: Path, name: str) -> list[bytes]:
    arc = Archive.open_existing(dest)
    store = MboxStore(dest)
    entries = sorted(arc.state().folders[name].messages.values(), key=lambda e: e.offset or 0)
    return [store.read_message(e) for e in entries]


def _mailutils_count(path: Path) -> int:
    out = subprocess.run(["messages", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_mbox_backup_is_exact_and_readable_by_other_programs(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    user = loaded_user.user
    before = dovecot.fingerprint(user)
    dest = tmp_path / "a"
    code, out, err = backup(dovecot, user, dest, "--format", "mbox", "--json")
    assert code == 0, err
    served = dovecot.fetch_all(user)
    arc = Archive.open_existing(dest)
    for folder, msgs in served.items():
        entry = arc.state().folders[folder]
        assert Counter(_messages_from_mbox(dest, folder)) == Counter(m[1] for m in msgs)
        file = dest / entry.path
        assert file.is_file()
        assert len(mailbox.mbox(str(file), create=False)) == len(msgs), folder
        if shutil.which("messages"):
            assert _mailutils_count(file) == len(msgs), folder
    assert (dest / "受信箱.sbd" / "講義").is_file()
    assert dovecot.fingerprint(user) == before
    assert run_cli(["verify", str(dest)])[0] == 0
    again = json.loads(backup(dovecot, user, dest, "--format", "mbox", "--json")[1])
    assert again["new"] == 0


def test_mbox_flags_live_in_the_index_and_formats_do_not_mix(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    uid = dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nFrom here\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    size = (dest / "Inbox").stat().st_size
    dovecot.set_flags(mail_user, "INBOX", uid, ["\\Seen", "$Junk"])
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    assert (dest / "Inbox").stat().st_size == size
    flags = [r for r in index_records(dest) if r["type"] == "flags"]
    assert flags and flags[-1]["flags"] == ["\\Seen"] and flags[-1]["keywords"] == ["$Junk"]
    assert b"\n>From here" in (dest / "Inbox").read_bytes()
    code, _, err = backup(dovecot, mail_user, dest, "--format", "maildir")
    assert code == 6 and "mbox format" in err and "leave out --format" in err
    assert not (dest / "INBOX" / "cur").exists()


def test_rerun_without_format_keeps_the_archives_mbox_format(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: one\r\n\r\none\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()
              and ".archiver" not in p.parts}
    code, out, err = backup(dovecot, mail_user, dest, "--json")  # no --format
    assert code == 0, err
    assert json.loads(out)["new"] == 0
    after = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()
             and ".archiver" not in p.parts}
    assert after == before  # no Maildir appeared beside the mbox files
    dovecot.append(mail_user, "INBOX", b"Subject: two\r\n\r\ntwo\r\n")
    code, out, err = backup(dovecot, mail_user, dest, "--json")
    assert code == 0 and json.loads(out)["new"] == 1, err
    assert Counter(_messages_from_mbox(dest, "INBOX")) == Counter(
        m[1] for m in dovecot.fetch_all(mail_user)["INBOX"])
    assert not (dest / "INBOX").is_dir()


def test_new_dest_without_format_is_maildir(dovecot: DovecotServer, mail_user: MailUser,
                                            tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: one\r\n\r\none\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    assert Archive.open_existing(dest).format == "maildir"
    assert (dest / "INBOX" / "cur").is_dir()


def test_mbox_crash_before_index_frame_leaves_no_duplicate_or_torn_message(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    with dovecot.session(mail_user) as c:
        for i in range(40):
            dovecot.append(mail_user, "INBOX", f"Subject: {i}\r\n\r\nFrom {i}\r\n".encode(),
                           client=c)
    dest = tmp_path / "a"
    proc = backup_process(dovecot, mail_user, dest, "--format", "mbox",
                          env={"ARCHIVER_TEST_CRASH_AFTER": "3"})
    assert proc.wait(60) == 137
    assert run_cli(["verify", str(dest)])[0] == 1  # unrecorded bytes at the end
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    served = Counter(m[1] for m in dovecot.fetch_all(mail_user)["INBOX"])
    assert Counter(_messages_from_mbox(dest, "INBOX")) == served
    assert len(mailbox.mbox(str(dest / "Inbox"), create=False)) == 40
    assert run_cli(["verify", str(dest)])[0] == 0


def test_mbox_kill_9_loop(dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
                          stress: bool) -> None:
    with dovecot.session(mail_user) as c:
        for i in range(120):
            dovecot.append(mail_user, ("INBOX", "Sent")[i % 2],
                           f"Subject: {i}\r\n\r\n{'z' * (i * 97 % 9000)}\r\n".encode(), client=c)
    dest = tmp_path / "a"
    rng = random.Random(77)
    for _ in range(20 if stress else 5):
        proc = backup_process(dovecot, mail_user, dest, "--format", "mbox", "--quiet")
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    assert run_cli(["verify", str(dest)])[0] == 0
    for folder, msgs in dovecot.fetch_all(mail_user).items():
        assert Counter(_messages_from_mbox(dest, folder)) == Counter(m[1] for m in msgs)


@pytest.mark.parametrize("fmt", ["mbox", "maildir"])
def test_streamed_messages_round_trip(dovecot: DovecotServer, mail_user: MailUser,
                                      tmp_path: Path, fmt: str) -> None:
    """Messages above the streaming threshold go through a spool file, in both stores."""
    big = b"Subject: big\r\n\r\n" + b"From line\r\n>From quoted\r\n" * 20_000 + b"no newline"
    dovecot.append(mail_user, "INBOX", big)
    dovecot.append(mail_user, "INBOX", b"Subject: small\r\n\r\nsmall\r\n")
    ep = parse_endpoint(f"imaps://{mail_user.name}@127.0.0.1:{dovecot.imaps_port}",
                        tls=TLSOptions(cafile=dovecot.cafile))
    dest = tmp_path / "a"
    arc = Archive.create_or_open(dest, fmt, {"protocol": "imap", "host": "127.0.0.1",
                                             "user": mail_user.name})
    from archiver.stores import open_store

    summary = run_backup(ImapSource(ep, mail_user.password), arc, open_store(dest, fmt),
                         BackupOptions(stream_threshold=50_000, stream_chunk=30_000))
    arc.close()
    assert summary.status == "ok" and summary.new == 2
    served = Counter(m[1] for m in dovecot.fetch_all(mail_user)["INBOX"])
    store = open_store(dest, fmt)
    got = Counter(store.read_message(e)
                  for e in Archive.open_existing(dest).state().folders["INBOX"].messages.values())
    assert got == served
    assert run_cli(["verify", str(dest)])[0] == 0
