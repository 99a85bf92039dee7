"""Faults at random points: 100+ network cuts for IMAP and for POP3, and a kill -9 loop.

Network: tests/proxy.py sits between archiver and the real Dovecot (IMAPS and
POP3S ports; TLS passes through, so a cut lands inside the handshake, a TLS
record or a message literal).  Each cut point comes from a fixed seed over
the byte profile of a clean run; the run must end with exit 0 (it reconnected)
or 3 (partial, one clear line), what it recorded must be verified and exact,
and a plain rerun must complete the archive with every message exactly once.
Stalls longer than ``--timeout`` and a per-packet delay are covered too.

Processes: 50 backups (25 Maildir, 25 mbox) are each killed with SIGKILL at a
random instant while new mail keeps arriving; after the last one a rerun
completes, ``archiver verify`` is clean and every message is there once.

Everything runs in-process via the CLI entry point with the reconnect
back-off patched to 0.05 s and 3 attempts (tests/test_network.py does the
same); even-numbered points cut only the first connection (the reconnect
must finish the run), odd ones every connection (the run must end "partial",
or exit 5 when even the first login cannot complete); ``--stress``
runs 4x the cut points and 2x the kills.
"""

from __future__ import annotations

import functools
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from archiver.index import read_index
from archiver.sources.imap import ImapSource
from archiver.sources.pop3 import Pop3Source
from archiver.stores.base import norm_hash
from tests.counters import counter
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import archived_files, backup_process, password_file, run_cli
from tests.proxy import Fault, FaultProxy, every, first

CUTS = 100
RESULTS = counter("faults")


@dataclass
class _Via:
    """Stands in for the server in ``source_args``: Dovecot's CA, the proxy's port."""

    imaps_port: int
    cafile: Path


@dataclass
class Box:
    server: DovecotServer
    user: MailUser
    expected: Counter[bytes]  # IMAP: exact bytes; POP3: norm hashes (as bytes)
    total_imap: int
    total_pop3: int


