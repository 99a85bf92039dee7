"""A bad network: cuts, stalls, refusals and Ctrl-C, through tests/proxy.py.

The proxy sits between archiver and the real Dovecot IMAPS port and passes
TLS through untouched, so a cut lands inside a TLS record or a message
literal.  Whatever happens, a run ends with a documented exit code and a
one-line explanation, what it recorded is complete and verified, a plain
rerun completes the archive without duplicates, and the server is never
changed.

The engine's reconnect back-off (1 s, doubling) is shortened to 0.05 s by
patching the ``BackupOptions`` the CLI builds (the CLI runs in-process).
"""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from archiver.sources.imap import ImapSource
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, archived_files, index_records, run_cli, source_args
from tests.proxy import CLEAN, Fault, FaultProxy, every, first

FOLDERS = ("INBOX", "Sent", "受信箱/講義", "Archive/2003")


@dataclass
class Via:
    """Stands in for the server in ``source_args``: Dovecot's CA, the proxy's port."""

    imaps_port: int
    cafile: Path


@dataclass
class Filled:
    server: DovecotServer
    user: MailUser
    expected: Counter[bytes]  # every message as the server serves it
    fingerprint: str
    setup_bytes: int  # server->client bytes of handshake + login + CAPABILITY/NAMESPACE
    total_bytes: int  # server->client bytes of a whole clean run (one connection)
    paths: frozenset[str] = frozenset()  # message files of a clean run (folder dirs, names)


