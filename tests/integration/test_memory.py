"""A 64 MB message is streamed, not held: peak RSS stays far below its size.

The engine fetches messages above 16 MB in 4 MB ``BODY.PEEK[]<offset.length>``
pieces straight into the store's tmp/ file; restore and export read it back
from the archive (Maildir file, or mbox unquoted on the fly) in 1 MiB chunks.
A separate process runs the CLI and reports its own peak RSS, compared with
the same process doing the same to a one-message archive.
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
from archiver.stores.mbox import unquote
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import (
    REPO,
    archived_files,
    backup,
    index_records,
    password_file,
    run_cli,
    source_args,
)
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
    return _cli_peak_rss_kib(["backup", *source_args(server, user, dest), "--quiet"],
                             dest.parent / f"{dest.name}.rss")


def _cli_peak_rss_kib(args: list[str], out: Path) -> int:
    """Run ``archiver ARGS`` in a fresh process; its peak RSS in KiB."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(out), *args],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          timeout=300)
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
    """The line dies between two partial fetches' bytes: the message resumes after the
    reconnect (tests/integration/test_resume.py measures how little is fetched again)."""
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


# ---------------------------------------------------------------- restore and export


def _from_heavy(size: int) -> bytes:
    """About ``size`` bytes of CRLF text in which every 7th line starts ``From `` or
    ``>From ``: in an mbox archive it is quoted all through, and unquoted in chunks."""
    head = (b"From: heavy@example.org\r\nTo: me@example.org\r\nSubject: From lines\r\n"
            b"Message-ID: <heavy@example.org>\r\n\r\n")
    rng = random.Random(7)
    lines = [head]
    total = len(head)
    n = 0
    while total < size:
        n += 1
        text = rng.randbytes(40).hex().encode()
        line = (b">" * (n % 3) + b"From " + text if n % 7 == 0 else text) + b"\r\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)


@dataclass
class Archived:
    dest: dict[str, Path]  # "maildir"/"mbox" -> an archive of the one big message
    small: dict[str, Path]  # the same for a one-small-message mailbox (the baseline)
    served: bytes


@pytest.fixture(scope="module")
def archived(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Archived:
    user, small = dovecot.new_user("heavy"), dovecot.new_user("light")
    dovecot.write_maildir_file(user, "INBOX", _from_heavy(BIG))
    dovecot.write_maildir_file(small, "INBOX", b"Subject: small\r\n\r\nFrom me\r\n")
    base = tmp_path_factory.mktemp("sinks")
    dest, light = {}, {}
    for fmt in ("maildir", "mbox"):
        dest[fmt], light[fmt] = base / f"heavy-{fmt}", base / f"light-{fmt}"
        assert backup(dovecot, user, dest[fmt], "--format", fmt)[0] == 0
        assert backup(dovecot, small, light[fmt], "--format", fmt)[0] == 0
    served = dovecot.fetch_all(user)["INBOX"][0][1]
    return Archived(dest, light, served)


def _restore_peak(archive: Path, server: DovecotServer, user: MailUser, where: Path) -> int:
    pw = password_file(user, where / f".pw-{user.name}")
    return _cli_peak_rss_kib(["restore", str(archive),
                              f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
                              "--target-cafile", str(server.cafile),
                              "--target-password-file", str(pw), "--quiet"],
                             where / f"{user.name}.rss") * 1024


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_restore_of_a_64mb_message_streams_with_bounded_memory(
        archived: Archived, dovecot_new: DovecotServer, tmp_path: Path, fmt: str) -> None:
    assert len(archived.served) > 60 * MB
    baseline = _restore_peak(archived.small[fmt], dovecot_new, dovecot_new.new_user(), tmp_path)
    user = dovecot_new.new_user()
    peak = _restore_peak(archived.dest[fmt], dovecot_new, user, tmp_path)
    extra = peak - baseline
    print(f"restore ({fmt}) peak RSS: baseline {baseline / MB:.1f} MB, 64 MB message "
          f"{peak / MB:.1f} MB")
    # 1 MiB chunks: the chunk held back, the next one, mboxrd's copies, TLS buffers
    # (measured: maildir +3 MB, mbox +9 MB; reading the message whole: +64 and +221 MB)
    assert extra < 24 * MB, (f"peak RSS {peak / MB:.0f} MB = baseline {baseline / MB:.0f} MB "
                             f"+ {extra / MB:.0f} MB for a {len(archived.served) / MB:.0f} MB "
                             "message")
    assert [d for _, d, _, _ in dovecot_new.fetch_all(user)["INBOX"]] == [archived.served]


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_export_of_a_64mb_message_streams_with_bounded_memory(
        archived: Archived, tmp_path: Path, fmt: str) -> None:
    def export_peak(archive: Path, out: Path) -> int:
        return _cli_peak_rss_kib(["export", str(archive), str(out), "--to", "thunderbird",
                                  "--quiet"], tmp_path / f"{out.name}.rss") * 1024

    baseline = export_peak(archived.small[fmt], tmp_path / "light")
    peak = export_peak(archived.dest[fmt], tmp_path / "heavy")
    extra = peak - baseline
    print(f"export ({fmt}) peak RSS: baseline {baseline / MB:.1f} MB, 64 MB message "
          f"{peak / MB:.1f} MB")
    # chunks, their quoted copies, the output buffer (measured: +10 and +13 MB; reading
    # the message whole: +262 and +345 MB)
    assert extra < 24 * MB, (f"peak RSS {peak / MB:.0f} MB = baseline {baseline / MB:.0f} MB "
                             f"+ {extra / MB:.0f} MB for a {len(archived.served) / MB:.0f} MB "
                             "message")
    [inbox] = (tmp_path / "heavy").glob("*.sbd/INBOX")  # inside the wrapping folder
    exported = inbox.read_bytes()
    from_line, _, rest = exported.partition(b"\n")
    assert from_line.startswith(b"From - ")
    mozilla = rest.split(b"\r\n", 3)
    assert [h.split(b":")[0] for h in mozilla[:3]] == [
        b"X-Mozilla-Status", b"X-Mozilla-Status2", b"X-Mozilla-Keys"]
    assert mozilla[3].endswith(b"\r\n\n") and unquote(mozilla[3][:-1]) == archived.served
