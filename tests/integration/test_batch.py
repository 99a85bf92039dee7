"""``archiver batch``: many accounts of a real Dovecot into one ROOT, as IT staff run it.

One module-scoped set of 32 accounts (a few small messages each, one in a
Japanese folder) plus a user the server does not know; one full run with
``--jobs 8`` is shared by the tests that only read its results.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archiver.batch.accounts import load_accounts
from archiver.batch.runner import BackupFlags, BatchOptions, MasterLogin, run_batch
from archiver.batch.state import read_records
from tests.dovecot import (
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    MailUser,
    _ensure_folder,
    raw_append,
    served_form,
)
from tests.helpers import REPO, archived_files
from tests.proxy import FaultProxy

N_USERS = 32
JA_FOLDER = "受信箱/講義"
UNKNOWN = "nobody-here"


@dataclass
class Staff:
    server: DovecotServer
    users: list[MailUser]
    expected: dict[str, tuple[int, int]]  # user -> (messages, bytes) as the server serves them
    accounts: Path  # CSV: every user with a password file, and UNKNOWN
    base: Path

    @property
    def source(self) -> str:
        return f"imaps://127.0.0.1:{self.server.imaps_port}"

    def subset(self, name: str, users: list[MailUser]) -> Path:
        path = self.base / name
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["user", "password_file"])
            for u in users:
                w.writerow([u.name, f"pw/{u.name}"])
        return path


def _message(i: int, k: int) -> bytes:
    return (f"From: user{i}@example.com\r\nTo: staff@example.com\r\nSubject: note {k} of "
            f"account {i}\r\nMessage-ID: <{i}.{k}@example.com>\r\n\r\n"
            + "line of text\r\n" * (5 + 3 * k)).encode()


def _japanese(i: int) -> bytes:
    return ("From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\nSubject: =?UTF-8?B?"
            "6K2w5LqL6Yyy?=\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            f"第{i}回 研究室ゼミの議事録です。\r\n").encode()


@pytest.fixture(scope="module")
def staff(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Staff:
    base = tmp_path_factory.mktemp("staff")
    (base / "pw").mkdir()
    users, expected = [], {}
    for i in range(N_USERS):
        user = dovecot.new_user("st")
        msgs = [("INBOX", _message(i, 0)), ("INBOX", _message(i, 1)), (JA_FOLDER, _japanese(i))]
        with dovecot.session(user) as c:
            _ensure_folder(c, JA_FOLDER)
            for folder, data in msgs:
                raw_append(c, folder, data)
        expected[user.name] = (len(msgs), sum(len(served_form(d)) for _, d in msgs))
        (base / "pw" / user.name).write_text(user.password + "\n")
        users.append(user)
    staff = Staff(dovecot, users, expected, base / "accounts.csv", base)
    staff.subset("accounts.csv", users)
    with open(staff.accounts, "a", encoding="utf-8") as fh:
        fh.write(f"{UNKNOWN},pw/{users[0].name}\n")
    return staff


def batch(staff: Staff, accounts: Path, root: Path, *extra: str,
          env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``archiver batch ACCOUNTS ROOT`` as its own process."""
    r = subprocess.run(_argv(staff, accounts, root, *extra), env=_env(env),
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _argv(staff: Staff, accounts: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "archiver", "batch", str(accounts), str(root),
            "--source", staff.source, "--cafile", str(staff.server.cafile),
            "--timeout", "20", *extra]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "JOB_COMPLETION", "ARCHIVER_PASSWORD",
                                "ARCHIVER_MASTER"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def archiver(*args: str) -> tuple[int, str, str]:
    r = subprocess.run([sys.executable, "-m", "archiver", *args], env=_env(),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def states(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((root / ".batch" / "state").glob("*.jsonl")):
        for rec in read_records(path):
            out[rec["user"]] = rec
    return out


def logins(staff: Staff, user: str) -> int:
    """How often Dovecot let ``user`` in (its log), the proof of a (re)download."""
    text = staff.server.log_file.read_text(errors="replace")
    return len(re.findall(rf"Login: user=<{re.escape(user)}>", text))


def report_rows(root: Path) -> list[tuple[Any, ...]]:
    code, out, err = archiver("batch-report", str(root), "--json")
    assert code in (0, 3), err
    return [(r["user"], r["status"], r["folders"], r["messages"], r["bytes"])
            for r in json.loads(out)["rows"]]


@dataclass
class Run:
    root: Path
    code: int
    summary: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def full_run(staff: Staff) -> Run:
    root = staff.base / "root"
    code, out, err = batch(staff, staff.accounts, root, "--jobs", "8", "--json")
    return Run(root, code, json.loads(out), err)


# ---------------------------------------------------------------- one full run


def test_batch_of_all_with_8_jobs_archives_every_account_byte_exact(
        staff: Staff, full_run: Run) -> None:
    for user in staff.users:
        dest = full_run.root / user.name
        served = sorted(body for msgs in staff.server.fetch_all(user).values()
                        for _, body, _, _ in msgs)
        assert sorted(archived_files(dest).values()) == served, user.name
        meta = json.loads((dest / ".archiver" / "archive.json").read_text())
        assert meta["source"]["user"] == user.name
    for user in staff.users[:3]:
        assert archiver("verify", str(full_run.root / user.name))[0] == 0


def test_report_counts_and_bytes_match_the_server(staff: Staff, full_run: Run) -> None:
    s = full_run.summary
    assert s["counts"] == {"ok": N_USERS, "partial": 0, "failed": 1, "running": 0,
                           "pending": 0}
    assert s["totals"]["messages"] == sum(n for n, _ in staff.expected.values())
    assert s["totals"]["bytes"] == sum(b for _, b in staff.expected.values())
    report = json.loads(Path(s["reports"][1]).read_text())
    rows = {r["user"]: r for r in report["rows"]}
    for name, (n, nbytes) in staff.expected.items():
        row = rows[name]
        assert (row["status"], row["messages"], row["bytes"], row["new"]) == ("ok", n, nbytes, n)
        assert row["folders"] == 3  # INBOX, 受信箱, 受信箱/講義
        assert 0 < row["peak_rss_mb"] < 200
    with open(s["reports"][0], encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == N_USERS + 1
    assert report_rows(full_run.root) == sorted(
        (r["user"], r["status"], r["folders"], r["messages"], r["bytes"])
        for r in report["rows"])
    code, out, _err = archiver("batch-report", str(full_run.root), "--csv", "-")
    rebuilt = {r["user"]: r for r in csv.DictReader(out.splitlines())}
    assert code == 3 and len(rebuilt) == N_USERS + 1
    assert rebuilt[staff.users[0].name]["manifest"].startswith(".batch/manifests/")
    code, _out, err = archiver("batch-report", str(staff.base))
    assert code == 2 and "has no batch state" in err


def test_unknown_user_fails_alone_and_the_batch_exits_3(full_run: Run) -> None:
    assert full_run.code == 3
    rec = states(full_run.root)[UNKNOWN]
    assert (rec["status"], rec["exit"], rec["reason"]) == ("failed", 4, "refused")
    assert "refused the login" in rec["error"]
    assert not (full_run.root / UNKNOWN).exists()
    assert "1 failed" in full_run.stderr or full_run.summary["counts"]["failed"] == 1


def test_manifests_pass_sha256sum_check_and_catch_a_changed_file(
        staff: Staff, full_run: Run, tmp_path: Path) -> None:
    for user in staff.users[:4]:
        manifest = full_run.root / ".batch" / "manifests" / f"{user.name}.sha256"
        r = subprocess.run(["sha256sum", "-c", "--strict", str(manifest)],
                           cwd=full_run.root / user.name, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        listed = r.stdout.count(": OK")
        assert listed == staff.expected[user.name][0] + 2  # messages + archive.json + index
    assert not (full_run.root / ".batch" / "manifests" / f"{UNKNOWN}.sha256").exists()
    copy = tmp_path / "copy"
    shutil.copytree(full_run.root / staff.users[0].name, copy)
    victim = next(p for p in copy.rglob("*") if p.is_file() and p.parent.name == "cur")
    victim.write_bytes(victim.read_bytes() + b"x")
    manifest = full_run.root / ".batch" / "manifests" / f"{staff.users[0].name}.sha256"
    r = subprocess.run(["sha256sum", "-c", "--quiet", str(manifest)], cwd=copy,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "FAILED" in r.stdout


def test_rerun_skips_the_finished_accounts_and_retries_the_failed(
        staff: Staff, full_run: Run) -> None:
    before = {u.name: logins(staff, u.name) for u in staff.users}
    code, out, _err = batch(staff, staff.accounts, full_run.root, "--jobs", "8", "--json")
    summary = json.loads(out)
    assert code == 3
    assert (summary["ran"], summary["skipped"]) == (1, N_USERS)
    assert {u.name: logins(staff, u.name) for u in staff.users} == before


def test_an_unusable_dest_fails_that_account_alone(staff: Staff, tmp_path: Path) -> None:
    users = staff.users[:3]
    accounts = staff.subset("dest.csv", users)
    root = tmp_path / "root"
    (root / users[1].name).mkdir(parents=True)
    (root / users[1].name / "thesis.pdf").write_bytes(b"not mail")  # someone else's files
    code, out, err = batch(staff, accounts, root, "--jobs", "3", "--json")
    assert code == 3, err
    final = states(root)
    assert (final[users[1].name]["status"], final[users[1].name]["exit"]) == ("failed", 6)
    assert "already holds other files" in final[users[1].name]["error"]
    assert [final[u.name]["status"] for u in (users[0], users[2])] == ["ok", "ok"]
    assert (root / users[1].name / "thesis.pdf").read_bytes() == b"not mail"


# ---------------------------------------------------------------- crash and resume


def test_kill_9_of_the_batch_then_rerun_completes_without_refetching(
        staff: Staff, tmp_path: Path) -> None:
    users = staff.users[:12]
    accounts = staff.subset("kill.csv", users)
    root = tmp_path / "root"
    proc = subprocess.Popen(_argv(staff, accounts, root, "--jobs", "2", "--quiet"),
                            env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [u for u, r in states(root).items() if r["status"] == "ok"]
        if len(done) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = states(root)
    finished = {u for u, r in at_kill.items() if r["status"] == "ok"}
    assert 3 <= len(finished) < len(users), "the kill came too late to prove anything"
    # the orphaned backups got SIGINT (PR_SET_PDEATHSIG) and end on their own
    for rec in at_kill.values():
        if rec["status"] == "running":
            _wait_gone(rec["pid"])
    before = {u: logins(staff, u) for u in finished}
    code, out, err = batch(staff, accounts, root, "--jobs", "2", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["counts"]["ok"] == len(users)
    assert summary["skipped"] == len(finished)
    assert {u: logins(staff, u) for u in finished} == before
    for u in users:
        assert len(archived_files(root / u.name)) == staff.expected[u.name][0]


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"backup {pid} still runs 30 s after its batch was killed")


def test_sigint_stops_the_batch_cleanly_with_exit_130(staff: Staff, tmp_path: Path) -> None:
    accounts = staff.subset("int.csv", staff.users[:10])
    root = tmp_path / "root"
    proc = subprocess.Popen(_argv(staff, accounts, root, "--jobs", "2", "--json"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            r["status"] == "ok" for r in states(root).values()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert json.loads(out)["status"] == "interrupted"
    final = states(root)
    assert "running" not in {r["status"] for r in final.values()}
    assert any(r["status"] == "pending" for r in final.values())
    assert len(list((root / ".batch" / "reports").glob("*.json"))) == 1


# ---------------------------------------------------------------- shards


def _shard(user: str, n: int) -> int:
    return int(hashlib.sha256(user.encode()).hexdigest(), 16) % n + 1


@pytest.fixture(scope="module")
def sharded(staff: Staff) -> Path:
    """The same accounts as three shards running at once into one ROOT."""
    root = staff.base / "sharded"
    procs = [subprocess.Popen(_argv(staff, staff.accounts, root, "--shard", f"{k}/3",
                                    "--jobs", "3", "--quiet"), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for k in (1, 2, 3)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode in (0, 3), err
    return root


def test_shards_1_2_3_of_3_partition_the_accounts_exactly(staff: Staff, sharded: Path) -> None:
    everyone = {u.name for u in staff.users} | {UNKNOWN}
    seen: set[str] = set()
    for k in (1, 2, 3):
        users = {r["user"] for r in read_records(
            sharded / ".batch" / "state" / f"shard-{k}-of-3.jsonl")}
        assert users == {u for u in everyone if _shard(u, 3) == k}
        assert not users & seen
        seen |= users
    assert seen == everyone
    assert not (sharded / ".batch" / "state" / "all.jsonl").exists()


def test_merged_report_of_the_shards_equals_a_single_runs(
        full_run: Run, sharded: Path) -> None:
    assert report_rows(sharded) == report_rows(full_run.root)


def test_slurm_array_and_indexed_job_variables_pick_the_shard(
        staff: Staff, sharded: Path) -> None:
    slurm = {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10",
             "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "1"}
    for env, extra, k in ((slurm, (), 2), ({"JOB_COMPLETION_INDEX": "2"},
                                           ("--shard-count", "3"), 3)):
        code, out, err = batch(staff, staff.accounts, sharded, "--json", *extra, env=env)
        summary = json.loads(out)
        assert summary["shard"] == f"{k}/3", err
        mine = [u for u in [x.name for x in staff.users] + [UNKNOWN] if _shard(u, 3) == k]
        assert summary["accounts"] == len(mine)
        assert summary["ran"] == (1 if UNKNOWN in mine else 0)  # the done ones are skipped
    code, out, err = batch(staff, staff.accounts, sharded, "--json",
                           env=dict(slurm, SLURM_ARRAY_TASK_STEP="2"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "SLURM_ARRAY_TASK_STEP=2" in err
    assert json.loads(out)["status"] == "error"


# ---------------------------------------------------------------- the admin login


def _admin_accounts(staff: Staff, name: str, users: list[str], mbox: str = "") -> Path:
    path = staff.base / name
    rows = [f'[defaults]\nsource = "{staff.source}"\nnote = "departed 2026"\n']
    rows += [f'[[account]]\nuser = "{u}"\n' + ('format = "mbox"\n' if u == mbox else "")
             for u in users]
    path.write_text("\n".join(rows), encoding="utf-8")
    return path


def test_admin_login_batch_archives_as_the_users(staff: Staff, tmp_path: Path) -> None:
    users = staff.users[:5]
    accounts = _admin_accounts(staff, "admin.toml", [u.name for u in users],
                               mbox=users[1].name)
    pw = tmp_path / "admin.pw"
    pw.write_text(MASTER_PASSWORD + "\n")
    root = tmp_path / "root"
    code, out, err = batch(staff, accounts, root, "--master-user", MASTER_USER,
                           "--master-password-file", str(pw), "--jobs", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["ok"] == len(users)
    assert MASTER_PASSWORD not in (root / ".batch" / "state" / "all.jsonl").read_text()
    for u in users:
        meta = json.loads((root / u.name / ".archiver" / "archive.json").read_text())
        assert meta["source"]["user"] == u.name
    # the user's own login continues the archive the admin made: nothing new to fetch
    own = users[0]
    code, out, err = archiver("backup", f"{staff.source.replace('//', '//' + own.name + '@')}",
                              str(root / own.name), "--cafile", str(staff.server.cafile),
                              "--password-file", str(staff.base / "pw" / own.name), "--json")
    assert code == 0, err
    assert json.loads(out)["new"] == 0
    meta = json.loads((root / users[1].name / ".archiver" / "archive.json").read_text())
    assert meta["format"] == "mbox"
    r = subprocess.run(["sha256sum", "-c", "--quiet", str(
        root / ".batch" / "manifests" / f"{users[1].name}.sha256")], cwd=root / users[1].name,
        capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    # --refresh runs the accounts already ok again (new mail), and finds nothing new
    code, out, err = batch(staff, accounts, root, "--master-user", MASTER_USER,
                           "--master-password-file", str(pw), "--refresh", "--json")
    assert code == 0, err
    assert (json.loads(out)["ran"], json.loads(out)["skipped"]) == (len(users), 0)
    assert all(r["new"] == 0 for r in states(root).values())


def test_three_admin_refusals_stop_the_batch_with_exit_4(staff: Staff, tmp_path: Path) -> None:
    accounts = _admin_accounts(staff, "wrong.toml", [u.name for u in staff.users[:12]])
    root = tmp_path / "root"
    code, out, err = batch(staff, accounts, root, "--master-user", MASTER_USER, "--jobs", "8",
                           "--json", env={"ARCHIVER_MASTER_PASSWORD": "not-the-password"})
    assert code == 4, err
    summary = json.loads(out)
    assert (summary["status"], summary["reason"]) == ("error", "admin-refused")
    assert "--master-password-file" in summary["error"]
    tried = [r for r in states(root).values() if r["status"] != "pending"]
    assert len(tried) == 3  # one at a time until a login works: 3 refusals, 9 untouched
    assert {r["reason"] for r in tried} == {"admin-refused"}


# ---------------------------------------------------------------- a shared old server


class CountingProxy(FaultProxy):
    """Forwards to Dovecot and remembers the most connections open at once."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.open = 0
        self.peak = 0
        self._count = threading.Lock()

    def _serve(self, client: Any, st: Any) -> None:
        with self._count:
            self.open += 1
            self.peak = max(self.peak, self.open)
        try:
            super()._serve(client, st)
        finally:
            with self._count:
                self.open -= 1


def test_max_connections_caps_the_connections_to_one_server(
        staff: Staff, tmp_path: Path) -> None:
    users = staff.users[:8]
    accounts = staff.subset("cap.csv", users)
    with CountingProxy(staff.server.imaps_port) as proxy:
        r = subprocess.run(
            [sys.executable, "-m", "archiver", "batch", str(accounts), str(tmp_path / "root"),
             "--source", f"imaps://127.0.0.1:{proxy.port}", "--cafile",
             str(staff.server.cafile), "--jobs", "8", "--max-connections", "2", "--json"],
            env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["ok"] == len(users)
    assert len(proxy.connections) >= len(users)
    assert proxy.peak <= 2


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot that allows one connection per user and address."""
    server = DovecotServer(tmp_path_factory.mktemp("strict"), extra_config=(
        "protocol imap {\n  mail_max_userip_connections = 1\n}\n")).start()
    try:
        yield server
    finally:
        server.stop()


def test_an_account_the_server_finds_too_busy_is_retried_later(
        strict_server: DovecotServer, tmp_path: Path) -> None:
    users = [strict_server.new_user("busy") for _ in range(2)]
    for u in users:
        strict_server.append(u, "INBOX", b"Subject: hi\r\n\r\nhello\r\n")
    (tmp_path / "a.csv").write_text("user\n" + "".join(f"{u.name}\n" for u in users))
    held = strict_server.imap(users[0])  # the user is "still logged in" elsewhere
    timer = threading.Timer(2.0, held.logout)
    timer.start()
    try:
        accounts = load_accounts(tmp_path / "a.csv",
                                 f"imaps://127.0.0.1:{strict_server.imaps_port}")
        result = run_batch(accounts, tmp_path / "root", options=BatchOptions(
            jobs=2, retry_base=0.5, flags=BackupFlags(cafile=strict_server.cafile),
            master=MasterLogin(MASTER_USER), master_password=MASTER_PASSWORD))
    finally:
        timer.cancel()
    rows = {r.user: r for r in result.report.rows}
    assert result.exit_code == 0
    assert rows[users[0].name].status == "ok" and rows[users[0].name].attempts >= 2
    assert rows[users[1].name].attempts == 1
    busy = [r for r in read_records(tmp_path / "root" / ".batch" / "state" / "all.jsonl")
            if r["user"] == users[0].name and r.get("reason") == "server-busy"]
    assert busy and "Maximum number of connections" in busy[0]["error"]


def test_a_users_own_login_refused_for_too_many_connections_is_busy_not_refused(
        strict_server: DovecotServer, tmp_path: Path) -> None:
    """Dovecot's NO [LIMIT] at LOGIN is a temporary refusal (exit 5, reason unavailable),
    so a batch retries the account instead of failing it as a wrong password."""
    user = strict_server.new_user("own")
    strict_server.append(user, "INBOX", b"Subject: hi\r\n\r\nhello\r\n")
    held = strict_server.imap(user)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "archiver", "backup",
             f"imaps://{user.name}@127.0.0.1:{strict_server.imaps_port}",
             str(tmp_path / "a"), "--cafile", str(strict_server.cafile), "--json"],
            env=_env({"ARCHIVER_PASSWORD": user.password}), capture_output=True, text=True,
            timeout=120)
    finally:
        held.logout()
    answer = json.loads(r.stdout)
    assert (r.returncode, answer["reason"]) == (5, "unavailable"), r.stderr
    assert "Maximum number of connections" in answer["error"]
