"""Security: no password leaks, TLS failures refused, private permissions, no symlink writes."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import trustme

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, backup, backup_process, password_file, run_cli, source_args


def _tls_server(cert: trustme.LeafCert) -> socket.socket:
    """A TLS listener that serves an IMAP greeting with ``cert`` (to test verification)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(4):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"* OK fake\r\n")
                    tls.recv(100)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _try_tls(tmp_path: Path, cert: trustme.LeafCert, ca: trustme.CA, host: str) -> str:
    srv = _tls_server(cert)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    pw = tmp_path / "pw"
    pw.write_text("tls-secret\n")
    try:
        code, out, err = run_cli(["backup", f"imaps://u@{host}:{srv.getsockname()[1]}",
                                  str(tmp_path / "a"), "--cafile", str(cafile),
                                  "--password-file", str(pw), "--timeout", "5"])
    finally:
        srv.close()
    assert code == 5, err
    assert "Traceback" not in err and "tls-secret" not in err
    assert not (tmp_path / "a").exists()
    return err


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    cert = ca.issue_cert("127.0.0.1", not_before=past - dt.timedelta(days=30), not_after=past)
    err = _try_tls(tmp_path, cert, ca, "127.0.0.1")
    assert "certificate" in err and "expired" in err, err


def test_wrong_host_name_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("mail.other.example")
    err = _try_tls(tmp_path, cert, ca, "127.0.0.1")
    assert "certificate" in err, err


def test_password_not_in_argv_of_a_running_backup(dovecot: DovecotServer, mail_user: MailUser,
                                                  tmp_path: Path) -> None:
    for i in range(30):
        dovecot.append(mail_user, "INBOX", b"Subject: %d\r\n\r\n" % i + b"z" * 20000 + b"\r\n")
    # -v and the protocol trace (--debug, here through its variable) both on stderr
    proc = backup_process(dovecot, mail_user, tmp_path / "a", "--verbose",
                          env={"ARCHIVER_DEBUG": "1"})
    seen = b""
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seen += Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        except OSError:
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert seen, "never saw the running process"
    assert mail_user.password.encode() not in seen
    assert mail_user.password.encode() not in err


def test_password_not_in_error_messages(dovecot: DovecotServer, mail_user: MailUser,
                                        tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("Wr0ng-Secret-123\n")
    code, out, err = run_cli(["backup", f"imaps://{mail_user.name}@127.0.0.1:"
                              f"{dovecot.imaps_port}", str(tmp_path / "a"), "--cafile",
                              str(dovecot.cafile), "--password-file", str(pw), "--json",
                              "--verbose", "--log", str(tmp_path / "log")],
                             env={"ARCHIVER_DEBUG": "1"})  # the protocol trace on stderr too
    assert code == 4
    blob = out + err + (tmp_path / "log").read_text()
    assert "Wr0ng-Secret-123" not in blob


def test_starttls_stripped_by_a_mitm_is_refused(dovecot: DovecotServer, mail_user: MailUser,
                                                tmp_path: Path) -> None:
    """A proxy in front of the real Dovecot plain port that removes STARTTLS (downgrade)."""
    srv = socket.create_server(("127.0.0.1", 0))
    saw_login = threading.Event()

    def serve() -> None:
        try:
            client, _ = srv.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", dovecot.imap_port), timeout=5)
        client.settimeout(5)

        def down() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data.replace(b" STARTTLS", b"").replace(b"STARTTLS ", b""))
            except OSError:
                pass

        threading.Thread(target=down, daemon=True).start()
        try:
            while data := client.recv(65536):
                if b"LOGIN" in data.upper():
                    saw_login.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    threading.Thread(target=serve, daemon=True).start()
    pw = password_file(mail_user, tmp_path)
    code, _, err = run_cli(["backup", f"imap://{mail_user.name}@127.0.0.1:{srv.getsockname()[1]}",
                            str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(pw), "--timeout", "5"])
    srv.close()
    assert code == 5 and "STARTTLS" in err, err
    assert not saw_login.is_set(), "the password was sent over the downgraded line"


def test_files_0600_and_dirs_0700_even_with_umask_000(dovecot: DovecotServer,
                                                      mail_user: MailUser,
                                                      tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    dovecot.append(mail_user, "受信箱/講義", b"Subject: y\r\n\r\ny\r\n")
    for fmt in ("maildir", "mbox"):
        dest = tmp_path / fmt
        proc = subprocess.run([sys.executable, "-m", "archiver", "backup",
                               *source_args(dovecot, mail_user, dest), "--format", fmt,
                               "--log", str(tmp_path / f"{fmt}.log")],
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                              preexec_fn=lambda: os.umask(0), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for p in [dest, *dest.rglob("*")]:
            mode = stat.S_IMODE(p.lstat().st_mode)
            if p.is_dir():
                assert mode == 0o700, (p, oct(mode))
            else:
                assert mode == 0o600, (p, oct(mode))


def test_planted_symlinks_are_not_followed_for_writing(dovecot: DovecotServer,
                                                       mail_user: MailUser,
                                                       tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: 1\r\n\r\n1\r\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    for fmt, plant in (("maildir", "INBOX/tmp"), ("maildir", "INBOX/cur"),
                       ("mbox", "Inbox")):
        dest = tmp_path / f"{fmt}-{plant.replace('/', '_')}"
        assert backup(dovecot, mail_user, dest, "--format", fmt, "--quiet")[0] == 0
        dovecot.append(mail_user, "INBOX", b"Subject: more\r\n\r\nmore\r\n")
        target = dest / plant
        if target.is_dir():
            os.rename(target, dest / "moved-away")
            os.symlink(outside, target)
        else:
            os.rename(target, dest / "moved-away")
            (outside / "victim").write_bytes(b"precious\n")
            os.symlink(outside / "victim", target)
        code, _, err = backup(dovecot, mail_user, dest, "--format", fmt, "--quiet")
        assert "Traceback" not in err, err
        assert code in (3, 6), (plant, code, err)
        assert sorted(p.name for p in outside.iterdir()) in ([], ["victim"]), plant
        if (outside / "victim").exists():
            assert (outside / "victim").read_bytes() == b"precious\n"
