"""The folded index shares what repeats between messages (a 200,000-message folder
holds 200,000 entries at once): one UIDVALIDITY int, one folder-name string, one
tuple per flag set, and the size object when RFC822.SIZE equals it."""

from __future__ import annotations

import json

from archiver.state import IndexState


def _records(n: int) -> list[dict]:
    lines = [json.dumps({"v": 1, "type": "folder", "folder": "INBOX", "dir": "INBOX"})]
    for uid in range(1, n + 1):
        lines.append(json.dumps({
            "v": 1, "type": "msg", "folder": "INBOX", "uidvalidity": 1_700_000_000,
            "uid": uid, "path": f"INBOX/cur/1700000000.{uid}.archiver:2,S",
            "size": 5000 + uid, "rfc822_size": 5000 + uid, "sha256": f"{uid:064x}",
            "flags": ["\\Seen"], "keywords": [], "internaldate": "2024-01-01T10:00:00+09:00"}))
    return [json.loads(line) for line in lines]  # fresh objects per record, as read


def test_repeated_values_are_one_object_each() -> None:
    state = IndexState.from_records(_records(50))
    entries = list(state.folders["INBOX"].messages.values())
    keys = list(state.folders["INBOX"].messages)
    assert len(entries) == 50
    assert len({id(e.uidvalidity) for e in entries} | {id(k[0]) for k in keys}) == 1
    assert len({id(e.folder) for e in entries}) == 1
    assert len({id(e.flags) for e in entries}) == 1
    assert all(e.rfc822_size is e.size for e in entries)
    assert not hasattr(entries[0], "__dict__"), "MessageEntry lost its __slots__"
