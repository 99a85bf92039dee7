#!/usr/bin/env python3
"""scripts/bench.py -- how fast is `archiver backup` against a big, realistic mailbox?

A benchmark, not a test.  Run it with the project's virtualenv (root on the
project's machine, see "Root" below)::

    .venv/bin/python scripts/bench.py                      # 20000 messages, 30 folders, 3 x 20 MB
    .venv/bin/python scripts/bench.py --messages 2000 --huge 1 --json bench.json
    .venv/bin/python scripts/bench.py --one-folder 200000 --max-size 20000 --no-raw
    .venv/bin/python scripts/bench.py --folders 10000 --messages 30000 --huge 0 --no-raw

Scale cases (issue 11): ``--one-folder N`` puts N messages into INBOX alone
(no huge ones); ``--folders 10000`` spreads the messages Zipf-like over that
many folders (``Archive/<year>/<month>`` beyond the named ones).  ``--max-size``
caps the message sizes so that a large count fits on the disk and in the time,
and ``--no-raw`` skips the raw-fetch reference.  Compare messages/s with the
medium corpus under the same ``--max-size``.

What it does
------------
1. Starts a throwaway Dovecot (tests/dovecot.py) and creates one user.
2. Fills that user's mailbox *fast*: the folders are created over IMAP, then
   the messages are written straight into the Dovecot Maildir++ directories
   (``.A.B/cur/<unique>,S=<size>,W=<vsize>:2,<flags>``, owned by the mail
   user, mtime = INTERNALDATE) and ``doveadm force-resync`` and ``doveadm
   index`` are run once.  N messages in total (``--messages``, the huge ones
   included): about 87.5 % text mail of 2-20 KB, 10 % of 20-100 KB, 2.5 %
   of 100 KB-5 MB (log-uniform, base64 attachments), plus ``--huge`` messages
   of ~20 MB; Japanese (ISO-2022-JP, Shift_JIS, UTF-8) and English; random
   flags; folders spread Zipf-like (INBOX biggest).  Seeded: same arguments,
   same corpus.
3. Measures
   (a) raw fetch: one IMAPS connection with imaplib -- per folder EXAMINE,
       ``UID FETCH 1:* (RFC822.SIZE)``, then ``UID FETCH a:b (BODY.PEEK[])``
       in chunks (<= 500 messages / <= 32 MB), data discarded.  The
       practical floor for any IMAP client;
   (b) ``archiver backup imaps://... DEST --cafile ... --password-file ...
       --quiet --json`` (a subprocess): wall time, MB/s, peak RSS (from
       ``/usr/bin/time -v``, else ``os.wait4``);
   (c) the same command again (nothing new: the no-op rerun);
   (d) ``archiver verify DEST``;
   (e) checks: files in DEST == N, verify exits 0, both backups exit 0.
   It prints a table (and backup/raw ratio) and writes ``--json FILE``.

The page cache is not dropped (not possible without privileges in general):
the corpus was just written, so the server reads it warm from RAM; the
figures measure CPU, TLS, IMAP and archiver's own disk writes (with fsync),
not the server's disk.

Root
----
As root (the project's test machine) Dovecot serves mail as the system user
``archiver-test`` from ``/var/tmp/archiver-tests/<random>/`` (removed at the
end); as a normal user everything runs as that user.  See tests/dovecot.py.

Clean-up: the server is always stopped; the work directory (``--out``, or a
temporary one under /var/tmp) and the server's directory are removed unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import imaplib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

try:
    from tests.dovecot import DovecotServer, MailUser
except ImportError as _exc:  # pragma: no cover
    sys.exit(f"bench.py: {_exc}; run it with the project's virtualenv: "
             f"{REPO}/.venv/bin/python {Path(__file__).name}  (create it with "
             "python3 -m venv .venv && .venv/bin/pip install -e '.[test]')")

ARCHIVER = REPO / ".venv" / "bin" / "archiver"
GNU_TIME = Path("/usr/bin/time")
MB = 1e6

# ----------------------------------------------------------------- the corpus
FOLDERS = [
    # parents before children, so any prefix of this list is a closed hierarchy
    "INBOX", "Sent", "受信箱", "受信箱/講義", "研究室", "研究室/ゼミ 資料", "Drafts", "Trash",
    "Archive", "Archive/2003", "Lists", "Lists/debian-users", "受信箱/事務連絡",
    "研究室/論文", "研究室/論文/2004", "Lists/python-ja", "Junk", "サークル",
    "サークル/テニス", "家族", "就職活動", "Archive/2002", "Archive/2001",
    "[Work] Reports (2002)", "Café", "研究室/輪講", "Archive/2003/Spring Term",
    "Archive/2003/Fall Term", "旅行 2002", "Lists/ruby-list",
]

JA_LINES = [
    "来週の講義の資料を送ります。よろしくお願いします。",
    "ゼミの日程について、以下のとおり連絡いたします。",
    "研究室の打ち合わせは水曜日の午後三時からです。",
    "論文の草稿を添付しましたので、ご確認ください。",
    "先日はお忙しいところありがとうございました。",
    "計算機の保守作業のため、サーバを一時停止します。",
    "表・ソ・能・予・十など、いわゆるダメ文字を含む行です。",
    "東京大学 大学院情報理工学系研究科 山田研究室",
    "締め切りは今月末です。遅れないように提出してください。",
    "実験結果の図を修正しました。第三章の考察も追加しています。",
    "明日の輪講は第五章の前半を扱います。担当は佐藤さんです。",
    "メーリングリストへの投稿は、件名に【質問】と付けてください。",
    "会議室の予約が取れましたので、お知らせします。",
    "旅費の精算書類は事務室へ提出してください。",
    "> 引用された前のメールの本文です。",
    "-- ",
    "山田 太郎 <yamada@example.jp>",
]
EN_LINES = [
    "Please find the slides for next week's lecture attached.",
    "The meeting has been moved to Thursday, 3 pm, room 412.",
    "> On Mon, 12 Apr 1999, Taro Yamada wrote:",
    "> Could you send me the draft before Friday?",
    "Thanks for the quick reply; the patch applies cleanly now.",
    "The server will be down for maintenance on Saturday morning.",
    "Regards,",
    "--",
    "Alice Example, Graduate School of Information Science",
    "I have attached the revised figures and the new table of results.",
    "Unsubscribe: send a mail with 'unsubscribe' to list-request@example.org",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.",
]
JA_NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 研究室", "事務室", "田中 教授"]
EN_NAMES = ["Alice Example", "Bob Smith", "debian-users list", "Carol Jones", "IT Support"]
JA_SUBJECTS = ["講義資料について", "ゼミの日程", "論文草稿", "サーバ停止のお知らせ",
               "Re: 実験結果", "旅費精算", "【質問】計算機の使い方", "会議室の予約"]
EN_SUBJECTS = ["Lecture slides", "Re: meeting moved", "Draft paper", "Maintenance notice",
               "Re: patch review", "[debian-users] upgrade problem", "Figures", "Travel"]

# charset -> (Content-Type charset, transfer encoding, pre-encoded body lines)
_CHARSETS = {
    "iso-2022-jp": ("ISO-2022-JP", "7bit"),
    "shift_jis": ("Shift_JIS", "8bit"),
    "utf-8": ("utf-8", "8bit"),
}
_LINES = {cs: [(ln + "\n").encode(cs) for ln in JA_LINES] for cs in _CHARSETS}
_LINES["us-ascii"] = [(ln + "\n").encode("ascii") for ln in EN_LINES]


def _bword(text: str, charset: str) -> str:
    return f"=?{charset.upper()}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _size_class(rng: random.Random, cap: int = 0) -> int:
    """Target size in bytes of a normal (not huge) message (at most ``cap`` if given)."""
    if cap:
        return min(cap, _size_class(rng))
    r = rng.random()
    if r < 0.875:
        return rng.randint(2_000, 20_000)
    if r < 0.975:
        return rng.randint(20_000, 100_000)
    return int(math.exp(rng.uniform(math.log(100_000), math.log(5_000_000))))


def make_message(rng: random.Random, n: int, target: int, date: _dt.datetime) -> bytes:
    """One RFC 5322 message of about *target* bytes, LF line endings (as Dovecot stores)."""
    ja = rng.random() < 0.65
    charset = rng.choice(["iso-2022-jp", "iso-2022-jp", "shift_jis", "utf-8"]) if ja \
        else "us-ascii"
    if ja:
        frm = f"{_bword(rng.choice(JA_NAMES), 'iso-2022-jp')} <user{n % 97}@example.jp>"
        subj = _bword(rng.choice(JA_SUBJECTS), "iso-2022-jp")
    else:
        frm = f"{rng.choice(EN_NAMES)} <user{n % 89}@example.org>"
        subj = rng.choice(EN_SUBJECTS)
    head = (f"Return-Path: <user{n % 97}@example.jp>\n"
            f"Received: from mx{n % 7}.example.jp (mx{n % 7}.example.jp [192.0.2.{n % 250}])\n"
            f"\tby old-mail.example.jp with ESMTP id {n:08X}; "
            f"{date.strftime('%a, %d %b %Y %H:%M:%S +0900')}\n"
            f"From: {frm}\nTo: alice@example.jp\nSubject: {subj}\n"
            f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0900')}\n"
            f"Message-ID: <bench-{n}@example.jp>\nMIME-Version: 1.0\n").encode("ascii")
    lines = _LINES[charset]
    avg = sum(map(len, lines)) / len(lines)
    text_target = target if target <= 40_000 else rng.randint(1_000, 8_000)
    body = b"".join(rng.choices(lines, k=max(1, int((text_target - len(head)) / avg))))
    ct = f'text/plain; charset="{_CHARSETS.get(charset, ("us-ascii", "7bit"))[0]}"'
    cte = _CHARSETS.get(charset, ("", "7bit"))[1]
    if target <= 40_000:
        return (head + f"Content-Type: {ct}\nContent-Transfer-Encoding: {cte}\n\n".encode()
                + body)
    # text part + a base64 attachment making up the rest
    raw = max(1, int((target - len(head) - len(body) - 400) * 3 / 4))
    att = base64.encodebytes(rng.randbytes(raw))
    b = f"=_bench_{n}"
    return (head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n'
                   f"--{b}\nContent-Type: {ct}\nContent-Transfer-Encoding: {cte}\n\n".encode()
            + body
            + f"--{b}\nContent-Type: application/pdf; name=\"data{n}.pdf\"\n"
              f"Content-Disposition: attachment; filename=\"data{n}.pdf\"\n"
              f"Content-Transfer-Encoding: base64\n\n".encode()
            + att + f"--{b}--\n".encode())


def _flags(rng: random.Random, folder: str) -> str:
    letters = set()
    if folder == "Drafts":
        letters.add("D")
    if rng.random() < 0.8 or folder in ("Sent", "Drafts"):
        letters.add("S")
    if rng.random() < 0.12:
        letters.add("R")
    if rng.random() < 0.05:
        letters.add("F")
    if rng.random() < 0.03:
        letters.add("P")
    if rng.random() < 0.01 or folder == "Trash":
        letters.add("T")
    return "".join(sorted(letters))


def folder_list(count: int) -> list[str]:
    names = list(FOLDERS[:count])
    seen = set(names)
    year, month = 1999, 1
    while len(names) < count:  # more than the list: Archive/<year>/<month> ...
        if f"Archive/{year}" not in seen:
            names.append(f"Archive/{year}")
            seen.add(names[-1])
        else:
            names.append(f"Archive/{year}/{month:02d}")
            month += 1
            if month > 12:
                year, month = year + 1, 1
    return names[:count]


FOLDERS_OVER_IMAP = 50


def populate(server: DovecotServer, user: MailUser, n_messages: int, n_folders: int,
             n_huge: int, seed: int, max_size: int = 0) -> dict:
    """Write the corpus into the user's Maildir++; return its description."""
    rng = random.Random(seed)
    folders = folder_list(n_folders)
    t0 = time.monotonic()
    with server.session(user) as c:
        c.select_folder("INBOX", readonly=True)  # creates the Maildir root
        c.close_folder()
        for f in folders[:FOLDERS_OVER_IMAP]:
            server.create_folder(user, f, client=c)
    dirs = {f: server.folder_path(user, f) for f in folders}
    # Beyond a few dozen, CREATE + SUBSCRIBE over IMAP is quadratic in Dovecot (each
    # subscribe rewrites the list): the Maildir++ directories are made directly
    # (force-resync below makes Dovecot see them; LIST needs no subscription).
    for f in folders[FOLDERS_OVER_IMAP:]:
        for sub in ("cur", "new", "tmp"):
            (dirs[f] / sub).mkdir(parents=True, exist_ok=True)
            os.chown(dirs[f] / sub, server.mail_uid, server.mail_gid)
        os.chown(dirs[f], server.mail_uid, server.mail_gid)
        (dirs[f] / "maildirfolder").touch()
        os.chown(dirs[f] / "maildirfolder", server.mail_uid, server.mail_gid)
    for f, d in dirs.items():
        if not (d / "cur").is_dir():
            raise RuntimeError(f"no Maildir for {f!r} at {d}")
    weights = [1 / (i + 1) for i in range(len(folders))]
    jst = _dt.timezone(_dt.timedelta(hours=9))
    t_start, t_span = _dt.datetime(1999, 1, 1, tzinfo=jst).timestamp(), 25 * 365 * 86400
    huge_at = set(rng.sample(range(n_messages), min(n_huge, n_messages)))
    uid, gid, pid = server.mail_uid, server.mail_gid, os.getpid()
    per_folder = {f: 0 for f in folders}
    stored = served = 0
    sizes: list[int] = []
    for i in range(n_messages):
        folder = rng.choices(folders, weights)[0]
        ts = t_start + rng.random() * t_span
        target = rng.randint(19_000_000, 21_000_000) if i in huge_at else _size_class(rng, max_size)
        data = make_message(rng, i, target, _dt.datetime.fromtimestamp(ts, jst))
        vsize = len(data) + data.count(b"\n")  # served with CRLF
        name = f"{int(ts)}.M{i}P{pid}.bench,S={len(data)},W={vsize}:2,{_flags(rng, folder)}"
        d = dirs[folder]
        tmp = d / "tmp" / name.split(":")[0]
        with open(tmp, "wb") as fh:
            fh.write(data)
            os.fchown(fh.fileno(), uid, gid)
        os.utime(tmp, (ts, ts))
        os.rename(tmp, d / "cur" / name)
        per_folder[folder] += 1
        stored += len(data)
        served += vsize
        sizes.append(vsize)
    t_write = time.monotonic() - t0
    t1 = time.monotonic()
    server.doveadm("force-resync", "-u", user.name, "*")
    t_resync = time.monotonic() - t1
    t1 = time.monotonic()
    server.doveadm("index", "-u", user.name, "*")
    t_index = time.monotonic() - t1
    sizes.sort()
    return {
        "messages": n_messages, "folders": len(folders), "huge": len(huge_at),
        "stored_bytes": stored, "served_bytes": served,
        "size_median": sizes[len(sizes) // 2] if sizes else 0,
        "size_max": sizes[-1] if sizes else 0,
        "over_100k": sum(1 for s in sizes if s > 100_000),
        "per_folder": per_folder,
        "seconds_write": round(t_write, 2), "seconds_resync": round(t_resync, 2),
        "seconds_index": round(t_index, 2),
    }


# ------------------------------------------------------------------ raw fetch
_LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def raw_fetch(server: DovecotServer, user: MailUser, chunk_msgs: int = 500,
              chunk_bytes: int = 32 << 20) -> dict:
    """EXAMINE + UID FETCH (BODY.PEEK[]) over one IMAPS connection; data discarded."""
    t0 = time.monotonic()
    ctx = ssl.create_default_context(cafile=str(server.cafile))
    m = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx)
    m.login(user.name, user.password)
    typ, data = m.list('""', "*")
    assert typ == "OK", data
    names = []
    for item in data:
        if isinstance(item, tuple):
            head, lit = item
            flags, name = head.split(b")")[0], lit
        else:
            mo = _LIST_RE.match(item)
            assert mo, item
            flags, name = mo.group("flags"), mo.group("name")
            if name.startswith(b'"'):
                name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        if b"\\noselect" not in flags.lower():
            names.append(name.decode("ascii"))  # modified UTF-7, as the server spells it
    nbytes = nmsgs = 0
    for name in names:
        typ, data = m.select(_quote(name), readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            continue
        typ, data = m.uid("FETCH", "1:*", "(RFC822.SIZE)")
        assert typ == "OK", data
        sizes = []
        for line in data:
            mo = re.search(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID (\d+)", line)
            assert mo, line
            u, s = (mo.group(1), mo.group(2)) if mo.group(1) else (mo.group(4), mo.group(3))
            sizes.append((int(u), int(s)))
        sizes.sort()
        i = 0
        while i < len(sizes):
            j, acc = i, 0
            while j < len(sizes) and j - i < chunk_msgs and (acc == 0 or acc + sizes[j][1]
                                                             <= chunk_bytes):
                acc += sizes[j][1]
                j += 1
            typ, data = m.uid("FETCH", f"{sizes[i][0]}:{sizes[j - 1][0]}", "(BODY.PEEK[])")
            assert typ == "OK", data
            for part in data:
                if isinstance(part, tuple):
                    nbytes += len(part[1])
                    nmsgs += 1
            del data
            i = j
        m.close()
    m.logout()
    secs = time.monotonic() - t0
    return {"seconds": round(secs, 3), "bytes": nbytes, "messages": nmsgs,
            "folders": len(names), "mb_per_s": round(nbytes / MB / secs, 1)}


# ------------------------------------------------------------------ archiver
def run_measured(args: list[str], work: Path, label: str) -> dict:
    """Run *args*; wall seconds, peak RSS (MB), exit code, stdout, stderr tail."""
    out_f, err_f = work / f"{label}.stdout", work / f"{label}.stderr"
    tfile = work / f"{label}.time"
    use_time = GNU_TIME.exists()
    cmd = ([str(GNU_TIME), "-v", "-o", str(tfile)] if use_time else []) + args
    t0 = time.monotonic()
    with open(out_f, "wb") as so, open(err_f, "wb") as se:
        p = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    rss_kb = ru.ru_maxrss  # of the child tree's biggest process (time or archiver)
    if use_time:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read_text())
        if m:
            rss_kb = int(m.group(1))
        m = re.search(r"Exit status: (\d+)", tfile.read_text())
    err = err_f.read_text(errors="replace")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(rss_kb / 1024, 1),
            "exit": p.returncode, "stdout": out_f.read_text(errors="replace"),
            "stderr_tail": err.splitlines()[-10:]}


