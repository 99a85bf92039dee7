"""A user's mistake gives one clear line and the documented exit code, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from archiver.archive import Archive
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, line_server, password_file, run_cli, source_args


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_wrong_password_exits_4(dovecot: DovecotServer, mail_user: MailUser,
                                tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("not-the-password\n")
    code, _, err = run_cli(["backup", f"imaps://{mail_user.name}@127.0.0.1:{dovecot.imaps_port}",
                            str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(pw)])
    assert code == 4
    assert "refused the login" in _one_line(err) and "not-the-password" not in err
    assert not (tmp_path / "a").exists(), "a failed login must not create DEST"


def test_untrusted_certificate_exits_5(dovecot: DovecotServer, mail_user: MailUser,
                                       tmp_path: Path) -> None:
    args = source_args(dovecot, mail_user, tmp_path / "a")
    args[args.index("--cafile") + 1] = str(dovecot.wrong_cafile)
    code, _, err = run_cli(["backup", *args])
    assert code == 5 and "--cafile" in _one_line(err)


def test_system_cas_do_not_trust_the_test_server(dovecot: DovecotServer, mail_user: MailUser,
                                                 tmp_path: Path) -> None:
    args = source_args(dovecot, mail_user, tmp_path / "a")
    i = args.index("--cafile")
    del args[i:i + 2]
    code, _, err = run_cli(["backup", *args])
    assert code == 5 and "certificate" in _one_line(err)


def test_insecure_connects_with_a_warning(dovecot: DovecotServer, mail_user: MailUser,
                                          tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    args = source_args(dovecot, mail_user, tmp_path / "a")
    i = args.index("--cafile")
    del args[i:i + 2]
    code, _, err = run_cli(["backup", *args, "--insecure", "--quiet"])
    assert code == 0 and "WARNING" in err


def test_starttls_is_used_on_imap_urls(dovecot: DovecotServer, mail_user: MailUser,
                                       tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    pw = password_file(mail_user, tmp_path)
    code, _, err = run_cli(["backup", f"imap://{mail_user.name}@127.0.0.1:{dovecot.imap_port}",
                            str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(pw), "--quiet"])
    assert code == 0, err


def _fake_imap_without_starttls() -> tuple[socket.socket, list[bytes]]:
    """A scripted server that offers no STARTTLS (a downgrade): we must not log in."""
    seen: list[bytes] = []

    def respond(line: bytes) -> tuple[bytes, bool]:
        seen.append(line)
        tag = line.split(b" ", 1)[0]
        if b"CAPABILITY" in line.upper():
            return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n", False
        if b"LOGOUT" in line.upper():
            return b"* BYE\r\n" + tag + b" OK bye\r\n", True
        return tag + b" NO not here\r\n", False

    srv = line_server(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n", respond)
    return srv, seen


def test_plaintext_is_refused_without_starttls(tmp_path: Path) -> None:
    srv, seen = _fake_imap_without_starttls()
    pw = tmp_path / "pw"
    pw.write_text("secret-pw\n")
    port = srv.getsockname()[1]
    code, _, err = run_cli(["backup", f"imap://u@127.0.0.1:{port}", str(tmp_path / "a"),
                            "--password-file", str(pw), "--timeout", "5"])
    srv.close()
    assert code == 5 and "STARTTLS" in _one_line(err)
    assert not any(b"LOGIN" in line.upper() for line in seen)


def test_unknown_host_exits_5(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    code, _, err = run_cli(["backup", "imaps://u@no-such-host.invalid", str(tmp_path / "a"),
                            "--password-file", str(pw), "--timeout", "5"])
    assert code == 5 and "no-such-host.invalid" in _one_line(err)


def test_bad_source_and_missing_password_file_exit_2(tmp_path: Path) -> None:
    for args in (["backup", "old-mail.example", str(tmp_path / "a")],
                 ["backup", "ftp://u@h", str(tmp_path / "a")],
                 ["backup", "imaps://u:pw@h", str(tmp_path / "a")],
                 ["backup", "imaps://u@h", str(tmp_path / "a"), "--password-file",
                  str(tmp_path / "missing")]):
        code, _, err = run_cli(args)
        assert code == 2, (args, err)
        _one_line(err)


def test_preset_fixes_the_login_form_with_a_note(tmp_path: Path) -> None:
    from archiver.account import parse_endpoint

    old = parse_endpoint("ecc-old", user="s1234@mail.ecc.u-tokyo.ac.jp")
    assert old.user == "s1234" and old.host == "old-mail.ecc.u-tokyo.ac.jp" and old.notes
    new = parse_endpoint("ecc-new", user="s1234")
    assert new.user == "s1234@mail.ecc.u-tokyo.ac.jp" and new.port == 993 and new.notes


def test_concurrent_run_on_the_same_dest_is_refused(dovecot: DovecotServer,
                                                    mail_user: MailUser, tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    with Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "127.0.0.1",
                                                  "user": mail_user.name}):
        code, _, err = backup(dovecot, mail_user, dest)
    assert code == 6 and "already working" in _one_line(err)


def test_another_account_into_the_same_dest_is_refused(dovecot: DovecotServer,
                                                       tmp_path: Path) -> None:
    a, b = dovecot.new_user(), dovecot.new_user()
    dest = tmp_path / "a"
    assert backup(dovecot, a, dest)[0] == 0
    code, _, err = backup(dovecot, b, dest)
    assert code == 6 and "one directory per account" in _one_line(err)


def test_non_empty_foreign_directory_is_refused(dovecot: DovecotServer, mail_user: MailUser,
                                                tmp_path: Path) -> None:
    dest = tmp_path / "home"
    dest.mkdir()
    (dest / "thesis.tex").write_text("important")
    code, _, err = backup(dovecot, mail_user, dest)
    assert code == 6 and "not an archive" in _one_line(err)


def test_verify_detects_a_flipped_byte(dovecot: DovecotServer, mail_user: MailUser,
                                       tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nsome body\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    victim = next((dest / "INBOX" / "cur").iterdir())
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01
    victim.write_bytes(bytes(data))
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 1 and "changed:" in out
    victim.unlink()
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 1 and "missing:" in out


def test_password_never_in_log_json_or_index(dovecot: DovecotServer, mail_user: MailUser,
                                             tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    dest = tmp_path / "a"
    log = tmp_path / "trace.log"
    code, out, err = backup(dovecot, mail_user, dest, "--json", "--verbose", "--log", str(log))
    assert code == 0, err
    assert "LOGIN" in log.read_text() or "login" in log.read_text().lower()
    for blob in (out, err, log.read_text()):
        assert mail_user.password not in blob
    for p in dest.rglob("*"):
        if p.is_file():
            assert mail_user.password.encode() not in p.read_bytes()