def _message(rng: random.Random, i: int, size: int) -> bytes:
    head = (f"From: Sender {i} <s{i}@example.org>\r\nTo: me@example.org\r\n"
            f"Subject: network test {i}\r\nMessage-ID: <net{i}@example.org>\r\n"
            f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0900\r\n\r\n").encode()
    line_len = 76
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = []
    while sum(len(x) + 2 for x in lines) + len(head) < size:
        lines.append(bytes(rng.choice(alphabet) for _ in range(line_len)))
    return head + b"\r\n".join(lines) + b"\r\n"


def _fill(server: DovecotServer, user: MailUser) -> None:
    rng = random.Random(20240601)
    sizes = [rng.randint(1_000, 50_000) for _ in range(60)] + [300_000, 310_000]
    with server.session(user) as c:
        for i, size in enumerate(sizes):
            flags = ("\\Seen",) if i % 3 else ()
            server.append(user, FOLDERS[i % len(FOLDERS)], _message(rng, i, size), flags,
                          client=c)


def _served(server: DovecotServer, user: MailUser) -> Counter[bytes]:
    return Counter(data for msgs in server.fetch_all(user).values() for _, data, _, _ in msgs)


def _args(filled: Filled, dest: Path, port: int | None = None) -> list[str]:
    server: Any = filled.server if port is None else Via(port, filled.server.cafile)
    return ["backup", *source_args(server, filled.user, dest), "--quiet"]


@pytest.fixture(scope="module")
def filled(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """One mailbox for the whole module (the tests only read it), and its byte profile."""
    from archiver.account import TLSOptions, parse_endpoint

    user = dovecot.new_user("net")
    _fill(dovecot, user)
    fp = dovecot.fingerprint(user)
    expected = _served(dovecot, user)
    with FaultProxy(dovecot.imaps_port) as proxy:
        ep = parse_endpoint(f"imaps://{user.name}@127.0.0.1:{proxy.port}",
                            tls=TLSOptions(cafile=dovecot.cafile))
        src = ImapSource(ep, user.password, timeout=10)
        src.connect()
        src.close()
        deadline = time.monotonic() + 5
        while proxy.connections[0].ended == "" and time.monotonic() < deadline:
            time.sleep(0.01)
        setup = proxy.down_bytes(1)
        dest = tmp_path_factory.mktemp("profile") / "a"
        code, _, err = run_cli(_args(Filled(dovecot, user, expected, fp, 0, 0), dest,
                                     proxy.port))
        assert code == 0, err
        assert len(proxy.connections) == 2
        total = proxy.down_bytes(2)
    assert 1000 < setup < 20_000 < total
    paths = frozenset(archived_files(dest))
    assert len(paths) == sum(expected.values())
    return Filled(dovecot, user, expected, fp, setup, total, paths)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect after 0.05 s (doubling) instead of 1 s: same logic, less waiting."""
    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.05))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.05)


def _assert_consistent(filled: Filled, dest: Path) -> None:
    """What was recorded is verified, exact, and recorded once (it may be incomplete)."""
    stored = Counter(archived_files(dest).values())
    assert not stored - filled.expected, "a stored message differs from the server's bytes"
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 0, out
    keys = [(r["folder"], r["uidvalidity"], r["uid"]) for r in index_records(dest)
            if r["type"] == "msg"]
    assert len(keys) == len(set(keys)), "a message was recorded twice"


def _assert_complete(filled: Filled, dest: Path) -> None:
    _assert_consistent(filled, dest)
    files = archived_files(dest)
    assert Counter(files.values()) == filled.expected, "archive incomplete"
    assert set(files) == filled.paths, "files are not where a clean run puts them"
    assert not [p for p in dest.rglob("tmp/*")], "a partial file was left in tmp/"


def _assert_one_line_error(err: str, start: str) -> None:
    """No traceback; exactly one line starting with ``start`` explains the outcome."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(start)]
    assert len(lines) == 1, err


def _rerun_completes(filled: Filled, dest: Path) -> None:
    code, _, err = run_cli(_args(filled, dest))
    assert code == 0, err
    _assert_complete(filled, dest)


@pytest.fixture(autouse=True)
def _server_unchanged(request: pytest.FixtureRequest) -> Any:
    yield
    if "filled" in request.fixturenames:
        f: Filled = request.getfixturevalue("filled")
        assert f.server.fingerprint(f.user) == f.fingerprint, "the source server was changed"


# ---------------------------------------------------------------- tests


def test_cut_mid_fetch_on_first_connection_reconnects_and_finishes(
        filled: Filled, tmp_path: Path, fast_backoff: None) -> None:
    dest = tmp_path / "a"
    cut = filled.setup_bytes + (filled.total_bytes - filled.setup_bytes) // 2
    with FaultProxy(filled.server.imaps_port, first(Fault(cut_after=cut))) as proxy:
        code, _, err = run_cli(_args(filled, dest, proxy.port))
        assert proxy.connections[0].ended == "cut"
        assert len(proxy.connections) == 2, "expected exactly one reconnect"
    assert code == 0, err
    _assert_complete(filled, dest)


def test_cut_on_every_connection_ends_partial_then_rerun_completes(
        filled: Filled, tmp_path: Path, fast_backoff: None) -> None:
    dest = tmp_path / "a"
    cut = filled.setup_bytes + 20_000  # login, LIST, STATUS, listing pass; the fetch dies
    with FaultProxy(filled.server.imaps_port, every(Fault(cut_after=cut))) as proxy:
        code, out, err = run_cli(_args(filled, dest, proxy.port))
        conns = len(proxy.connections)
    assert code == 3, err
    _assert_one_line_error(err, "problem: connection lost")
    assert "connection lost" in err and "run the same command again" in err, err
    assert 2 <= conns <= 1 + archiver.engine.BackupOptions().max_reconnects
    _assert_consistent(filled, dest)
    _rerun_completes(filled, dest)


def _cut_points(filled: Filled) -> list[int]:
    """Deterministic: the TLS handshake, greeting, login, NAMESPACE, then seeded points.

    With Dovecot and TLS 1.3 the handshake is roughly the first 45 % of
    ``setup_bytes``, greeting and CAPABILITY the next 30 %, LOGIN and
    NAMESPACE the rest.
    """
    rng = random.Random(4242)
    setup, total = filled.setup_bytes, filled.total_bytes
    fixed = [0, 1, 7, 300] + [int(setup * f) for f in (0.45, 0.55, 0.7, 0.8, 0.88, 0.94)]
    spread = sorted(rng.randrange(setup, total) for _ in range(14))
    return [*fixed, *spread, total - 30]


def test_cut_at_many_points_ends_ok_or_partial_then_rerun_completes(
        filled: Filled, tmp_path: Path, fast_backoff: None) -> None:
    points = _cut_points(filled)
    assert len(set(points)) >= 20
    for i, cut in enumerate(points):
        dest = tmp_path / f"a{i}"
        with FaultProxy(filled.server.imaps_port, first(Fault(cut_after=cut))) as proxy:
            code, _, err = run_cli(_args(filled, dest, proxy.port))
        assert code in (0, 3), f"cut after {cut} bytes: exit {code}: {err}"
        assert "Traceback" not in err, err
        if dest.exists():
            _assert_consistent(filled, dest)
        _rerun_completes(filled, dest)


def test_stalled_server_does_not_hang(filled: Filled, tmp_path: Path,
                                      fast_backoff: None) -> None:
    dest = tmp_path / "a"
    stall = filled.setup_bytes + (filled.total_bytes - filled.setup_bytes) // 3
    start = time.monotonic()
    with FaultProxy(filled.server.imaps_port, first(Fault(stall_after=stall))) as proxy:
        code, _, err = run_cli([*_args(filled, dest, proxy.port), "--timeout", "2"])
        assert proxy.connections[0].down == stall
    elapsed = time.monotonic() - start
    assert code in (0, 3), err
    assert elapsed < 20, f"took {elapsed:.1f} s with --timeout 2"
    _assert_consistent(filled, dest)
    _rerun_completes(filled, dest)


def test_refused_reconnects_then_success(filled: Filled, tmp_path: Path,
                                         fast_backoff: None) -> None:
    """Connection 2 and 3 (the first reconnect attempts) are closed at once; 4 works."""
    dest = tmp_path / "a"
    cut = filled.setup_bytes + 30_000

    def plan(n: int) -> Fault:
        return {1: Fault(cut_after=cut), 2: Fault(refuse=True),
                3: Fault(refuse=True)}.get(n, CLEAN)

    with FaultProxy(filled.server.imaps_port, plan) as proxy:
        code, _, err = run_cli(_args(filled, dest, proxy.port))
        assert [c.ended for c in proxy.connections[:3]] == ["cut", "refused", "refused"]
    assert code == 0, err
    _assert_complete(filled, dest)


def test_ctrl_c_during_a_slow_fetch(filled: Filled, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    with FaultProxy(filled.server.imaps_port, every(Fault(delay=0.02)), chunk=4096) as proxy:
        argv = source_args(Via(proxy.port, filled.server.cafile), filled.user, dest)
        proc = subprocess.Popen([sys.executable, "-m", "archiver", "backup", *argv],
                                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if proxy.connections and proxy.connections[0].down > filled.setup_bytes + 100_000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        try:
            _, err_b = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = err_b.decode()
    assert proc.returncode == 130, err
    _assert_one_line_error(err, "archiver: ")
    assert "run the same command" in err, err
    if dest.exists():
        _assert_consistent(filled, dest)
    _rerun_completes(filled, dest)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.8, 0.92])
def test_reconnect_dropped_during_its_setup(filled: Filled, tmp_path: Path, fast_backoff: None,
                                            fraction: float) -> None:
    """The first reconnect dies in its TLS handshake / greeting / LOGIN / NAMESPACE.

    It must count as one more lost connection (never "wrong password", never a
    traceback); the next attempt finishes the run.
    """
    dest = tmp_path / "a"
    cut = filled.setup_bytes + (filled.total_bytes - filled.setup_bytes) // 2

    def plan(n: int) -> Fault:
        return {1: Fault(cut_after=cut),
                2: Fault(cut_after=int(filled.setup_bytes * fraction))}.get(n, CLEAN)

    with FaultProxy(filled.server.imaps_port, plan) as proxy:
        code, _, err = run_cli(_args(filled, dest, proxy.port))
        assert [c.ended for c in proxy.connections[:2]] == ["cut", "cut"]
        assert len(proxy.connections) == 3
    assert code == 0, err
    _assert_complete(filled, dest)
