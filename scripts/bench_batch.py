#!/usr/bin/env python3
"""Benchmark ``archiver batch`` (not a test): accounts per minute at several --jobs.

    .venv/bin/python scripts/bench_batch.py                      # 100 accounts x 200 messages
    .venv/bin/python scripts/bench_batch.py --accounts 40 --jobs 1,4

Starts a throwaway Dovecot on 127.0.0.1 (tests/dovecot.py, with its master user
``admin``), gives each account 200 messages of realistic sizes (mostly a few KB
of text, some HTML, a few attachments of 100-300 KB; a quarter Japanese, in a
Japanese folder), written straight into the Maildirs (fast to set up; Dovecot
assigns the UIDs on first access).  Then, for each --jobs value, a fresh ROOT
and one ``archiver batch ... --master-user admin --jobs J`` run, timed.

Prints, per --jobs: wall time, accounts per minute, messages per second,
MB/s, and the peak RSS of the account processes (max and median, from the
batch report, i.e. each child's ru_maxrss); then the speedup from --jobs 1 to
4.  Targets (issue 14): >= 1.6x from 1 to 4 on a 2-core machine where Dovecot
and archiver share the CPUs, <= 100 MB peak RSS per account process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.dovecot import (  # noqa: E402
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    maildir_folder_dirname,
)

JA_FOLDER = "受信箱/研究室"
WORDS = ["meeting", "schedule", "report", "budget", "lecture", "seminar", "thesis", "draft",
         "review", "please", "attached", "minutes", "next", "week", "deadline", "server",
         "account", "password", "migration"]
JA_TEXT = "研究室の定例ゼミの議事録を送ります。来週までに原稿を確認してください。"


def message(rng: random.Random, account: int, n: int) -> tuple[str, bytes]:
    """(folder, bytes) of one message: sizes drawn like a university mailbox."""
    roll = rng.random()
    ja = rng.random() < 0.25
    folder = JA_FOLDER if ja else ("Sent" if rng.random() < 0.2 else "INBOX")
    date = f"Mon, {1 + n % 28:02d} Mar 2003 {n % 24:02d}:{n % 60:02d}:00 +0900"
    head = (f"From: user{account}@example.ac.jp\r\nTo: lab{n % 7}@example.ac.jp\r\n"
            f"Date: {date}\r\nMessage-ID: <{account}.{n}@bench.example>\r\nMIME-Version: 1.0\r\n")
    if ja:
        subject = base64.b64encode(f"議事録 第{n}回".encode()).decode()
        body = (JA_TEXT + "\r\n") * rng.randint(3, 60)
        return folder, (head + f"Subject: =?UTF-8?B?{subject}?=\r\nContent-Type: text/plain; "
                        "charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                        + body).encode()
    if roll < 0.70:
        size = rng.randint(800, 8000)
        ctype = "text/plain; charset=us-ascii"
    elif roll < 0.95:
        size = rng.randint(10_000, 60_000)
        ctype = "text/html; charset=us-ascii"
    else:
        size = rng.randint(100_000, 300_000)
        blob = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
        return folder, (head + f"Subject: attachment {n}\r\nContent-Type: multipart/mixed; "
                        "boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee the "
                        "file\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-"
                        "Encoding: base64\r\n\r\n").encode() + blob + b"--b--\r\n"
    text: list[str] = []
    length = 0
    while length < size:
        text.append(rng.choice(WORDS))
        length += len(text[-1]) + 1
    lines = [" ".join(text[i:i + 12]) for i in range(0, len(text), 12)]
    return folder, (head + f"Subject: {' '.join(rng.sample(WORDS, 4))}\r\nContent-Type: "
                    f"{ctype}\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


def populate(server: DovecotServer, accounts: int, messages: int) -> tuple[list[str], int]:
    """Write every account's Maildir directly; (user names, total bytes)."""
    rng = random.Random(14)
    users, total = [], 0
    for a in range(accounts):
        user = server.new_user("b")
        root = server.maildir(user)
        for i in range(messages):
            folder, data = message(rng, a, i)
            d = root / maildir_folder_dirname(folder) if folder != "INBOX" else root
            for sub in ("cur", "new", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            path = d / "cur" / f"{1046400000 + i}.M{i}P{a}.bench:2,S"
            path.write_bytes(data)
            total += len(data)
        for p in [root, *root.rglob("*")]:
            os.chown(p, server.mail_uid, server.mail_gid)
        users.append(user.name)
        # Dovecot indexes a Maildir on its first access: do it now, so the first --jobs
        # measured does not pay for it alone
        server.doveadm("mailbox", "status", "-u", user.name, "messages", "*")
    return users, total


def run(server: DovecotServer, accounts_file: Path, pw: Path, root: Path, jobs: int,
        extra: list[str]) -> dict[str, object]:
    argv = [sys.executable, "-m", "archiver", "batch", str(accounts_file), str(root),
            "--cafile", str(server.cafile), "--master-user", MASTER_USER,
            "--master-password-file", str(pw), "--jobs", str(jobs), "--json", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
    report = json.loads(Path(summary["reports"][1]).read_text())
    rss = [row["peak_rss_mb"] for row in report["rows"]]
    return {"jobs": jobs, "exit": r.returncode, "seconds": round(wall, 1),
            "ok": summary["counts"]["ok"], "messages": summary["totals"]["messages"],
            "bytes": summary["totals"]["bytes"],
            "accounts_per_min": round(len(rss) / wall * 60, 1),
            "messages_per_s": round(summary["totals"]["messages"] / wall),
            "mb_per_s": round(summary["totals"]["bytes"] / wall / 1e6, 1),
            "rss_max_mb": max(rss), "rss_median_mb": statistics.median(rss)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--jobs", default="1,2,4,8")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--batch-args", default="", help="extra arguments for archiver batch")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-", dir="/var/tmp"))
    server = DovecotServer(work / "dovecot").start()
    try:
        t = time.monotonic()
        users, total = populate(server, args.accounts, args.messages)
        print(f"{len(users)} accounts x {args.messages} messages, {total / 1e6:.1f} MB, "
              f"written in {time.monotonic() - t:.1f} s", flush=True)
        accounts = work / "accounts.toml"
        accounts.write_text(f'[defaults]\nsource = "imaps://127.0.0.1:{server.imaps_port}"\n\n'
                            + "".join(f'[[account]]\nuser = "{u}"\n\n' for u in users))
        pw = work / "admin.pw"
        pw.write_text(MASTER_PASSWORD + "\n")
        results = []
        for jobs in [int(j) for j in args.jobs.split(",")]:
            root = work / f"root-{jobs}"
            res = run(server, accounts, pw, root, jobs, args.batch_args.split())
            results.append(res)
            print(json.dumps(res), flush=True)
            shutil.rmtree(root, ignore_errors=True)
        print()
        print("| --jobs | wall s | accounts/min | msg/s | MB/s | peak RSS max / median MB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['jobs']} | {r['seconds']} | {r['accounts_per_min']} | "
                  f"{r['messages_per_s']} | {r['mb_per_s']} | {r['rss_max_mb']} / "
                  f"{r['rss_median_mb']} |")
        rate = {r["jobs"]: float(r["accounts_per_min"]) for r in results}  # type: ignore[arg-type]
        if 1 in rate and 4 in rate:
            print(f"\nspeedup --jobs 1 -> 4: {rate[4] / rate[1]:.2f}x on {os.cpu_count()} CPUs")
        if args.json:
            args.json.write_text(json.dumps({"accounts": len(users), "messages": args.messages,
                                             "bytes": total, "cpus": os.cpu_count(),
                                             "runs": results}, indent=1) + "\n")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
