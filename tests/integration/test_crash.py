"""Durable before recorded: a kill -9 at any point, then a rerun, gives a complete archive."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import archived_files, backup, backup_process, index_records, run_cli


def _fill(server: DovecotServer, user: MailUser, count: int) -> None:
    with server.session(user) as c:
        for i in range(count):
            folder = ("INBOX", "Sent", "受信箱/講義")[i % 3]
            body = (f"Subject: message {i}\r\nMessage-ID: <{i}@t>\r\n\r\n" + "x" * (i * 37 % 5000)
                    + "\r\n").encode()
            server.append(user, folder, body, client=c)


def _assert_complete(server: DovecotServer, user: MailUser, dest: Path) -> None:
    served = server.fetch_all(user)
    expected = Counter(data for msgs in served.values() for _, data, _, _ in msgs)
    stored = Counter(archived_files(dest).values())
    assert stored == expected, "archive differs from the server (missing or duplicated)"
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 0, out
    keys = [(r["folder"], r["uidvalidity"], r["uid"]) for r in index_records(dest)
            if r["type"] == "msg"]
    assert len(keys) == len(set(keys)), "a message was recorded twice"


@pytest.mark.parametrize("crash_after", [1, 7, 40])
def test_crash_after_files_before_index_frame_then_rerun(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path, crash_after: int) -> None:
    """Files durable, index frame not written (the worst instant): the rerun repairs it."""
    _fill(dovecot, mail_user, 60)
    dest = tmp_path / "a"
    code, _, _ = (0, "", "")
    proc = backup_process(dovecot, mail_user, dest,
                          env={"ARCHIVER_TEST_CRASH_AFTER": str(crash_after)})
    code = proc.wait(60)
    assert code == 137, proc.stderr.read() if proc.stderr else code
    assert len(archived_files(dest)) >= crash_after
    code, _, err = backup(dovecot, mail_user, dest)
    assert code == 0, err
    _assert_complete(dovecot, mail_user, dest)


def test_kill_9_at_random_instants_then_rerun(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path, request) -> None:
    _fill(dovecot, mail_user, 150)
    dest = tmp_path / "a"
    rng = random.Random(1234)
    rounds = 20 if request.config.getoption("--stress", default=False) else 5
    for _ in range(rounds):
        proc = backup_process(dovecot, mail_user, dest, "--quiet")
        time.sleep(rng.uniform(0.05, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    code, _, err = backup(dovecot, mail_user, dest)
    assert code == 0, err
    _assert_complete(dovecot, mail_user, dest)


def test_torn_index_tail_is_repaired_by_the_next_run(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _fill(dovecot, mail_user, 10)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    index = dest / ".archiver" / "index.jsonl.zst"
    data = index.read_bytes()
    index.write_bytes(data + data[:25])  # half a frame, as a crash mid-append leaves it
    assert run_cli(["verify", str(dest)])[0] == 1
    (dest / ".archiver" / "folders.json").unlink()
    assert backup(dovecot, mail_user, dest)[0] == 0
    _assert_complete(dovecot, mail_user, dest)
