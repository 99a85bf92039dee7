"""Restore under network faults: 100+ seeded cuts of the line to the TARGET server.

A small archive (48 messages in three folders, four of them 50-300 KB) is
backed up once from ``dovecot``.  Each cut point restores it to a fresh user
on ``dovecot_new`` through tests/proxy.py (TLS passes through).  Half the
points cut after N server->client bytes (TLS handshake, greeting, login,
LIST/CREATE/SELECT, the dedup listing, APPEND answers); the other half cut
after N client->server bytes, which lands almost always inside an APPEND
literal -- the upload dominates what the client sends.  Even-numbered points
cut only the first connection (the reconnect must finish the run: exit 0),
odd ones every connection (exit 5, or 3); never a traceback or another code.

After each cut a clean rerun of the same command (same proxy port, so the
same journal; every fourth rerun goes direct to Dovecot, so a different
journal and the dedup listing has to find what landed) must exit 0 and the
target must hold every archived message exactly once -- no half message, no
duplicate -- compared per folder as multisets after line-end normalisation
(Dovecot stores APPENDed mail with LF and serves CRLF).

Runs in-process via the CLI with the reconnect back-off patched to 0.05 s.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import archiver.restore.upload
from archiver.sources.session import ImapSession
from tests.counters import counter
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli
from tests.proxy import CLEAN, Fault, FaultProxy, Plan, every, first

CUTS = 100
RESULTS = counter("restore faults")


def _message(rng: random.Random, i: int, size: int) -> bytes:
    head = (f"From: r{i}@example.org\r\nTo: me@example.org\r\nSubject: restore cut {i}\r\n"
            f"Message-ID: <rcut{i}@example.org>\r\n"
            f"Date: Wed, 3 Jan 2024 10:{i % 60:02d}:00 +0900\r\n\r\n").encode()
    body = b"".join(b"%s\r\n" % bytes(rng.choice(b"abcdefghij .") for _ in range(70))
                    for _ in range(max(1, size // 72)))
    return head + body


def norm(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").rstrip(b"\r")


def _contents(server: DovecotServer, user: MailUser) -> dict[str, Counter[bytes]]:
    return {folder: Counter(norm(d) for _, d, _, _ in msgs)
            for folder, msgs in server.fetch_all(user).items() if msgs}


@dataclass
class Source:
    dest: Path
    expected: dict[str, Counter[bytes]]
    total_down: int
    total_up: int


def _restore_args(dest: Path, server: DovecotServer, user: MailUser, port: int) -> list[str]:
    pw = password_file(user, dest.parent / ".pw-target")
    return ["restore", str(dest), f"imaps://{user.name}@127.0.0.1:{port}",
            "--target-cafile", str(server.cafile), "--target-password-file", str(pw),
            "--timeout", "5", "--quiet"]


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archiver.restore.upload, "RestoreOptions",
                        functools.partial(archiver.restore.upload.RestoreOptions, backoff=0.05,
                                          max_reconnects=3))
    monkeypatch.setattr(ImapSession, "connect_backoff", 0.05)


@pytest.fixture(scope="module")
def source(dovecot: DovecotServer, dovecot_new: DovecotServer,
           tmp_path_factory: pytest.TempPathFactory) -> Source:
    user = dovecot.new_user("rcut")
    rng = random.Random(11)
    sizes = [rng.randint(300, 8000) for _ in range(44)] + [50_000, 120_000, 200_000, 300_000]
    rng.shuffle(sizes)
    with dovecot.session(user) as c:
        for i, size in enumerate(sizes):
            dovecot.append(user, ("INBOX", "Sent", "受信箱/講義")[i % 3], _message(rng, i, size),
                           ("\\Seen",) if i % 4 == 0 else (), client=c)
    dest = tmp_path_factory.mktemp("rcut") / "a"
    code, _, err = backup(dovecot, user, dest, "--quiet")
    assert code == 0, err
    expected = _contents(dovecot, user)
    assert sum(sum(c.values()) for c in expected.values()) == 48
    # the byte profile of a clean restore, both directions
    new = dovecot_new.new_user("rprof")
    with FaultProxy(dovecot_new.imaps_port) as proxy:
        code, _, err = run_cli(_restore_args(dest, dovecot_new, new, proxy.port))
        assert code == 0, err
        down = sum(c.down for c in proxy.connections)
    assert _contents(dovecot_new, new) == expected
    up = sum(len(d) for msgs in expected.values() for d in msgs.elements())
    return Source(dest, expected, down, up)


def _cut_points(total: int, n: int, seed: int, fixed: list[int]) -> list[int]:
    rng = random.Random(seed)
    points = set(fixed)
    while len(points) < n:
        points.add(rng.randrange(0, total))
    return sorted(points)


def _fault(kind: str, cut: int) -> Fault:
    return Fault(cut_after=cut) if kind == "down" else Fault(cut_up_after=cut)


def test_random_target_cut_points_then_rerun_is_exact(
        source: Source, dovecot_new: DovecotServer, fast_backoff: None, stress: bool) -> None:
    n = CUTS * (4 if stress else 1) // 2
    # down: TLS handshake, greeting, login, LIST, then anywhere; up: login, then the upload
    points = ([("down", p) for p in _cut_points(source.total_down, n, 31,
                                                 [0, 1, 5, 100, 400, 1000, 2000, 3000])]
              + [("up", p) for p in _cut_points(source.total_up, n, 32, [0, 1, 300, 800])])
    assert len(points) >= CUTS
    outcomes: Counter[str] = Counter()
    for i, (kind, cut) in enumerate(points):
        user = dovecot_new.new_user("rc")
        plan: Plan = (first if i % 2 == 0 else every)(_fault(kind, cut))
        with FaultProxy(dovecot_new.imaps_port, plan) as proxy:
            code, _, err = run_cli(_restore_args(source.dest, dovecot_new, user, proxy.port))
            what = f"{kind} cut after {cut} ({'first' if i % 2 == 0 else 'every'})"
            assert "Traceback" not in err, f"{what}: {err}"
            assert code in (0, 3, 5), f"{what}: exit {code}: {err}"
            if code != 0:
                lines = [x for x in err.splitlines() if x.strip()]
                assert lines and all(x.startswith(("problem:", "archiver: error", "some ",
                                                   "partial", "note:", "target "))
                                     for x in lines), f"{what}: {err}"
            if i % 2 == 0:
                assert code == 0, f"{what}: only the first connection was cut: {err}"
            outcomes[{0: "recovered", 3: "partial", 5: "connect-failed"}[code]] += 1
            # no half message and no duplicate, even before the rerun
            got = _contents(dovecot_new, user)
            for folder, msgs in got.items():
                extra = msgs - source.expected.get(folder, Counter())
                assert not extra, f"{what}: {folder} holds a message not archived (half?)"
            proxy.plan = every(CLEAN)
            port = dovecot_new.imaps_port if i % 4 == 3 else proxy.port
            code, _, err = run_cli(_restore_args(source.dest, dovecot_new, user, port))
            assert code == 0, f"rerun after {what}: {err}"
        assert _contents(dovecot_new, user) == source.expected, f"after {what}"
    RESULTS["restore cut points recovered after rerun"] += len(points)
    RESULTS["restore cuts inside the upload (client->server)"] += sum(
        1 for k, _ in points if k == "up")
    for k, v in outcomes.items():
        RESULTS[f"restore cut outcome {k}"] += v
    assert outcomes["recovered"] > 0 and outcomes["connect-failed"] + outcomes["partial"] > 0
