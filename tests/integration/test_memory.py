"""A 64 MB message is streamed, not held: peak RSS stays far below its size.

The engine fetches messages above 16 MB in 4 MB ``BODY.PEEK[]<offset.length>``
pieces straight into the store's tmp/ file.  A separate process runs the CLI
and reports its own peak RSS (``ru_maxrss``), compared with the same process
backing up a one-message mailbox.
"""

from __future__ import annotations

import base64
import functools
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import archiver.engine
from archiver.sources.imap import ImapSource
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, archived_files, index_records, run_cli, source_args
from tests.proxy import Fault, FaultProxy, first

MB = 1 << 20
BIG = 64 * MB

# Runs the CLI, then writes this process's peak RSS in KiB to argv[1]: VmHWM,
# the high-water mark of this process's own memory.  (ru_maxrss is no good
# here: Linux carries the forking parent's peak -- pytest holding the 64 MB
# message -- over fork and exec into the child's ru_maxrss.)
_WRAPPER = (
    "import resource, sys\n"
    "from archiver.cli import run\n"
    "code = run(sys.argv[2:])\n"
    "try:\n"
    "    with open('/proc/self/status') as f:\n"
    "        kib = next(int(x.split()[1]) for x in f if x.startswith('VmHWM:'))\n"
    "except (OSError, StopIteration):\n"
    "    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(kib))\n"
    "sys.exit(code)\n"
)


def _big_message(size: int) -> bytes:
    """A MIME message with one base64 attachment, about ``size`` bytes, CRLF lines."""
    head = (b"From: big@example.org\r\nTo: me@example.org\r\nSubject: a big attachment\r\n"
            b"Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
            b"--b0\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--b0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n')
    tail = b"--b0--\r\n"
    raw = random.Random(64).randbytes((size - len(head) - len(tail)) * 57 // 78)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return head + body + tail


@dataclass
class Big:
    server: DovecotServer
    user: MailUser  # one ~64 MB message in INBOX
    small: MailUser  # one small message in INBOX (the baseline)
    served: bytes  # the big message as the server serves it
    fingerprint: str


@pytest.fixture(scope="module")
def big(dovecot: DovecotServer) -> Big:
    user = dovecot.new_user("big")
    message = _big_message(BIG)
    # Written straight into the Maildir: an APPEND of 64 MB is slow and the
    # CRLF message is served exactly as written (no NUL bytes).
    dovecot.write_maildir_file(user, "INBOX", message)
    small = dovecot.new_user("small")
    dovecot.write_maildir_file(small, "INBOX", b"Subject: small\r\n\r\nhello\r\n")
    served = dovecot.fetch_all(user)["INBOX"]
    assert len(served) == 1
    return Big(dovecot, user, small, served[0][1], dovecot.fingerprint(user))


def _peak_rss_kib(server: DovecotServer, user: MailUser, dest: Path) -> int:
    out = dest.parent / f"{dest.name}.rss"
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(out), "backup",
         *source_args(server, user, dest), "--quiet"],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    return int(out.read_text())


def test_big_message_is_streamed_with_bounded_memory(big: Big, tmp_path: Path) -> None:
    assert len(big.served) > 60 * MB
    baseline = _peak_rss_kib(big.server, big.small, tmp_path / "small") * 1024
    peak = _peak_rss_kib(big.server, big.user, tmp_path / "big") * 1024
    extra = peak - baseline
    print(f"peak RSS: baseline {baseline / MB:.1f} MB, 64 MB message {peak / MB:.1f} MB")
    # 4 MB pieces: the piece, imaplib's read buffer and the parser's copy, a
    # few MB of TLS buffers -- far below the 64 MB message (measured: +8 MB).
    assert extra < 24 * MB, (f"peak RSS {peak / MB:.0f} MB = baseline {baseline / MB:.0f} MB "
                             f"+ {extra / MB:.0f} MB for a {len(big.served) / MB:.0f} MB message")
    files = archived_files(tmp_path / "big")
    assert list(files.values()) == [big.served]
    assert run_cli(["verify", str(tmp_path / "big")])[0] == 0
    assert big.server.fingerprint(big.user) == big.fingerprint


def test_cut_in_the_middle_of_a_streamed_message(big: Big, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The line dies between two partial fetches' bytes: the message is fetched again whole."""
    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.05))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.05)
    dest = tmp_path / "a"
    with FaultProxy(big.server.imaps_port, first(Fault(cut_after=30 * MB + 12345))) as proxy:
        via = type("Via", (), {"imaps_port": proxy.port, "cafile": big.server.cafile})
        code, _, err = run_cli(["backup", *source_args(via, big.user, dest),  # type: ignore[arg-type]
                                "--quiet"])
        assert proxy.connections[0].ended == "cut"
    assert code == 0, err
    assert list(archived_files(dest).values()) == [big.served]
    assert not any((dest / "INBOX" / "tmp").iterdir()), "a partial spool file was left behind"
    assert run_cli(["verify", str(dest)])[0] == 0
    msgs = [r for r in index_records(dest) if r["type"] == "msg"]
    assert Counter((r["uidvalidity"], r["uid"]) for r in msgs).most_common(1)[0][1] == 1
    assert big.server.fingerprint(big.user) == big.fingerprint
