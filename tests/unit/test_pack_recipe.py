"""docs/FORMAT.md's recipe for reading a pack without archiver works, as printed.

The Python block under "Packed archive" is taken from the document's text and
run against packs of a small Maildir and a small mbox archive made here (enough
mail for a trained dictionary; bodies with ``From `` lines, so the mbox is
quoted).  It must list every file and extract the first message exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import re
from pathlib import Path

import pytest

from archiver.index import IndexWriter, folder_record, msg_record
from archiver.pack.reader import PackReader
from archiver.pack.writer import write_pack
from archiver.stores.mboxrd import quote

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
WORDS = ["講義", "資料", "meeting", "report", "お知らせ", "From", "budget", "研究室", "the"]


def recipe() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Packed archive"):]
    section = section[section.index("**Reading it without archiver.**"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no Python block in the Packed archive section"
    return match.group(1)


def messages(n: int) -> list[bytes]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(40))
        out.append((f"From: user{i % 17}@example.jp\r\nSubject: {rng.choice(WORDS)} {i}\r\n"
                    f"Message-ID: <{i}@example.jp>\r\n\r\nFrom the desk of {i}\r\n{body}\r\n"
                    ).encode())
    return out


def make_archive(root: Path, fmt: str, msgs: list[bytes]) -> None:
    meta = root / ".archiver"
    meta.mkdir(parents=True)
    (meta / "archive.json").write_text(json.dumps(
        {"v": 1, "format": fmt, "source": {"host": "h", "user": "u"}, "created": "x"}))
    records = [folder_record("INBOX", "INBOX" if fmt == "maildir" else "Inbox", "INBOX", "/",
                             [])]
    if fmt == "maildir":
        (root / "INBOX" / "cur").mkdir(parents=True)
        (root / "INBOX" / "new").mkdir()
        (root / "INBOX" / "tmp").mkdir()
        for uid, data in enumerate(msgs, 1):
            path = f"INBOX/cur/9.{uid}.archiver:2,S"
            (root / path).write_bytes(data)
            records.append(msg_record("INBOX", {"uidvalidity": 9, "uid": uid}, path=path,
                                      size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                      internaldate=None, flags=["\\Seen"], keywords=[]))
    else:
        mbox = bytearray()
        for uid, data in enumerate(msgs, 1):
            mbox += b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"
            quoted = quote(data)
            records.append(msg_record("INBOX", {"uidvalidity": 9, "uid": uid}, path="Inbox",
                                      size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                      internaldate=None, flags=[], keywords=[],
                                      offset=len(mbox), length=len(quoted)))
            mbox += quoted + b"\n\n"
        (root / "Inbox").write_bytes(bytes(mbox))
    writer = IndexWriter(meta / "index.jsonl.zst", 0)
    for i in range(0, len(records), 50):  # several frames, as a real index has
        writer.append(records[i:i + 50])
    writer.close()


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_the_documented_recipe_lists_the_files_and_extracts_a_message(
        tmp_path: Path, fmt: str) -> None:
    msgs = messages(300)
    assert any(b"\nFrom " in m for m in msgs)
    src = tmp_path / "archive"
    make_archive(src, fmt, msgs)
    pack = tmp_path / "a.pack"
    write_pack(src, pack, level=3)
    with PackReader(pack) as reader:
        assert reader.index.dict_sha256, "the recipe must be tried with a dictionary"
        names = [m.path for m in reader.index.files]
    out = io.StringIO()
    scope: dict[str, object] = {"PACK": str(pack)}
    with contextlib.redirect_stdout(out):
        exec(compile(recipe(), str(DOC), "exec"), scope)  # noqa: S102 - the doc's own code
    listed = [line.split(None, 1)[1] for line in out.getvalue().splitlines()]
    assert listed == names and ".archiver/index.jsonl.zst" in listed
    assert scope["message"] == msgs[0]
