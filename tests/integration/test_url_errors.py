"""A wrong URL gets one line naming the URL and the fix, never urllib's or imaplib's words.

The protocol mix-ups run against the real Dovecot, which listens for IMAP and
POP3 (with and without TLS) side by side; a greeting no mail server sends
comes from a scripted socket.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.errors import UsageError
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import password_file, run_cli


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _backup(url: str, dovecot: DovecotServer, user: MailUser, tmp_path: Path
            ) -> tuple[int, str]:
    code, _, err = run_cli(["backup", url, str(tmp_path / "a"), "--cafile", str(dovecot.cafile),
                            "--password-file", str(password_file(user, tmp_path)),
                            "--timeout", "10"])
    return code, _one_line(err)


@pytest.mark.parametrize("scheme,port,other,fix", [
    ("imaps", "pop3s_port", "POP3", "pop3s"),
    ("imap", "pop3_port", "POP3", "pop3"),
    ("pop3s", "imaps_port", "IMAP", "imaps"),
    ("pop3", "imap_port", "IMAP", "imap"),
])
def test_url_for_the_other_protocol_suggests_the_right_scheme(
        scheme: str, port: str, other: str, fix: str, dovecot: DovecotServer,
        mail_user: MailUser, tmp_path: Path) -> None:
    number = getattr(dovecot, port)
    code, line = _backup(f"{scheme}://{mail_user.name}@127.0.0.1:{number}", dovecot,
                         mail_user, tmp_path)
    assert code == 5, line
    assert f"speaks {other}" in line and "None" not in line
    assert f"{fix}://{mail_user.name}@127.0.0.1:{number}" in line
    assert ("+OK" if other == "POP3" else "* OK") in line  # the greeting, quoted
    assert not (tmp_path / "a").exists()


def greeting_server(greeting: bytes) -> socket.socket:
    """Answers every connection with ``greeting`` and hangs up (an SMTP server, say)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_a_greeting_of_no_mail_protocol_is_shown_sanitised(tmp_path: Path) -> None:
    srv = greeting_server(b"220 smtp.example ESMTP \x1b[31mready\x07\r\n")
    port = srv.getsockname()[1]
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    try:
        code, _, err = run_cli(["backup", f"imap://u@127.0.0.1:{port}", str(tmp_path / "a"),
                                "--password-file", str(pw), "--timeout", "5"])
    finally:
        srv.close()
    line = _one_line(err)
    assert code == 5 and "did not greet as an IMAP server" in line, line
    assert "220 smtp.example ESMTP" in line and "None" not in line
    assert "\x1b" not in line and "\x07" not in line


@pytest.mark.parametrize("url,words", [
    ("imaps://u@host:99x", ["'imaps://u@host:99x'", "1 to 65535"]),
    ("imaps://u@host:99999", ["'imaps://u@host:99999'", "1 to 65535"]),
    ("imaps://u@host:0", ["1 to 65535"]),
    ("imaps://u@host:", ["1 to 65535"]),
    ("imaps://u@:993", ["no host name"]),
    ("imap4://u@host", ["unknown protocol 'imap4://'", "imaps://"]),
    ("imaps://u@[::1", ["not a valid URL"]),
])
def test_malformed_urls_are_one_line_usage_errors(url: str, words: list[str],
                                                  tmp_path: Path) -> None:
    code, _, err = run_cli(["backup", url, str(tmp_path / "a")])
    line = _one_line(err)
    assert code == 2, line
    for word in words:
        assert word in line, line
    assert "cast to integer" not in line and "out of range" not in line
    assert not (tmp_path / "a").exists()
    # the same through click's own test runner: the command ends in that UsageError
    result = CliRunner().invoke(cli, ["backup", url, str(tmp_path / "b")],
                                standalone_mode=False, obj={})
    assert isinstance(result.exception, UsageError), result.exception
    assert all(word in str(result.exception) for word in words)


def test_a_url_without_a_port_uses_the_schemes_default() -> None:
    from archiver.account import parse_endpoint

    assert parse_endpoint("imaps://u@host").port == 993
    assert parse_endpoint("pop3://u@host").port == 110
    assert parse_endpoint("imaps://u@host:1993").port == 1993
