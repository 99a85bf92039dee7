"""Shared fixtures: real throwaway Dovecot servers, fresh users, a loaded corpus.

* ``dovecot``      (session)  a started :class:`tests.dovecot.DovecotServer`
* ``dovecot_new``  (session)  a second, independent server (restore/migration target)
* ``mail_user``    (function) a fresh user with an empty mailbox on ``dovecot``
* ``loaded_user``  (function) a fresh user on ``dovecot`` loaded with every
  corpus folder and ``corpus.nasty_messages()``; a :class:`LoadedUser`
* ``courier``      (session)  a started :class:`tests.foreign.CourierServer` (Courier-IMAP 5)
* ``cyrus``        (session)  a started :class:`tests.foreign.CyrusServer` (Cyrus IMAP 3.6)
* ``stress``       (session)  True when pytest runs with ``--stress``
* ``volatile_fs``  (function) a fresh volatile FUSE file system (tests/volatilefs.py)
  mounted on ``tmp_path/"mnt"``: what was not made durable is lost at a power cut
* ``foreign_fs``   (function, params exfat/ntfs) a real exFAT or NTFS (Win32 names)
  image mounted with FUSE (tests/foreignfs.py); FAILS as root when a tool is
  missing, skips with the reason otherwise

At the end of a run the reliability counters (tests/counters.py) are printed;
with ``$ARCHIVER_COUNTERS`` set (scripts/test sets it to ``.test-counters.json``
for a full run) they are written there, with the run's totals and slow
tests' durations, for ``scripts/reliability-figures``.

If Dovecot is not installed the server fixtures raise (the run FAILS);
Courier/Cyrus that cannot start FAIL as root and skip (with the reason) otherwise;
with ARCHIVER_SKIP_DOVECOT=1 they skip instead.  ``volatile_fs`` FAILS when
FUSE (/dev/fuse, Debian fuse3, PyPI mfusepy) is missing: scripts/test installs it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import corpus, foreignfs

# The suite's assertions are about the English texts: a developer's LANG=ja_JP.UTF-8
# must not change them.  Tests of the Japanese interface set their own environment.
os.environ["ARCHIVER_LANG"] = "en"
from tests.counters import DURATIONS, GROUPS
from tests.dovecot import (
    DovecotMissing,
    DovecotServer,
    MailUser,
    dovecot_available,
    skip_requested,
)
from tests.foreign import CourierServer, CyrusServer, ForeignServer, ForeignUnavailable
from tests.volatilemount import VolatileFS, mounted

REPO = Path(__file__).resolve().parent.parent
_STARTED: list[float] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _STARTED.append(time.monotonic())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.duration >= 1.0:
        DURATIONS[report.nodeid] = round(report.duration, 1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Print the reliability counters and save them for scripts/reliability-figures."""
    groups = {name: dict(sorted(c.items())) for name, c in sorted(GROUPS.items()) if c}
    if groups:
        terminalreporter.section("reliability counters")
        for name, items in groups.items():
            terminalreporter.write_line(f"{name}: {sum(items.values())} in all")
            for key, value in items.items():
                terminalreporter.write_line(f"  {value:6d}  {key}")
    stats = terminalreporter.stats
    data = {
        "exit": int(exitstatus),
        "passed": len(stats.get("passed", [])), "failed": len(stats.get("failed", [])),
        "skipped": len(stats.get("skipped", [])), "errors": len(stats.get("error", [])),
        "seconds": round(time.monotonic() - _STARTED[0], 1) if _STARTED else None,
        "stress": bool(config.getoption("--stress")),
        "groups": groups, "durations": dict(sorted(DURATIONS.items())),
    }
    if not os.environ.get("ARCHIVER_COUNTERS"):
        return  # scripts/test sets it for a full run; a partial run does not overwrite it
    target = Path(os.environ["ARCHIVER_COUNTERS"])
    try:
        target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    except OSError as exc:
        terminalreporter.write_line(f"could not write {target}: {exc.strerror}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stress", action="store_true", default=False,
                     help="longer, heavier runs of the stress/kill-loop tests")


@pytest.fixture(scope="session")
def stress(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--stress"))


def _start_server(base: Path) -> DovecotServer:
    if not dovecot_available():
        if skip_requested():
            pytest.skip("Dovecot not installed and ARCHIVER_SKIP_DOVECOT=1")
        raise DovecotMissing(
            "Dovecot (/usr/sbin/dovecot, /usr/bin/doveadm) is not installed: run scripts/test "
            "as root to install it, or `apt-get install dovecot-imapd dovecot-pop3d`; "
            "ARCHIVER_SKIP_DOVECOT=1 skips the server tests instead.")
    return DovecotServer(base).start()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    server = _start_server(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_new(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    server = _start_server(tmp_path_factory.mktemp("dovecot-new"))
    try:
        yield server
    finally:
        server.stop()


def _foreign(server: ForeignServer) -> Iterator[ForeignServer]:
    """Start *server* for the session.  As root (CI) a server that cannot start is a
    failure: a missing prerequisite must not pass unseen; otherwise a visible skip."""
    try:
        server.start()
    except ForeignUnavailable as exc:
        if os.geteuid() == 0:
            raise
        pytest.skip(f"{server.name}: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def courier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CourierServer]:
    yield from _foreign(CourierServer(tmp_path_factory.mktemp("courier")))  # type: ignore[misc]


@pytest.fixture(scope="session")
def cyrus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CyrusServer]:
    yield from _foreign(CyrusServer(tmp_path_factory.mktemp("cyrus")))  # type: ignore[misc]


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    return dovecot.new_user()


@dataclass
class LoadedUser:
    user: MailUser
    messages: list[corpus.CorpusMessage]
    uids: list[int]  # UID of each message, same order as ``messages``
    folders: list[str]  # corpus.folder_names() (parents such as "Archive" also exist)


@pytest.fixture
def loaded_user(dovecot: DovecotServer) -> LoadedUser:
    user = dovecot.new_user("loaded")
    messages = corpus.nasty_messages()
    folders = corpus.folder_names()
    uids = corpus.load(dovecot, user, messages, folders)
    return LoadedUser(user, messages, uids, folders)


@pytest.fixture
def volatile_fs(tmp_path: Path) -> Iterator[VolatileFS]:
    """A fresh volatile FUSE file system on tmp_path/"mnt", unmounted after the test."""
    with mounted(tmp_path / "mnt") as fs:
        yield fs


@pytest.fixture(params=sorted(foreignfs.MOUNTS))
def foreign_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[foreignfs.ForeignFS]:
    """A freshly made exFAT or NTFS file system, unmounted after the test."""
    mount = foreignfs.MOUNTS[request.param](tmp_path / request.param)
    try:
        fs = mount.__enter__()
    except foreignfs.Unavailable as exc:
        if os.geteuid() == 0:  # CI: a missing prerequisite must not pass unseen
            raise
        pytest.skip(f"{request.param}: {exc}")
    try:
        yield fs
    finally:
        mount.__exit__(None, None, None)
