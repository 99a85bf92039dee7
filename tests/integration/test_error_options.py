"""Every option an error names exists on the command that printed it.

restore and migrate set their target with ``--target-cafile``,
``--target-password-file`` ...; an error that told a restore user to "give
its CA with --cafile" sent them to an option restore rejects.  The table runs
each command against the real Dovecot with one end broken three ways (an
untrusted certificate, a wrong password, a refused port) and checks the exit
code, the option that fixes it, and that every ``--option`` named in the
message is one of that command's own.  Migrate also has to say which server.
"""

from __future__ import annotations

import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*[a-z]")


def command_options(name: str) -> set[str]:
    """The --long options of ``archiver NAME`` (what click accepts)."""
    from archiver.cli import cli

    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)
            if o.startswith("--")}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class End:
    """One server end's command-line pieces; ``broken`` decides what goes wrong."""

    url: str
    cafile: Path
    password: Path


@dataclass(frozen=True)
class Case:
    command: str  # "backup", "verify", "restore", "migrate"
    end: str  # which end is broken: "source" or "target"
    failure: str  # "tls", "login", "refused"


CASES = [Case(cmd, end, failure)
         for cmd, end in (("backup", "source"), ("verify", "source"), ("restore", "target"),
                          ("migrate", "source"), ("migrate", "target"))
         for failure in ("tls", "login", "refused")]
EXIT = {"tls": 5, "login": 4, "refused": 5}
FIX = {("tls", "source"): "--cafile", ("tls", "target"): "--target-cafile",
       ("login", "source"): "--password-file", ("login", "target"): "--target-password-file"}


@pytest.fixture(scope="module")
def accounts(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[MailUser, MailUser, Path]:
    """A source account with one message, its archive, and an empty target account."""
    source, target = dovecot.new_user(), dovecot.new_user()
    dovecot.append(source, "INBOX", b"Subject: hello\r\n\r\nhello\r\n")
    dest = tmp_path_factory.mktemp("hints") / "archive"
    code, _, err = backup(dovecot, source, dest)
    assert code == 0, err
    return source, target, dest


def _end(dovecot: DovecotServer, user: MailUser, where: Path, broken: str | None) -> End:
    port = closed_port() if broken == "refused" else dovecot.imaps_port
    pw = password_file(user, where)
    if broken == "login":
        pw.write_text("not-the-password\n")
    return End(f"imaps://{user.name}@127.0.0.1:{port}",
               dovecot.wrong_cafile if broken == "tls" else dovecot.cafile, pw)


def _argv(case: Case, src: End, dst: End, dest: Path, tmp: Path) -> list[str]:
    source_opts = ["--cafile", str(src.cafile), "--password-file", str(src.password)]
    target_opts = ["--target-cafile", str(dst.cafile), "--target-password-file",
                   str(dst.password)]
    if case.command == "backup":
        return ["backup", src.url, str(tmp / "new-archive"), *source_opts, "--timeout", "10"]
    if case.command == "verify":  # --repair connects only when something is damaged
        damaged = tmp / "damaged"
        shutil.copytree(dest, damaged)
        next((damaged / "INBOX" / "cur").iterdir()).unlink()
        return ["verify", str(damaged), "--repair", src.url, *source_opts, "--timeout", "10"]
    if case.command == "restore":
        return ["restore", str(dest), dst.url, *target_opts, "--timeout", "10"]
    return ["migrate", src.url, dst.url, "--via", str(tmp / "via"), *source_opts,
            *target_opts, "--timeout", "10"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}-{c.end}-{c.failure}")
def test_error_names_only_options_of_its_own_command(
        case: Case, dovecot: DovecotServer, accounts: tuple[MailUser, MailUser, Path],
        tmp_path: Path) -> None:
    source, target, dest = accounts
    src = _end(dovecot, source, tmp_path / "s", case.failure if case.end == "source" else None)
    dst = _end(dovecot, target, tmp_path / "t", case.failure if case.end == "target" else None)
    code, _, err = run_cli(_argv(case, src, dst, dest, tmp_path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert code == EXIT[case.failure], err
    named = set(OPTION.findall(err))
    assert named <= command_options(case.command), (named, err)
    fix = FIX.get((case.failure, case.end))
    if fix:
        assert fix in named, err
    if case.command == "migrate":
        assert f"{case.end} server" in err, err


@pytest.mark.parametrize("command", ["backup", "verify", "restore", "migrate"])
def test_no_terminal_errors_name_options_of_their_command(
        command: str, accounts: tuple[MailUser, MailUser, Path], tmp_path: Path) -> None:
    """The password/user errors without a terminal, per command (no server needed)."""
    _source, _target, dest = accounts
    argv = {"backup": ["backup", "imaps://u@127.0.0.1:1", str(tmp_path / "a")],
            "verify": ["verify", str(dest), "--repair", "imaps://127.0.0.1:1"],
            "restore": ["restore", str(dest), "imaps://127.0.0.1:1"],
            "migrate": ["migrate", "imaps://u@127.0.0.1:1", "imaps://127.0.0.1:1"]}[command]
    env = {"ARCHIVER_PASSWORD": "", "ARCHIVER_TARGET_PASSWORD": ""}
    code, _, err = run_cli(argv, env=env)
    assert code == 2, err
    named = set(OPTION.findall(err))
    assert named and named <= command_options(command), (named, err)