def _message(rng: random.Random, i: int, size: int) -> bytes:
    head = (f"From: s{i}@example.org\r\nTo: me@example.org\r\nSubject: fault {i}\r\n"
            f"Message-ID: <fault{i}@example.org>\r\n"
            f"Date: Tue, 2 Jan 2024 09:{i % 60:02d}:00 +0900\r\n\r\n").encode()
    body = b"".join(b"%s\r\n" % bytes(rng.choice(b"abcdefghij.") for _ in range(70))
                    for _ in range(max(1, size // 72)))
    return head + b".leading dot line\r\n" + body  # POP3 must dot-stuff it


def _args_imap(box: Box, dest: Path, port: int) -> list[str]:
    pw = password_file(box.user, dest.parent / ".pw")
    return ["backup", f"imaps://{box.user.name}@127.0.0.1:{port}", str(dest), "--cafile",
            str(box.server.cafile), "--password-file", str(pw), "--timeout", "5", "--quiet"]


def _args_pop3(box: Box, dest: Path, port: int) -> list[str]:
    pw = password_file(box.user, dest.parent / ".pw")
    return ["backup", f"pop3s://{box.user.name}@127.0.0.1:{port}", str(dest), "--cafile",
            str(box.server.cafile), "--password-file", str(pw), "--timeout", "5", "--quiet"]


def _profile(target: int, args: Any, tmp: Path) -> int:
    with FaultProxy(target) as proxy:
        code, _, err = run_cli(args(proxy.port))
        assert code == 0, err
        return sum(c.down for c in proxy.connections)


@pytest.fixture(scope="module")
def box(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Box:
    user = dovecot.new_user("faults")
    rng = random.Random(7)
    sizes = [rng.randint(200, 6000) for _ in range(16)] + [120_000]
    with dovecot.session(user) as c:
        for i, size in enumerate(sizes):
            dovecot.append(user, ("INBOX", "Sent")[i % 2], _message(rng, i, size),
                           client=c)
    expected = Counter(d for msgs in dovecot.fetch_all(user).values() for _, d, _, _ in msgs)
    base = tmp_path_factory.mktemp("faults")
    b = Box(dovecot, user, expected, 0, 0)
    b.total_imap = _profile(dovecot.imaps_port,
                            lambda port: _args_imap(b, base / "i", port), base)
    b.total_pop3 = _profile(dovecot.pop3s_port,
                            lambda port: _args_pop3(b, base / "p", port), base)
    assert b.total_imap > 130_000 and b.total_pop3 > 100_000
    return b


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.05,
                                          max_reconnects=3))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.05)
    monkeypatch.setattr(Pop3Source, "connect_backoff", 0.05)


def _records(dest: Path) -> list[dict[str, Any]]:
    return read_index(dest / ".archiver" / "index.jsonl.zst").records


def _check_recorded(dest: Path, exact: Counter[bytes] | None, norms: Counter[str]) -> None:
    """What is recorded is verified, exact, once (it may be incomplete)."""
    files = archived_files(dest)
    if exact is not None:
        assert not Counter(files.values()) - exact, "a stored message differs from the server"
    assert not Counter(norm_hash(d) for d in files.values()) - norms
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 0, out
    keys = [(r["folder"], r.get("uidvalidity"), r.get("uid"), r.get("uidl"))
            for r in _records(dest) if r["type"] == "msg"]
    assert len(keys) == len(set(keys)), "a message was recorded twice"


def _cut_points(total: int, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    fixed = [0, 1, 5, 100, 400, 1000, 2000, 3000]  # TLS handshake, greeting, login
    return sorted(set(fixed + [rng.randrange(0, total) for _ in range(n - len(fixed))]))


def _one_cut(box: Box, dest: Path, target: int, args: Any, cut: int, plan: Any) -> str:
    with FaultProxy(target, plan(Fault(cut_after=cut))) as proxy:
        code, _, err = run_cli(args(proxy.port))
    assert code in (0, 3, 5), f"cut after {cut}: exit {code}: {err}"
    assert "Traceback" not in err, err
    if code != 0:
        lines = [x for x in err.splitlines() if x.strip()]
        assert lines and all(x.startswith(("problem:", "some messages", "archiver: error"))
                             for x in lines), err
    return {0: "recovered", 3: "partial", 5: "connect-failed"}[code]


def _norms(box: Box) -> Counter[str]:
    return Counter(norm_hash(d) for d in box.expected.elements())


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_random_cut_points_then_rerun_completes(box: Box, tmp_path: Path, fast_backoff: None,
                                               stress: bool, proto: str) -> None:
    """100 seeded cut points (first connection cut; the reconnect may finish the run)."""
    target = box.server.imaps_port if proto == "imap" else box.server.pop3s_port
    total = box.total_imap if proto == "imap" else box.total_pop3
    n = CUTS * (4 if stress else 1)
    points = _cut_points(total, n, seed=2024 if proto == "imap" else 2025)
    assert len(points) >= CUTS - 3
    outcomes: Counter[str] = Counter()
    inbox_norms = Counter(norm_hash(d) for _, d, _, _ in box.server.fetch_all(box.user)["INBOX"])
    for i, cut in enumerate(points):
        dest = tmp_path / f"{proto}{i}"
        args = functools.partial(_args_imap if proto == "imap" else _args_pop3, box, dest)
        # Odd points: every connection is cut at the same byte (no reconnect can finish).
        plan = first if i % 2 == 0 else every
        outcomes[_one_cut(box, dest, target, args, cut, plan)] += 1
        if dest.exists() and (dest / ".archiver" / "archive.json").exists():
            _check_recorded(dest, box.expected if proto == "imap" else None,
                            _norms(box) if proto == "imap" else inbox_norms)
        code, _, err = run_cli(args(target))
        assert code == 0, f"rerun after cut {cut}: {err}"
        files = archived_files(dest)
        if proto == "imap":
            assert Counter(files.values()) == box.expected, f"cut {cut}: archive incomplete"
        else:
            assert Counter(norm_hash(d) for d in files.values()) == inbox_norms, cut
        _check_recorded(dest, box.expected if proto == "imap" else None,
                        _norms(box) if proto == "imap" else inbox_norms)
    RESULTS[f"{proto} cut points survived"] += len(points)
    for k, v in outcomes.items():
        RESULTS[f"{proto} cut outcome {k}"] += v
    assert outcomes["recovered"] > 0 and outcomes["partial"] > 0, outcomes


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_stall_longer_than_timeout_then_rerun(box: Box, tmp_path: Path, fast_backoff: None,
                                              proto: str) -> None:
    target = box.server.imaps_port if proto == "imap" else box.server.pop3s_port
    total = box.total_imap if proto == "imap" else box.total_pop3
    dest = tmp_path / "a"
    args = functools.partial(_args_imap if proto == "imap" else _args_pop3, box, dest)
    start = time.monotonic()
    with FaultProxy(target, first(Fault(stall_after=total // 2))) as proxy:
        argv = args(proxy.port)
        argv[argv.index("--timeout") + 1] = "1"
        code, _, err = run_cli(argv)
    elapsed = time.monotonic() - start
    assert code in (0, 3), err
    assert "Traceback" not in err
    assert elapsed < 15, f"{elapsed:.1f} s with --timeout 1"
    code, _, err = run_cli(args(target))
    assert code == 0, err
    RESULTS[f"{proto} stall recovered"] += 1


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_every_packet_delayed_still_completes(box: Box, tmp_path: Path, proto: str) -> None:
    target = box.server.imaps_port if proto == "imap" else box.server.pop3s_port
    dest = tmp_path / "a"
    args = functools.partial(_args_imap if proto == "imap" else _args_pop3, box, dest)
    with FaultProxy(target, lambda n: Fault(delay=0.01), chunk=2048) as proxy:
        code, _, err = run_cli(args(proxy.port))
    assert code == 0, err
    files = archived_files(dest)
    if proto == "imap":
        assert Counter(files.values()) == box.expected
    RESULTS[f"{proto} delayed run completed"] += 1


# ---------------------------------------------------------------- kill -9 loop


def _fill(server: DovecotServer, user: MailUser, start: int, count: int) -> None:
    with server.session(user) as c:
        for i in range(start, start + count):
            body = (f"Subject: kill {i}\r\nMessage-ID: <k{i}@t>\r\n\r\nFrom here\r\n"
                    + "y" * (i * 353 % 20000) + "\r\n").encode()
            server.append(user, ("INBOX", "Sent", "受信箱/講義")[i % 3], body, client=c)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_kill_9_loop(dovecot: DovecotServer, tmp_path: Path, stress: bool, fmt: str) -> None:
    """25 runs per format, each SIGKILLed at a random instant while mail keeps arriving."""
    user = dovecot.new_user("kill")
    _fill(dovecot, user, 0, 60)
    dest = tmp_path / "a"
    rng = random.Random(99 if fmt == "maildir" else 98)
    rounds = 50 if stress else 25
    killed_running = 0
    n = 60
    # Server bytes are slowed down (15 ms per 2 KB) so that a run lasts long enough
    # for a random instant to land inside it; the final rerun goes direct.  The
    # delay also makes the link "slow" to archiver: three connections and
    # COMPRESS, so the kills land in several connections' work at once.
    via = _Via(0, dovecot.cafile)
    with FaultProxy(dovecot.imaps_port, lambda _: Fault(delay=0.015), chunk=2048) as proxy:
        via.imaps_port = proxy.port
        for _ in range(rounds):
            proc = backup_process(via, user, dest, "--format", fmt, "--quiet")  # type: ignore[arg-type]
            time.sleep(rng.uniform(0.1, 0.8))
            if proc.poll() is None:
                killed_running += 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            # After every kill: the index reads, and nothing is recorded twice.
            keys = [(r["folder"], r["uidvalidity"], r["uid"]) for r in _records(dest)
                    if r.get("type") == "msg"] if dest.exists() else []
            assert len(keys) == len(set(keys))
            _fill(dovecot, user, n, 10)  # new mail, so every run has work to be killed in
            n += 10
    from tests.helpers import backup

    code, _, err = backup(dovecot, user, dest, "--format", fmt)
    assert code == 0, err
    assert run_cli(["verify", str(dest)])[0] == 0
    served = dovecot.fetch_all(user)
    expected = Counter(d for msgs in served.values() for _, d, _, _ in msgs)
    assert sum(expected.values()) == n
    if fmt == "maildir":
        got = Counter(archived_files(dest).values())
    else:
        from archiver.archive import Archive
        from archiver.stores.mbox import MboxStore

        store = MboxStore(dest)
        got = Counter(store.read_message(e) for e in
                      Archive.open_existing(dest).state().messages())
    assert got == expected, "missing or duplicated messages after the kill loop"
    assert killed_running >= rounds * 0.6, f"only {killed_running} kills hit a running backup"
    RESULTS[f"kill -9 ({fmt}) survived"] += rounds
    RESULTS[f"kill -9 ({fmt}) landed mid-run"] += killed_running
