"""``--json`` reports failures too: exactly one JSON object line on stdout.

A script looping over hundreds of accounts needs the failure on stdout in a
form it can parse, not only a human line on stderr (which still comes).
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error_object(code: int, out: str, err: str, exit_code: int) -> dict[str, Any]:
    assert code == exit_code, (out, err)
    assert "Traceback" not in err + out
    lines = out.splitlines()
    assert len(lines) == 1, out
    got = json.loads(lines[0])
    assert got["status"] == "error" and got["exit"] == exit_code, got
    assert got["error"] and got["error"] in err, (got, err)  # the same line, on stderr too
    return dict(got)


@pytest.fixture(scope="module")
def archive(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[MailUser, Path]:
    user = dovecot.new_user("json")
    dovecot.append(user, "INBOX", b"Subject: j\r\nMessage-ID: <j@t>\r\n\r\nj\r\n")
    dest = tmp_path_factory.mktemp("json") / "a"
    code, _, err = backup(dovecot, user, dest, "--quiet")
    assert code == 0, err
    return user, dest


SOURCE_COMMANDS = ["backup", "folders", "check", "verify"]


def _source_command(cmd: str, url: str, dest: Path, *extra: str) -> list[str]:
    if cmd == "folders":
        return ["folders", url, *extra]
    if cmd == "verify":
        return ["verify", str(dest), "--repair", url, *extra]
    return [cmd, url, str(dest), *extra]


@pytest.mark.parametrize("cmd", SOURCE_COMMANDS)
def test_source_commands_report_each_failure_as_one_json_object(
        cmd: str, dovecot: DovecotServer, archive: tuple[MailUser, Path],
        tmp_path: Path) -> None:
    user, dest = archive
    pw = password_file(user, tmp_path / "pw")
    tls = ["--cafile", str(dovecot.cafile), "--timeout", "10", "--json"]
    url = f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}"
    fresh = tmp_path / "fresh"
    if cmd == "verify":  # --repair connects only for damage: a copy with a message gone
        fresh = dest = Path(shutil.copytree(dest, tmp_path / "damaged"))
        next(p for p in (dest / "INBOX" / "cur").iterdir()).unlink()
    # 2: a bad URL
    got = _error_object(*run_cli(_source_command(cmd, "imaps://", fresh, *tls,
                                                 "--password-file", str(pw))), 2)
    assert "no host name" in got["error"]
    # 4: a wrong password
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong-password\n")
    got = _error_object(*run_cli(_source_command(cmd, url, fresh, *tls, "--password-file",
                                                 str(bad))), 4)
    assert got["reason"] == "refused" and "wrong-password" not in got["error"]
    # 5: nothing listens on the port
    got = _error_object(*run_cli(_source_command(
        cmd, f"imaps://{user.name}@127.0.0.1:{_closed_port()}", fresh, *tls,
        "--password-file", str(pw))), 5)
    if cmd != "folders":  # 6: DEST is another account's archive
        other = f"imaps://someone-else@127.0.0.1:{dovecot.imaps_port}"
        got = _error_object(*run_cli(_source_command(cmd, other, dest, *tls,
                                                     "--password-file", str(pw))), 6)
        assert got["reason"] == "other-account" and user.name in got["error"]


def test_usage_errors_click_reports_are_json_too(dovecot: DovecotServer,
                                                 archive: tuple[MailUser, Path]) -> None:
    _user, dest = archive
    got = _error_object(*run_cli(["ls", str(dest), "--json", "--bogus"]), 2)
    assert got["reason"] == "usage" and "--bogus" in got["error"]
    got = _error_object(*run_cli(["backup", "--json"]), 2)
    assert got["reason"] == "usage"


@pytest.mark.parametrize("cmd", ["verify", "ls", "search", "export", "restore"])
def test_archive_commands_report_a_missing_archive_as_json(cmd: str, tmp_path: Path,
                                                           dovecot: DovecotServer) -> None:
    nothing = tmp_path / "not-an-archive"
    nothing.mkdir()
    args = {"verify": ["verify", str(nothing)], "ls": ["ls", str(nothing)],
            "search": ["search", str(nothing), "x"],
            "export": ["export", str(nothing), str(tmp_path / "out"), "--to", "mbox"],
            "restore": ["restore", str(nothing), f"imaps://x@127.0.0.1:{dovecot.imaps_port}",
                        "--target-cafile", str(dovecot.cafile)]}[cmd]
    got = _error_object(*run_cli([*args, "--json"]), 6)
    assert "is not an archive" in got["error"]


def test_restore_refused_login_and_closed_port_as_json(dovecot: DovecotServer,
                                                       archive: tuple[MailUser, Path],
                                                       tmp_path: Path) -> None:
    user, dest = archive
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong-password\n")
    base = ["restore", str(dest), "--target-cafile", str(dovecot.cafile), "--json",
            "--target-password-file", str(bad)]
    got = _error_object(*run_cli([*base, f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}"]),
                        4)
    assert got["reason"] == "refused"
    _error_object(*run_cli([*base, f"imaps://{user.name}@127.0.0.1:{_closed_port()}"]), 5)
    _error_object(*run_cli([*base, "imaps://"]), 2)


def test_export_json_summary(archive: tuple[MailUser, Path], tmp_path: Path) -> None:
    _user, dest = archive
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["export", str(dest), str(out_dir), "--to", "mbox", "--json"])
    assert code == 0, err
    got = json.loads(out)
    assert got == {"status": "ok", "format": "mbox", "out": str(out_dir), "folders": 1,
                   "messages": 1, "bytes": got["bytes"], "problems": []}
    assert got["bytes"] > 0 and err == ""
    # exporting again into the now non-empty OUT is refused: JSON error, exit 6
    _error_object(*run_cli(["export", str(dest), str(out_dir), "--to", "mbox", "--json"]), 6)


def test_success_summaries_say_ok(dovecot: DovecotServer, archive: tuple[MailUser, Path],
                                  tmp_path: Path) -> None:
    user, dest = archive
    code, out, err = run_cli(["verify", str(dest), "--json"])
    assert code == 0 and json.loads(out)["status"] == "ok", err
    pw = password_file(user, tmp_path / "pw")
    code, out, err = run_cli(["check", f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}",
                              str(dest), "--cafile", str(dovecot.cafile), "--password-file",
                              str(pw), "--json"])
    assert code == 0 and json.loads(out)["status"] == "ok", err
