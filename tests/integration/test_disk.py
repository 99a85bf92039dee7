"""Disk faults: a full destination and a read-only one give exit 6 and a resumable archive.

Mechanism: a 2 MB tmpfs (``mount -t tmpfs``, needs root).  If it cannot be
mounted, RLIMIT_FSIZE in a subprocess stands in for "full" (EFBIG, treated
like ENOSPC) -- never a silent skip: the mechanism used is printed.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import archived_files, backup, run_cli


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[bool]:
    where.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                         str(where)], capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(server: DovecotServer, user: MailUser, n: int, size: int) -> None:
    rng = random.Random(5)
    with server.session(user) as c:
        for i in range(n):
            body = bytes(rng.choice(b"abcdefghijklmnop") for _ in range(size))
            server.append(user, ("INBOX", "Sent")[i % 2],
                          b"Subject: disk %d\r\n\r\n" % i + body + b"\r\n", client=c)


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_full_destination_exit_6_then_resume_after_space_is_freed(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _fill(dovecot, mail_user, 40, 100_000)  # ~4 MB onto a 2 MB file system
    mnt = tmp_path / "mnt"
    with _tmpfs(mnt, "2m") as mounted:
        if not mounted:
            pytest.fail("tmpfs could not be mounted; run as root (RLIMIT_FSIZE fallback: "
                        "see test_full_destination_via_rlimit_fsize)")
        print("\ndisk-full mechanism: tmpfs size=2m (ENOSPC)")
        dest = mnt / "a"
        # --no-space-check: this test is about a disk that fills up during the run
        code, _, err = backup(dovecot, mail_user, dest, "--quiet", "--no-space-check")
        assert code == 6, err
        assert "full" in _one_line(err)
        code, out, _ = run_cli(["verify", str(dest)])
        assert code == 0 or "extra:" in out, out  # recorded = durable (an unrecorded file may wait)
        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        code, _, err = backup(dovecot, mail_user, dest, "--quiet")
        assert code == 0, err
        assert run_cli(["verify", str(dest)])[0] == 0
        served = Counter(d for m in dovecot.fetch_all(mail_user).values() for _, d, _, _ in m)
        assert Counter(archived_files(dest).values()) == served


def test_full_destination_via_rlimit_fsize(dovecot: DovecotServer, mail_user: MailUser,
                                           tmp_path: Path) -> None:
    """The fallback mechanism, run always: EFBIG from RLIMIT_FSIZE is "full" too."""
    import resource
    import sys

    from tests.helpers import REPO, source_args

    _fill(dovecot, mail_user, 6, 300_000)
    dest = tmp_path / "a"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    print("\ndisk-full mechanism: RLIMIT_FSIZE=200000 (EFBIG)")
    proc = subprocess.run([sys.executable, "-m", "archiver", "backup",
                           *source_args(dovecot, mail_user, dest), "--quiet"],
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          preexec_fn=limit, capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 6, err
    assert "full" in _one_line(err)
    code, _, err = backup(dovecot, mail_user, dest, "--quiet")
    assert code == 0, err
    assert run_cli(["verify", str(dest)])[0] == 0


def test_read_only_destination_exit_6(dovecot: DovecotServer, mail_user: MailUser,
                                      tmp_path: Path) -> None:
    _fill(dovecot, mail_user, 3, 1000)
    mnt = tmp_path / "mnt"
    with _tmpfs(mnt, "5m") as mounted:
        assert mounted, "tmpfs could not be mounted (needs root)"
        dest = mnt / "a"
        assert backup(dovecot, mail_user, dest, "--quiet")[0] == 0
        _fill(dovecot, mail_user, 2, 1000)
        pw = tmp_path / "pw"
        pw.write_text(mail_user.password + "\n")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        print("\nread-only mechanism: mount -o remount,ro")
        code, _, err = run_cli(["backup", f"imaps://{mail_user.name}@127.0.0.1:"
                                f"{dovecot.imaps_port}", str(dest), "--cafile",
                                str(dovecot.cafile), "--password-file", str(pw), "--quiet"])
        assert code == 6, err
        _one_line(err)
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert backup(dovecot, mail_user, dest, "--quiet")[0] == 0
        assert run_cli(["verify", str(dest)])[0] == 0
