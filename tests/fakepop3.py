"""A scripted POP3 server for what Dovecot will not do (no STLS, no TOP, lying sizes)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.helpers import line_server


def fake_pop3(handler: Callable[[bytes], bytes], capa: bytes) -> socket.socket:
    """A scripted POP3 server for what Dovecot will not do (no STLS, no TOP, lying sizes)."""

    def respond(line: bytes) -> tuple[bytes, bool]:
        cmd = line.split(b" ", 1)[0].upper()
        if cmd == b"CAPA":
            return b"+OK\r\n" + capa + b".\r\n", False
        if cmd == b"QUIT":
            return b"+OK bye\r\n", True
        return handler(line), False

    return line_server(b"+OK fake\r\n", respond)


def pop3_mailbox(line: bytes, body: bytes = b"Subject: x\r\n\r\nhello\r\n", size: int = 0) -> bytes:
    cmd = line.split(b" ", 1)[0].upper()
    if cmd in (b"USER", b"PASS"):
        return b"+OK\r\n"
    if cmd == b"STAT":
        return b"+OK 1 %d\r\n" % len(body)
    if cmd == b"LIST":
        return b"+OK\r\n1 %d\r\n.\r\n" % (size or len(body))
    if cmd == b"UIDL":
        return b"+OK\r\n1 abc/def:1\r\n.\r\n"
    if cmd in (b"TOP", b"RETR"):
        return b"+OK\r\n" + body + b".\r\n"
    return b"-ERR no\r\n"


def fake_pop3_args(srv: socket.socket, tmp_path: Path, scheme: str = "pop3s") -> list[str]:
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    return ["backup", f"pop3://u@127.0.0.1:{srv.getsockname()[1]}", str(tmp_path / "a"),
            "--password-file", str(pw), "--timeout", "5"]
