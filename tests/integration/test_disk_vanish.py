"""A destination that disappears mid-backup: one clear line, exit 6 (or 3), then a rerun completes.

The backup runs in-process, slowed by tests/proxy.py (5 ms per 2 KB from the
server) so that it lasts a few seconds; another thread renames DEST away (an
unmounted disk, a moved folder) or deletes it while messages are being
written.  The run must end with exit 6 (destination) or 3 (partial) and one
line per problem, never a traceback.  Then, with the directory put back (or
from scratch after the deletion), a rerun must complete and ``archiver
verify`` must be clean with every served message archived exactly once.
"""

from __future__ import annotations

import random
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import archived_files, backup, password_file, run_cli
from tests.proxy import Fault, FaultProxy


def _fill(server: DovecotServer, user: MailUser, n: int, size: int) -> None:
    rng = random.Random(6)
    with server.session(user) as c:
        for i in range(n):
            body = b"".join(bytes(rng.choice(b"abcdefghijklmnop") for _ in range(70)) + b"\r\n"
                            for _ in range(size // 72))
            server.append(user, ("INBOX", "Sent")[i % 2],
                          b"Subject: vanish %d\r\nMessage-ID: <v%d@t>\r\n\r\n" % (i, i) + body,
                          client=c)


def _slow_backup(server: DovecotServer, user: MailUser, dest: Path, vanish: threading.Thread
                 ) -> tuple[int, str]:
    pw = password_file(user, dest.parent / ".pw")
    with FaultProxy(server.imaps_port, lambda _: Fault(delay=0.005), chunk=2048) as proxy:
        vanish.start()
        code, _, err = run_cli(["backup", f"imaps://{user.name}@127.0.0.1:{proxy.port}",
                                str(dest), "--cafile", str(server.cafile), "--password-file",
                                str(pw), "--timeout", "10", "--quiet"])
        vanish.join(30)
    return code, err


def _wait_for_messages(dest: Path, count: int, done: threading.Event) -> None:
    """Wait (bounded) until at least ``count`` message files are in DEST."""
    for _ in range(600):
        if done.wait(0.02):
            return
        try:
            if len(archived_files(dest)) >= count:
                return
        except OSError:
            pass


def _check_clean_end(code: int, err: str) -> str:
    assert "Traceback" not in err, err
    assert code in (6, 3), f"exit {code}: {err}"
    lines = [x for x in err.splitlines() if x.strip()]
    if code == 6:
        assert len(lines) == 1 and lines[0].startswith("archiver: error:"), err
        assert "disappeared" in lines[0] or "No such file" in lines[0], err
    assert lines, err
    return lines[-1]


def _check_complete(server: DovecotServer, user: MailUser, dest: Path) -> None:
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 0, out
    served = Counter(d for m in server.fetch_all(user).values() for _, d, _, _ in m)
    assert Counter(archived_files(dest).values()) == served


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_destination_vanishes_mid_backup(dovecot: DovecotServer, mail_user: MailUser,
                                         tmp_path: Path, how: str) -> None:
    _fill(dovecot, mail_user, 40, 40_000)  # ~1.6 MB: about 4 s through the slowed proxy
    dest = tmp_path / "a"
    gone = tmp_path / "a.gone"
    done = threading.Event()
    moved: list[bool] = []

    def vanish() -> None:
        _wait_for_messages(dest, 5, done)
        if done.is_set():
            return
        if how == "renamed":
            dest.rename(gone)
        else:
            shutil.rmtree(dest)
        moved.append(True)

    try:
        code, err = _slow_backup(dovecot, mail_user, dest, threading.Thread(target=vanish))
    finally:
        done.set()
    assert moved, f"the backup ended before DEST could be taken away: {err}"
    line = _check_clean_end(code, err)
    print(f"\nvanishing destination ({how}): exit {code}: {line}")
    if how == "renamed":
        if dest.exists():  # the run may have recreated an empty DEST: the old one wins
            shutil.rmtree(dest)
        gone.rename(dest)
    code, _, err = backup(dovecot, mail_user, dest, "--quiet")
    assert code == 0, err
    _check_complete(dovecot, mail_user, dest)
