"""POP3S source: the INBOX archived without touching the server, incremental by UIDL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from archiver.sources.pop3 import _Reader
from archiver.stores.base import norm_hash
from tests.dovecot import DovecotServer, MailUser
from tests.fakepop3 import fake_pop3, fake_pop3_args, pop3_mailbox
from tests.helpers import (
    REPO,
    archived_files,
    index_records,
    password_file,
    run_cli,
)


def pop3_args(server: DovecotServer, user: MailUser, dest: Path) -> list[str]:
    pw = password_file(user, dest.parent / ".pw")
    return ["backup", f"pop3s://{user.name}@127.0.0.1:{server.pop3s_port}", str(dest),
            "--cafile", str(server.cafile), "--password-file", str(pw), "--timeout", "20"]


def imap_args(server: DovecotServer, user: MailUser, dest: Path) -> list[str]:
    pw = password_file(user, dest.parent / ".pw")
    return ["backup", f"imaps://{user.name}@127.0.0.1:{server.imaps_port}", str(dest),
            "--cafile", str(server.cafile), "--password-file", str(pw), "--timeout", "20"]


def _inbox_norms(server: DovecotServer, user: MailUser) -> Counter[str]:
    return Counter(norm_hash(data) for _, data, _, _ in server.fetch_all(user)["INBOX"])


def test_pop3_inbox_equals_the_imap_view_and_server_is_untouched(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    user = loaded_user.user
    before = dovecot.fingerprint(user)
    dest = tmp_path / "a"
    code, out, err = run_cli(pop3_args(dovecot, user, dest) + ["--json"])
    assert code == 0, err
    stored = archived_files(dest)
    assert all(p.startswith("INBOX/") for p in stored)
    assert Counter(norm_hash(d) for d in stored.values()) == _inbox_norms(dovecot, user)
    assert dovecot.fingerprint(user) == before, "POP3 backup changed the server's flags"
    recs = [r for r in index_records(dest) if r["type"] == "msg"]
    assert all(r["uidl"] and r["flags_known"] is False and "uid" not in r for r in recs)
    assert any(r["internaldate_source"] == "date" for r in recs)
    assert run_cli(["verify", str(dest)])[0] == 0
    again = json.loads(run_cli(pop3_args(dovecot, user, dest) + ["--json"])[1])
    assert again["new"] == 0 and again["already"] == len(recs)


def test_pop3_picks_up_new_mail_and_keeps_duplicates(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    twin = b"Subject: twin\r\nDate: Mon, 1 Mar 2004 10:00:00 +0900\r\n\r\nsame\r\n"
    dovecot.append(mail_user, "INBOX", twin)
    dest = tmp_path / "a"
    assert run_cli(pop3_args(dovecot, mail_user, dest))[0] == 0
    dovecot.append(mail_user, "INBOX", twin)
    dovecot.append(mail_user, "INBOX", b"Subject: no newline at the end")
    code, out, err = run_cli(pop3_args(dovecot, mail_user, dest) + ["--json"])
    assert code == 0, err
    assert json.loads(out)["new"] == 2
    files = list(archived_files(dest).values())
    assert files.count(twin) == 2 and len(files) == 3
    mtimes = {p.stat().st_mtime for p in (dest / "INBOX" / "cur").iterdir()}
    assert 1078102800.0 in mtimes  # the Date header, since POP3 has no INTERNALDATE


def test_imap_and_pop3_into_one_dest_do_not_duplicate(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    user = loaded_user.user
    for first, second in ((pop3_args, imap_args), (imap_args, pop3_args)):
        dest = tmp_path / first.__name__
        assert run_cli(first(dovecot, user, dest))[0] == 0
        code, _, err = run_cli(second(dovecot, user, dest))
        assert code == 0, err
        inbox = [d for p, d in archived_files(dest).items() if p.startswith("INBOX/")]
        assert Counter(norm_hash(d) for d in inbox) == _inbox_norms(dovecot, user), first
        served = Counter(d for _, d, _, _ in dovecot.fetch_all(user)["INBOX"])
        if first is pop3_args:  # IMAP came second: its exact bytes and flags win
            assert Counter(inbox) == served
        assert run_cli(["verify", str(dest)])[0] == 0


def test_pop3_crash_before_index_then_rerun(dovecot: DovecotServer, mail_user: MailUser,
                                            tmp_path: Path) -> None:
    for i in range(30):
        dovecot.append(mail_user, "INBOX", f"Subject: {i}\r\n\r\n{'y' * i * 50}\r\n".encode())
    dest = tmp_path / "a"
    proc = subprocess.run([sys.executable, "-m", "archiver", *pop3_args(dovecot, mail_user, dest)],
                          env={**os.environ, "PYTHONPATH": str(REPO),
                               "ARCHIVER_TEST_CRASH_AFTER": "5"},
                          capture_output=True, timeout=60)
    assert proc.returncode == 137, proc.stderr
    code, _, err = run_cli(pop3_args(dovecot, mail_user, dest))
    assert code == 0, err
    assert len(archived_files(dest)) == 30
    assert run_cli(["verify", str(dest)])[0] == 0


def test_pop3_wrong_password_exits_4(dovecot: DovecotServer, mail_user: MailUser,
                                     tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    code, _, err = run_cli(["backup", f"pop3s://{mail_user.name}@127.0.0.1:{dovecot.pop3s_port}",
                            str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(pw)])
    assert code == 4 and "refused the login" in err and "Traceback" not in err


def test_pop3_stls_is_used_on_pop3_urls(dovecot: DovecotServer, mail_user: MailUser,
                                        tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    pw = password_file(mail_user, tmp_path)
    code, _, err = run_cli(["backup", f"pop3://{mail_user.name}@127.0.0.1:{dovecot.pop3_port}",
                            str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(pw), "--quiet"])
    assert code == 0, err


# ---------------------------------------------------------------- scripted servers


def test_pop3_without_stls_is_refused(tmp_path: Path) -> None:
    srv = fake_pop3(pop3_mailbox, b"USER\r\nUIDL\r\nTOP\r\n")
    code, _, err = run_cli(fake_pop3_args(srv, tmp_path))
    srv.close()
    assert code == 5 and "STLS" in err and len(err.strip().splitlines()) == 1


def test_pop3_without_top_needs_allow_seen(tmp_path: Path) -> None:
    """No TOP means RETR, which marks mail read: refused unless the user allows it."""
    def no_top(line: bytes) -> bytes:
        if line.upper().startswith(b"TOP"):
            return b"-ERR unknown command\r\n"
        return pop3_mailbox(line)

    srv = fake_pop3(no_top, b"USER\r\nUIDL\r\n")
    code, _, err = run_cli(fake_pop3_args(srv, tmp_path) + ["--plaintext"])
    srv.close()
    assert code == 2 and "--allow-seen" in err
    srv = fake_pop3(no_top, b"USER\r\nUIDL\r\n")
    code, _, err = run_cli(fake_pop3_args(srv, tmp_path) + ["--plaintext", "--allow-seen"])
    srv.close()
    assert code == 0 and "RETR" in err
    assert list(archived_files(tmp_path / "a").values()) == [b"Subject: x\r\n\r\nhello\r\n"]


def test_pop3_size_lie_is_reported_partial_and_not_recorded(tmp_path: Path) -> None:
    srv = fake_pop3(lambda line: pop3_mailbox(line, size=9999), b"USER\r\nUIDL\r\nTOP\r\n")
    code, _, err = run_cli(fake_pop3_args(srv, tmp_path) + ["--plaintext"])
    srv.close()
    assert code == 3 and "announced 9999 bytes" in err
    assert not [r for r in index_records(tmp_path / "a") if r["type"] == "msg"]


def test_dot_unstuffing_across_chunk_boundaries() -> None:
    body = (b"..leading dot\r\nplain\r\n...two dots\r\n.\tx\r\n" + b"z" * 3000 + b"\r\n"
            + b"..\r\nend")
    wire = body.replace(b"\r\n.", b"\r\n..")
    wire = (b"." + wire if wire.startswith(b".") else wire) + b"\r\n.\r\nNEXT\r\n"
    expected = body + b"\r\n"
    for step in (1, 2, 3, 5, 7, 64, 4096):
        class Sock:
            def __init__(self, step: int) -> None:
                self.pos, self.step = 0, step

            def recv(self, n: int) -> bytes:
                piece = wire[self.pos:self.pos + self.step]
                self.pos += self.step
                return piece

        reader = _Reader(Sock(step))  # type: ignore[arg-type]
        out: list[bytes] = []
        size = reader.block(out.append)
        assert b"".join(out) == expected, step
        assert size == len(expected)
        assert reader.line() == b"NEXT"


def test_pop3_without_uidl_matches_by_header_hash_and_keeps_twins(tmp_path: Path) -> None:
    body = b"Subject: twin\r\n\r\nsame\r\n"

    def no_uidl(line: bytes) -> bytes:
        cmd = line.split(b" ", 1)[0].upper()
        if cmd == b"UIDL":
            return b"-ERR not supported\r\n"
        if cmd == b"STAT":
            return b"+OK 2 %d\r\n" % (2 * len(body))
        if cmd == b"LIST":
            return b"+OK\r\n1 %d\r\n2 %d\r\n.\r\n" % (len(body), len(body))
        if cmd == b"TOP" and line.endswith(b" 0"):
            return b"+OK\r\nSubject: twin\r\n\r\n.\r\n"
        return pop3_mailbox(line, body)

    for run in range(2):
        srv = fake_pop3(no_uidl, b"USER\r\nTOP\r\n")
        code, out, err = run_cli(fake_pop3_args(srv, tmp_path) + ["--plaintext", "--json"])
        srv.close()
        assert code == 0, err
        assert "no UIDL" in err
        assert json.loads(out)["new"] == (2 if run == 0 else 0)
    assert list(archived_files(tmp_path / "a").values()) == [body, body]
