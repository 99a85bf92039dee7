"""Helpers shared by the archiver tests: run the CLI in-process or as a process."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archiver.cli import run
from archiver.index import read_index
from tests import corpus
from tests.dovecot import DovecotServer, MailUser

REPO = Path(__file__).resolve().parent.parent


def line_server(greeting: bytes,
                respond: Callable[[bytes], tuple[bytes, bool]]) -> socket.socket:
    """A scripted one-connection server on 127.0.0.1 for what Dovecot will not do.

    ``respond(line)`` gets each CRLF-ended command line and returns (reply,
    end the session?).  The caller closes the returned listening socket.
    """
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(greeting)
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    reply, done = respond(line)
                    conn.sendall(reply)
                    if done:
                        return

    threading.Thread(target=serve, daemon=True).start()
    return srv


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``archiver ARGS`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env:
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def password_file(user: MailUser, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    pw = where / f"{user.name}.pw"
    pw.write_text(user.password + "\n")
    return pw


def source_args(server: DovecotServer, user: MailUser, dest: Path) -> list[str]:
    pw = password_file(user, dest.parent / ".pw")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}", str(dest),
            "--cafile", str(server.cafile), "--password-file", str(pw), "--timeout", "20"]


def backup(server: DovecotServer, user: MailUser, dest: Path, *extra: str,
           env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_cli(["backup", *source_args(server, user, dest), *extra], env=env)


def backup_process(server: DovecotServer, user: MailUser, dest: Path, *extra: str,
                   env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``python -m archiver backup`` as a separate process (for kill tests)."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "archiver", "backup",
                             *source_args(server, user, dest), *extra],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def index_records(dest: Path) -> list[dict[str, Any]]:
    return read_index(dest / ".archiver" / "index.jsonl.zst").records


def archived_files(dest: Path) -> dict[str, bytes]:
    """Every message file under DEST (relative path -> bytes), the index excluded."""
    out = {}
    for p in dest.rglob("*"):
        if p.is_file() and ".archiver" not in p.relative_to(dest).parts \
                and p.parent.name in ("cur", "new"):
            out[str(p.relative_to(dest))] = p.read_bytes()
    return out


def build_archive(dovecot: DovecotServer, base: Path) -> Path:
    """Back up the nasty corpus plus corpus.OFFLINE_EXTRA for a fresh user into base/archive."""
    user = dovecot.new_user("offline")
    corpus.load(dovecot, user, corpus.nasty_messages(), corpus.folder_names())
    for folder, data, flags, when in corpus.OFFLINE_EXTRA:
        dovecot.append(user, folder, data, flags, when)
    dest = base / "archive"
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    return dest


def keyword_letters(folder_dir: Path, flags: set[str] | tuple[str, ...]) -> str:
    """The Dovecot keyword letters (a..z) a file in ``folder_dir`` carries for ``flags``,
    read through the folder's ``dovecot-keywords`` (keywords are the flags without ``\\``)."""
    from archiver.stores.maildir_keywords import read_letters

    index = {name.lower(): i for i, name in read_letters(folder_dir).items()}
    return "".join(sorted(chr(ord("a") + index[f.lower()]) for f in flags
                          if not f.startswith("\\") and f.lower() in index))
