"""A synthetic archive written straight through the library (no server): for the paging
test and scripts/bench_ui.py's 100k-message folder.

The index records are the ones a backup writes (archiver.index.folder_record /
msg_record, through Archive.record); message files are written only when
asked (the list pages read nothing but the index).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from pathlib import Path

from archiver.archive import Archive
from archiver.index import folder_record, message_key, msg_record

SUBJECTS = ("講義資料について", "ゼミの日程", "レポート提出のお願い", "Meeting notes",
            "研究室の予定", "Re: 質問です", "お知らせ", "Invoice")
SENDERS = ("山田 太郎 <yamada@example.jp>", "佐藤 花子 <sato@example.jp>",
           "Prof. Tanaka <tanaka@example.ac.jp>", "office@example.org")
BATCH = 5000


def message_bytes(n: int, subject: str, sender: str, when: _dt.datetime) -> bytes:
    return (f"From: {sender}\r\nTo: student@example.jp\r\nSubject: {subject} #{n}\r\n"
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0900')}\r\n"
            f"Message-ID: <synthetic-{n}@example.jp>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + \
        f"本文 {n}\r\n".encode()


def make_archive(dest: Path, count: int, folder: str = "INBOX", *, files: bool = False,
                 seed: int = 1) -> Path:
    """An archive at ``dest`` whose ``folder`` holds ``count`` messages, dated one hour apart."""
    rng = random.Random(seed)
    start = _dt.datetime(2000, 1, 1, 9, 0, tzinfo=_dt.timezone(_dt.timedelta(hours=9)))
    with Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "synthetic.example",
                                                  "user": "bench"}) as archive:
        archive.record([folder_record(folder, folder, folder, "/", [])])
        if files:
            for sub in ("cur", "new", "tmp"):
                (dest / folder / sub).mkdir(parents=True, exist_ok=True)
        batch = []
        for n in range(1, count + 1):
            when = start + _dt.timedelta(hours=n)
            subject, sender = rng.choice(SUBJECTS), rng.choice(SENDERS)
            data = message_bytes(n, subject, sender, when)
            flags = ["\\Seen"] if rng.random() < 0.8 else []
            if rng.random() < 0.05:
                flags.append("\\Flagged")
            letters = ("F" if "\\Flagged" in flags else "") + ("S" if "\\Seen" in flags else "")
            path = f"{folder}/cur/{n}.synthetic:2,{letters}"
            if files:
                (dest / path).write_bytes(data)
            batch.append(msg_record(
                folder, message_key(1, n), path=path, size=len(data),
                sha256=hashlib.sha256(data).hexdigest(), internaldate=when.isoformat(),
                flags=flags, keywords=[], rfc822_size=len(data),
                message_id=f"<synthetic-{n}@example.jp>", date=when.isoformat(),
                **{"from": sender, "to": "student@example.jp", "subject": f"{subject} #{n}"}))
            if len(batch) >= BATCH:
                archive.record(batch)
                batch = []
        archive.record(batch)
    return dest