def code_state() -> dict:
    """Which archiver was measured: HEAD and whether archiver/ has uncommitted edits."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "archiver_dirty": bool(git("status", "--porcelain", "--", "archiver"))}


def count_files(dest: Path) -> int:
    n = 0
    for root, dirs, files in os.walk(dest):
        if root == str(dest):
            dirs[:] = [d for d in dirs if d != ".archiver"]
        if os.path.basename(root) in ("cur", "new"):
            n += len(files)
    return n


# ---------------------------------------------------------------------- main
def _term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000, metavar="N",
                    help="messages in total, huge ones included (default 20000)")
    ap.add_argument("--folders", type=int, default=30, metavar="F", help="default 30")
    ap.add_argument("--huge", type=int, default=3, metavar="K",
                    help="number of ~20 MB messages (default 3)")
    ap.add_argument("--one-folder", type=int, metavar="N",
                    help="N messages, all in INBOX, no huge ones (the one-big-folder case)")
    ap.add_argument("--max-size", type=int, default=0, metavar="BYTES",
                    help="cap normal messages at this size (a large count fits)")
    ap.add_argument("--no-raw", action="store_true", help="skip (a), the raw-fetch reference")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, metavar="DIR",
                    help="work directory (archive, logs; must not exist or be empty); "
                         "default: a new directory under /var/tmp")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory and the Dovecot directory (mail)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    a = ap.parse_args()
    if a.one_folder is not None:
        a.messages, a.folders, a.huge = a.one_folder, 1, 0
    if a.messages < 1 or a.folders < 1 or a.huge < 0 or a.huge > a.messages:
        ap.error("need --messages >= 1, --folders >= 1, 0 <= --huge <= --messages")
    if not ARCHIVER.exists():
        sys.exit(f"bench.py: {ARCHIVER} missing: python3 -m venv .venv && "
                 ".venv/bin/pip install -e '.[test]'")
    if a.out is not None:
        if a.out.exists() and (not a.out.is_dir() or any(a.out.iterdir())):
            sys.exit(f"bench.py: --out {a.out} exists and is not an empty directory")
        a.out.mkdir(parents=True, exist_ok=True)
        work = a.out.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="archiver-bench-", dir="/var/tmp"))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _term)

    server = DovecotServer(work / "dovecot")
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "kernel": platform.release(),
                                "note": "page cache warm (corpus just written); "
                                        "shared machine, numbers are noisy"},
                    "code": code_state(),
                    "args": {"messages": a.messages, "folders": a.folders, "huge": a.huge,
                             "seed": a.seed, "max_size": a.max_size}}
    rc = 1
    try:
        server.start()
        user = server.new_user("bench")
        print(f"bench: Dovecot on 127.0.0.1:{server.imaps_port}, user {user.name}, "
              f"work dir {work}", flush=True)
        print(f"bench: writing {a.messages} messages into {a.folders} folders ...", flush=True)
        corpus = populate(server, user, a.messages, a.folders, a.huge, a.seed, a.max_size)
        result["corpus"] = corpus
        print(f"bench: corpus {corpus['served_bytes'] / MB:.0f} MB served "
              f"({corpus['stored_bytes'] / MB:.0f} MB on disk), median "
              f"{corpus['size_median'] / 1e3:.1f} KB, {corpus['over_100k']} > 100 KB, max "
              f"{corpus['size_max'] / MB:.1f} MB; write {corpus['seconds_write']} s, "
              f"force-resync {corpus['seconds_resync']} s, index {corpus['seconds_index']} s",
              flush=True)

        if a.no_raw:
            raw = {"seconds": 0.0, "bytes": corpus["served_bytes"], "messages": a.messages,
                   "folders": corpus["folders"], "mb_per_s": 0.0, "skipped": True}
        else:
            print("bench: (a) raw fetch ...", flush=True)
            raw = raw_fetch(server, user)
        result["raw_fetch"] = raw

        pwfile = work / "password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(user.password + "\n")
        dest = work / "archive"
        backup = [str(ARCHIVER), "backup", f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
                  str(dest), "--cafile", str(server.cafile), "--password-file", str(pwfile),
                  "--quiet", "--json"]
        print("bench: (b) archiver backup ...", flush=True)
        first = run_measured(backup, work, "backup")
        print("bench: (c) archiver backup again (no-op) ...", flush=True)
        noop = run_measured(backup, work, "noop")
        print("bench: (d) archiver verify ...", flush=True)
        ver = run_measured([str(ARCHIVER), "verify", str(dest)], work, "verify")
        files = count_files(dest) if dest.is_dir() else 0
        for r in (first, noop):
            try:
                r["summary"] = json.loads(r.pop("stdout").strip().splitlines()[-1])
            except (ValueError, IndexError):
                r["summary"] = None
        ver["report"] = ver.pop("stdout").strip().splitlines()[-1:]
        first["mb_per_s"] = round(raw["bytes"] / MB / first["seconds"], 1)
        for r in (first, noop, ver):
            r["messages_per_s"] = round(a.messages / r["seconds"], 1) if r["seconds"] else 0.0
        result.update(backup=first, noop=noop, verify=ver)
        checks = {
            "files_in_dest": files,
            "files_ok": files == a.messages,
            "raw_fetch_messages_ok": raw["messages"] == a.messages,  # trivially so with --no-raw
            "raw_bytes_match_corpus": raw["bytes"] == corpus["served_bytes"],
            "backup_exit_0": first["exit"] == 0,
            "noop_exit_0": noop["exit"] == 0,
            "noop_new_0": bool(noop["summary"]) and noop["summary"].get("new") == 0,
            "verify_exit_0": ver["exit"] == 0,
            "dovecot_log_clean": not server.log_problems(),
        }
        result["checks"] = checks
        result["ratio_backup_to_raw"] = (round(first["seconds"] / raw["seconds"], 2)
                                         if raw["seconds"] else None)

        w = 34
        print()
        print(f"{'':{w}} {'seconds':>9} {'MB/s':>8} {'msgs/s':>9} {'peak RSS':>10}")
        if not a.no_raw:
            print(f"{'(a) raw fetch (imaplib, 1 conn)':{w}} {raw['seconds']:9.2f} "
                  f"{raw['mb_per_s']:8.1f} {a.messages / raw['seconds']:9.1f} {'':>10}")
        print(f"{'(b) archiver backup':{w}} {first['seconds']:9.2f} {first['mb_per_s']:8.1f} "
              f"{first['messages_per_s']:9.1f} {first['peak_rss_mb']:7.1f} MB")
        print(f"{'(c) archiver backup, no-op rerun':{w}} {noop['seconds']:9.2f} {'':>8} "
              f"{noop['messages_per_s']:9.1f} {noop['peak_rss_mb']:7.1f} MB")
        print(f"{'(d) archiver verify':{w}} {ver['seconds']:9.2f} "
              f"{raw['bytes'] / MB / ver['seconds']:8.1f} {ver['messages_per_s']:9.1f} "
              f"{ver['peak_rss_mb']:7.1f} MB")
        ratio = result["ratio_backup_to_raw"]
        print((f"backup / raw fetch = {ratio:.2f}x   " if ratio else "")
              + f"({a.messages} messages, {raw['bytes'] / MB:.0f} MB, {corpus['folders']} "
              f"folders; {os.cpu_count()} CPUs; page cache warm)")
        code = result["code"]
        print(f"archiver at {code['commit']}"
              + (" + uncommitted changes in archiver/" if code["archiver_dirty"] else ""))
        print("(e) checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
        for label, r in (("backup", first), ("no-op", noop), ("verify", ver)):
            if r["exit"] != 0 or r["stderr_tail"]:
                print(f"{label}: exit {r['exit']}; stderr: " + " | ".join(r["stderr_tail"]))
        problems = server.log_problems()
        if problems:
            print("dovecot.log problems:\n  " + "\n  ".join(problems[:10]))
        rc = 0 if all(checks.values()) else 1
        result["ok"] = rc == 0
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if a.keep:
            server._owned_dir = False  # noqa: SLF001 -- keep the Maildir for a look
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001
            print(f"bench: could not stop Dovecot: {exc}", file=sys.stderr)
        if a.json is not None and "checks" in result:
            a.json.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
            print(f"bench: results in {a.json}")
        if a.keep:
            print(f"bench: kept {work} and the server directory {server.dir}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
