"""Without a terminal (cron, a pipe, ``</dev/null``) a missing user or password is exit 2
naming the option that gives it -- not click's end-of-file "interrupted" (exit 130).

Nothing is written: DEST is not created.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.errors import EXIT_USAGE, UsageError
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, backup, password_file

NO_PASSWORDS = {"ARCHIVER_PASSWORD": None, "ARCHIVER_TARGET_PASSWORD": None}


def invoke(args: list[str]) -> UsageError:
    """Run in click's CliRunner (stdin is not a terminal there); the error it ends with."""
    result = CliRunner().invoke(cli, args, env=NO_PASSWORDS, standalone_mode=False, obj={})
    assert isinstance(result.exception, UsageError), (result.exception, result.output)
    assert result.exception.exit_code == EXIT_USAGE
    return result.exception


def run_process(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m archiver ARGS`` with stdin from /dev/null, as in a cron job."""
    env = {k: v for k, v in os.environ.items() if k not in NO_PASSWORDS}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "archiver", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)


def test_missing_user_without_terminal_names_user_option(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    exc = invoke(["backup", "imaps://127.0.0.1:1", str(dest)])
    assert "--user" in str(exc) and "terminal" in str(exc)
    proc = run_process(["backup", "imaps://127.0.0.1:1", str(dest)])
    assert proc.returncode == 2, proc.stderr
    assert "--user" in proc.stderr and "interrupted" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not dest.exists()


def test_preset_without_user_and_terminal_names_user_option(tmp_path: Path) -> None:
    proc = run_process(["backup", "ecc-old", str(tmp_path / "a")])
    assert proc.returncode == 2 and "--user" in proc.stderr, proc.stderr


def test_missing_password_without_terminal_names_password_file(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    exc = invoke(["backup", "imaps://u@127.0.0.1:1", str(dest)])
    assert "--password-file" in str(exc) and "ARCHIVER_PASSWORD" in str(exc)
    proc = run_process(["backup", "imaps://u@127.0.0.1:1", str(dest)])
    assert proc.returncode == 2, proc.stderr
    assert "--password-file" in proc.stderr and "ARCHIVER_PASSWORD" in proc.stderr
    assert not dest.exists()


@pytest.fixture(scope="module")
def archive(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[MailUser, Path]:
    user = dovecot.new_user()
    dovecot.append(user, "INBOX", b"Subject: x\r\n\r\nx\r\n")
    dest = tmp_path_factory.mktemp("noterm") / "archive"
    code, _, err = backup(dovecot, user, dest)
    assert code == 0, err
    return user, dest


def test_restore_target_password_without_terminal_names_target_options(
        archive: tuple[MailUser, Path]) -> None:
    _user, dest = archive
    exc = invoke(["restore", str(dest), "imaps://t@127.0.0.1:1"])
    assert "--target-password-file" in str(exc) and "ARCHIVER_TARGET_PASSWORD" in str(exc)
    proc = run_process(["restore", str(dest), "imaps://t@127.0.0.1:1"])
    assert proc.returncode == 2 and "--target-password-file" in proc.stderr, proc.stderr


def test_migrate_names_the_end_and_its_options_without_terminal(
        dovecot: DovecotServer, archive: tuple[MailUser, Path], tmp_path: Path) -> None:
    user, _dest = archive
    exc = invoke(["migrate", "imaps://127.0.0.1:1", "imaps://t@127.0.0.1:1"])
    assert "--user" in str(exc) and "source server" in str(exc)
    source = [f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}", "imaps://t@127.0.0.1:1",
              "--cafile", str(dovecot.cafile),
              "--password-file", str(password_file(user, tmp_path)),
              "--via", str(tmp_path / "via")]
    proc = run_process(["migrate", *source])
    assert proc.returncode == 2, proc.stderr
    assert "target server" in proc.stderr and "--target-password-file" in proc.stderr
    assert "ARCHIVER_TARGET_PASSWORD" in proc.stderr


def test_restore_target_user_without_terminal_names_target_user(
        archive: tuple[MailUser, Path], tmp_path: Path) -> None:
    """An archive that does not record its user (written by hand, say) gives no default."""
    _user, dest = archive
    copy = tmp_path / "archive"
    shutil.copytree(dest, copy)
    meta_path = copy / ".archiver" / "archive.json"
    meta = json.loads(meta_path.read_text())
    meta["source"].pop("user")
    meta_path.write_text(json.dumps(meta))
    exc = invoke(["restore", str(copy), "imaps://127.0.0.1:1"])
    assert "--target-user" in str(exc) and "terminal" in str(exc)
