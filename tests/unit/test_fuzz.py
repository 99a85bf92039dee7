"""Property-based fuzzing of every parser archiver wrote (hypothesis).

No input may produce a traceback (an exception other than the documented
ones), a path outside DEST, or silent loss (a round trip that changes bytes).
Examples per property: ``EXAMPLES`` (1000; ``--stress`` multiplies by 10).
The counts actually run are printed at the end of the run (tests/counters.py)
and quoted in docs/RELIABILITY.md by scripts/reliability-figures.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import imapclient.exceptions
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from archiver.errors import ServerError
from archiver.headers import date_from_headers, decode_bytes, decode_value, summarize
from archiver.index import IndexWriter, read_index, valid_length
from archiver.names import (
    assign_path,
    decode_component,
    decode_mutf7,
    encode_mutf7,
    fold_key,
    folder_path,
    logical_name,
)
from archiver.sources.base import ConnectionLost
from archiver.sources.pop3 import _Reader
from archiver.sources.session import _uid_fetch_bodies
from archiver.state import IndexState
from archiver.stores.base import Incoming
from archiver.stores.mbox import MboxStore, mbox_path, quote, unquote
from tests.counters import counter

EXAMPLES = 1000
COUNTS = counter("fuzz examples")  # examples run per property (tests/counters.py)


STRESS = "--stress" in sys.argv or bool(os.environ.get("ARCHIVER_STRESS"))


def _n() -> int:
    return EXAMPLES * (10 if STRESS else 1)


def fuzz(**kw: Any) -> Any:
    kw.setdefault("max_examples", _n())
    return settings(deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], **kw)


def _count(name: str) -> None:
    COUNTS[name] += 1


# ---------------------------------------------------------------- names

HOSTILE_TEXT = st.one_of(
    st.text(),
    st.sampled_from(["..", ".", "", "../../etc", "/etc/passwd", "a\x00b", "cur", "CUR",
                     ".archiver", "x" * 1000, "受" * 400, "%", "%_", "%2F", "A.sbd",
                     "a.msf", "con", "\udcff", "Café", unicodedata.normalize("NFD", "Café")]),
    st.lists(st.sampled_from(["..", "/", ".", "\\", "%", "\x00", "a", "é", "\u0301", " "]),
             max_size=30).map("".join),
)


def _inside(rel: str) -> bool:
    dest = "/dest"
    full = os.path.normpath(os.path.join(dest, *rel.split("/")))
    return full.startswith(dest + os.sep) and not full.startswith(dest + os.sep + ".archiver")


@fuzz()
@given(st.binary(max_size=200))
def test_mutf7_decoder_never_raises_on_bytes(raw: bytes) -> None:
    _count("mutf7 decode (bytes)")
    out = decode_mutf7(raw)
    assert isinstance(out, str)


@fuzz()
@given(st.text(max_size=80))
def test_mutf7_round_trip_and_decoder_total_on_text(name: str) -> None:
    _count("mutf7 round trip")
    assert isinstance(decode_mutf7(name), str)
    clean = name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert decode_mutf7(encode_mutf7(clean)) == clean


@fuzz()
@given(HOSTILE_TEXT, st.sampled_from([None, "/", ".", "\\", "&", "\x00"]),
       st.sampled_from(["", "INBOX.", "INBOX/", "&"]))
def test_any_server_name_maps_inside_dest_for_both_stores(name: str, sep: str | None,
                                                          prefix: str) -> None:
    _count("server name -> path (maildir + mbox)")
    comps = logical_name(decode_mutf7(name), sep, prefix)
    for rel in (folder_path(comps), mbox_path(comps)):
        assert _inside(rel), (comps, rel)
        for part in rel.split("/"):
            assert part not in ("", ".", "..") and not part.startswith(".")
            assert "\x00" not in part and "\\" not in part
            assert len(part.encode("utf-8", "surrogatepass")) <= 255
    parts = folder_path(comps).split("/")
    assert len(parts) == len(comps)
    for comp, part in zip(comps, parts):
        assert part.lower() not in ("cur", "new", "tmp")
        if "%_" not in part:  # not cut: reversible from the path alone
            assert decode_component(part) == comp


@fuzz()
@given(st.lists(HOSTILE_TEXT, min_size=1, max_size=6))
def test_assign_path_never_collides_after_folding(names: list[str]) -> None:
    _count("assign_path (case/NFC/NFD)")
    taken: set[str] = set()
    for name in names:
        p = assign_path((name,), taken)
        assert fold_key(p) not in {fold_key(t) for t in taken}
        assert _inside(p)
        taken.add(p)


# ---------------------------------------------------------------- mboxrd


@fuzz()
@given(st.lists(st.one_of(st.sampled_from([b"From ", b">From ", b">>From x", b"\r\n", b"\n",
                                           b"\r", b">", b"From", b" ", b"\x00"]),
                          st.binary(max_size=20)), max_size=40).map(b"".join))
def test_mboxrd_round_trips_arbitrary_bytes(data: bytes) -> None:
    _count("mboxrd quote/unquote")
    q = quote(data)
    assert unquote(q) == data
    assert not any(line.startswith(b"From ") for line in q.split(b"\n"))


@fuzz(max_examples=max(30, _n() // 10))
@given(st.lists(st.lists(st.sampled_from([b"From a", b">From b", b"\r\n", b"\n", b"x" * 7,
                                          b"", b"\r", b"From "]), max_size=12).map(b"".join),
                min_size=1, max_size=6))
def test_mbox_store_reads_back_every_message_exactly(messages: list[bytes]) -> None:
    """Append through the store, read by offset: exact bytes; mailbox splits them right."""
    _count("mbox store append/read")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        store = MboxStore(root)
        store.prepare_folder("INBOX")
        items = [Incoming(1, i + 1, (), (), None, data=m) for i, m in enumerate(messages)]
        staged, results = store.stage_batch("INBOX", items)
        store.commit_staged(staged)
        raw = (root / "INBOX").read_bytes()
        for m, r in zip(messages, results):
            assert r.offset is not None and r.length is not None
            assert unquote(raw[r.offset:r.offset + r.length]) == m
        # the separator logic: the recorded end is exactly the file's end
        from archiver.state import MessageEntry

        entries = [MessageEntry("INBOX", 1, i + 1, "INBOX", r.size, r.sha256, (), (),
                                offset=r.offset, length=r.length) for i, r in enumerate(results)]
        assert store.recorded_end("INBOX", entries) == len(raw)


# ---------------------------------------------------------------- index


def _index_bytes(frames: list[list[dict[str, Any]]]) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "i.zst"
        w = IndexWriter(p, 0)
        for f in frames:
            w.append(f)
        w.close()
        return p.read_bytes()


FRAMES = [[{"type": "msg", "n": i, "s": "受信箱" * (i % 3), "pad": "x" * (i * 37 % 300)}]
          for i in range(8)]
GOOD = _index_bytes(FRAMES)


@fuzz()
@given(st.integers(0, len(GOOD)), st.lists(st.tuples(st.integers(0, len(GOOD) - 1),
                                                     st.integers(1, 255)), max_size=3),
       st.binary(max_size=40))
def test_index_reader_detects_torn_or_corrupt_frames_and_never_crashes(
        cut: int, flips: list[tuple[int, int]], junk: bytes) -> None:
    """Whatever happens to the bytes, the reader returns a prefix of the true records."""
    _count("index torn/corrupt frames")
    data = bytearray(GOOD[:cut])
    for pos, x in flips:
        if pos < len(data):
            data[pos] ^= x
    data += junk
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "i.zst"
        p.write_bytes(bytes(data))
        res = read_index(p)
        good, total = valid_length(p)
    truth = [r for f in FRAMES for r in f]
    assert res.records == truth[:len(res.records)], "a damaged frame was read as good"
    assert res.good_length <= good <= total == len(data)
    if not res.torn:  # nothing left over: the file is whole frames, all of them read
        assert res.good_length == len(data)


RECORD_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=8),
              st.floats(allow_nan=True)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
RECORD = st.fixed_dictionaries(
    {}, optional={k: RECORD_VALUE | st.just("INBOX") for k in
                  ("type", "folder", "dir", "uidvalidity", "uid", "uidl", "path", "size",
                   "sha256", "flags", "keywords", "to", "offset", "length", "replaced_by",
                   "attributes", "separator", "server_name")}) | st.builds(
    dict, type=st.sampled_from(["folder", "msg", "flags", "gone", "link"]),
    folder=st.just("INBOX"), dir=RECORD_VALUE, uidvalidity=RECORD_VALUE, uid=RECORD_VALUE,
    uidl=RECORD_VALUE, size=RECORD_VALUE, flags=RECORD_VALUE, keywords=RECORD_VALUE,
    to=RECORD_VALUE, offset=RECORD_VALUE, attributes=RECORD_VALUE, path=RECORD_VALUE)


@fuzz(max_examples=max(100, _n() // 3))
@given(st.lists(RECORD, max_size=8))
@example([{"type": "msg", "folder": "INBOX", "uidvalidity": float("inf"), "uid": 1}])
@example([{"type": "folder", "folder": "INBOX", "attributes": 1}])
def test_index_state_survives_any_json_record(records: list[dict[str, Any]]) -> None:
    """A record that survived the frame checks but is nonsense must not crash a backup."""
    _count("index records -> state")
    records = [{"type": "folder", "folder": "INBOX", "dir": "INBOX"}, *records]
    state = IndexState.from_records(records)
    for m in state.messages():
        assert isinstance(m.path, str) and isinstance(m.size, int) and m.size >= 0
        assert all(isinstance(f, str) for f in m.flags + m.keywords)
    for f in state.folders.values():
        assert all(isinstance(a, str) for a in f.attributes)


@fuzz(max_examples=max(60, _n() // 10))
@given(st.lists(RECORD, max_size=6))
@example([{"type": "folder", "folder": "INBOX", "attributes": 1}])
@example([{"type": "msg", "folder": "INBOX", "uidvalidity": 1, "uid": 1, "size": "abc"}])
@example([{"type": "msg", "folder": "INBOX", "uidvalidity": 1, "uid": 1, "path": "x",
           "date": 5, "subject": ["a"], "from": {"x": 1}, "sha256": "ab" * 32}])
def test_every_command_survives_nonsense_index_records(records: list[dict[str, Any]]) -> None:
    """The product path: ls, ls FOLDER, verify, search, show and export over an index
    holding nonsense records end with a documented exit code, never a traceback (70)."""
    from archiver.archive import Archive
    from tests.helpers import run_cli

    _count("index records -> every command")
    with tempfile.TemporaryDirectory() as d:
        dest = Path(d) / "a"
        Archive.create_or_open(dest, "maildir", {"protocol": "imap", "host": "h",
                                                 "user": "u"}).close()
        writer = IndexWriter(dest / ".archiver" / "index.jsonl.zst", 0)
        writer.append([{"v": 1, "type": "folder", "folder": "INBOX", "dir": "INBOX"}, *records])
        writer.close()
        for args in (["ls", str(dest)], ["ls", str(dest), "INBOX"], ["verify", str(dest)],
                     ["search", str(dest), "a"], ["show", str(dest), "ababab"],
                     ["export", str(dest), str(Path(d) / f"out-{len(COUNTS)}"), "--to", "mbox"]):
            code, _out, err = run_cli(args)
            assert code in (0, 1, 2, 3), (args, code, err)
            assert "Traceback" not in err and "internal error" not in err, (args, err)


# ---------------------------------------------------------------- headers


HEADER_BYTES = st.lists(st.one_of(
    st.sampled_from([b"Subject: ", b"From: ", b"Date: ", b"To: ", b"Message-ID: ",
                     b"Received: from x; ", b"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=",
                     b"=?utf-8?q?=E3=81=82?=", b"=?bogus?x?zz?=", b"=?", b"?=", b"\x1b$B",
                     b"\r\n", b"\n", b"\r\n\t", b"\r\n\r\n", b"\x00", b"\xff\xfe",
                     b"Mon, 1 Jan 2024 10:00:00 +0900", b"Tue, 99 Foo 99999 99:99:99 -9999",
                     b"\x82\xa0", b"\xa4\xa2"]),
    st.binary(max_size=12)), max_size=30).map(b"".join)


@fuzz()
@given(HEADER_BYTES)
def test_header_decoding_never_raises(head: bytes) -> None:
    _count("header decoding")
    out = summarize(head)
    for v in out.values():
        assert v is None or (isinstance(v, str) and len(v) <= 1001)
    when, source = date_from_headers(head)
    assert source in (None, "date", "received")
    assert isinstance(decode_value(head), str)
    assert isinstance(decode_bytes(head, "iso-2022-jp"), str)
    assert isinstance(decode_bytes(head, "no-such-charset"), str)


# ---------------------------------------------------------------- POP3 reader


class _ChunkSock:
    def __init__(self, wire: bytes, cuts: list[int]) -> None:
        self.wire, self.pos, self.cuts = wire, 0, cuts or [4096]
        self.i = 0

    def recv(self, n: int) -> bytes:
        step = self.cuts[self.i % len(self.cuts)]
        self.i += 1
        piece = self.wire[self.pos:self.pos + min(n, step)]
        self.pos += len(piece)
        return piece


def _stuff(body: bytes) -> bytes:
    """What a POP3 server sends for ``body`` (lines ending CRLF)."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)


POP_LINES = st.lists(st.one_of(st.sampled_from([b".", b"..", b"...", b".x", b"", b"\r", b"\n",
                                                b"x.", b"\r\n.", b"a\n.b"]),
                               st.binary(max_size=10)), max_size=25)


@fuzz()
@given(POP_LINES, st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_pop3_dot_unstuffing_round_trips(lines: list[bytes], cuts: list[int]) -> None:
    _count("POP3 dot-unstuffing")
    lines = [ln.replace(b"\r\n", b"\r") for ln in lines]  # a line cannot hold CRLF
    body = b"\r\n".join(lines) + b"\r\n" if lines else b""
    wire = _stuff(body[:-2]) + b"\r\n" if body else b""
    wire += b".\r\nNEXT\r\n"
    reader = _Reader(_ChunkSock(wire, cuts))  # type: ignore[arg-type]
    out: list[bytes] = []
    size = reader.block(out.append)
    assert b"".join(out) == body
    assert size == len(body)
    assert reader.line() == b"NEXT"


@fuzz()
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), min_size=1, max_size=4))
def test_pop3_reader_on_garbage_raises_only_documented_errors(wire: bytes,
                                                              cuts: list[int]) -> None:
    _count("POP3 reader garbage")
    reader = _Reader(_ChunkSock(wire, cuts))  # type: ignore[arg-type]
    try:
        reader.block(lambda b: None)
        reader.line()
    except (ConnectionLost, ServerError):
        pass


def test_pop3_reader_memory_is_bounded_on_an_endless_line() -> None:
    """A message line without end must not be buffered whole (a hostile server's OOM)."""
    class Endless:
        sent = 0

        def recv(self, n: int) -> bytes:
            self.sent += n
            if self.sent > 64 << 20:
                return b""
            return b"x" * n

    reader = _Reader(Endless())  # type: ignore[arg-type]
    biggest = 0

    def write(piece: bytes) -> None:
        nonlocal biggest
        biggest = max(biggest, len(reader.buf))

    with pytest.raises(ConnectionLost):
        reader.block(write)
    assert len(reader.buf) < 8 << 20, "the reader buffered the endless line"


# ---------------------------------------------------------------- lean FETCH parser


class _FakeImap:
    def __init__(self, data: list[Any]) -> None:
        self.data = data

    def _command(self, *args: Any) -> bytes:
        return b"A1"

    def _command_complete(self, name: str, tag: bytes) -> tuple[str, list[Any]]:
        return "OK", [b"done"]

    def _untagged_response(self, typ: str, data: Any, name: str) -> tuple[str, list[Any]]:
        return "OK", self.data


class _FakeClient:
    def __init__(self, data: list[Any]) -> None:
        self._imap = _FakeImap(data)


def _fetch_item(rng: random.Random, seq: int, uid: int, body: bytes) -> list[Any]:
    """One FETCH response in imaplib's ``data`` shape, in a random legal or hostile form."""
    shape = rng.randrange(8)
    lit = b"{%d}" % len(body)
    if shape == 0:
        return [(b"%d (UID %d BODY[] %s" % (seq, uid, lit), body), b")"]
    if shape == 1:  # UID after the literal
        return [(b"%d (BODY[] %s" % (seq, lit), body), b" UID %d)" % uid]
    if shape == 2:  # unsolicited FLAGS first
        return [(b"%d (UID %d FLAGS (\\Seen) BODY[] %s" % (seq, uid, lit), body), b")"]
    if shape == 3:  # a keyword that looks like a UID item before the real one
        return [(b"%d (FLAGS (UID 999999) UID %d BODY[] %s" % (seq, uid, lit), body),
                b")"]
    if shape == 4:  # NIL body
        return [b"%d (UID %d BODY[] NIL)" % (seq, uid)]
    if shape == 5:  # quoted body
        safe = body.replace(b"\\", b"").replace(b'"', b"")[:20].replace(b"\r", b"").replace(
            b"\n", b"")
        return [b'%d (UID %d BODY[] "%s")' % (seq, uid, safe)]
    if shape == 6:  # a FLAGS-only response for the same message (no body)
        return [b"%d (UID %d FLAGS (\\Seen))" % (seq, uid)]
    return [(b"%d (UID %d RFC822.SIZE %d BODY[] %s" % (seq, uid, len(body) + 7, lit),
             body), b")"]


def _reference(data: list[Any]) -> dict[int, Any]:
    try:
        parsed = parse_fetch_response(data, False, True)
    except imapclient.exceptions.IMAPClientError:
        return {}
    out: dict[int, Any] = {}
    for key, items in parsed.items():
        if b"BODY[]" in items and isinstance(key, int):
            out.setdefault(key, items[b"BODY[]"])
    return out


@fuzz()
@given(st.randoms(use_true_random=False),
       st.lists(st.tuples(st.integers(1, 40), st.binary(max_size=30)), min_size=1,
                max_size=6))
def test_lean_fetch_parser_agrees_with_imapclient(rng: random.Random,
                                                  msgs: list[tuple[int, bytes]]) -> None:
    """Differential: the regex fast path must give each UID the body imapclient gives it."""
    _count("lean FETCH parser (differential)")
    data: list[Any] = []
    for seq, (uid, body) in enumerate(msgs, 1):
        data += _fetch_item(rng, seq, uid, body)
    try:
        got = _uid_fetch_bodies(_FakeClient(data), "1:*")  # type: ignore[arg-type]
    except imapclient.exceptions.IMAPClientError:
        return  # becomes ServerError -> per-message retry -> FetchFailed: reported, not lost
    expected_uids = {uid for uid, _ in msgs}
    for uid, items in got.items():
        assert uid in expected_uids or uid == 999999
        body = items.get(b"BODY[]")
        candidates = [b for u, b in msgs if u == uid]
        if uid == 999999:
            raise AssertionError("a keyword 'UID 999999' was taken for the message's UID")
        if body is not None and isinstance(body, bytes) and candidates:
            clean = [c.replace(b"\\", b"").replace(b'"', b"")[:20].replace(b"\r", b"")
                     .replace(b"\n", b"") for c in candidates]
            assert body in candidates or body in clean, (uid, body, candidates)


@fuzz()
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.tuples(st.binary(max_size=40), st.binary(max_size=20)),
    st.sampled_from([b")", b"1 (UID 1 BODY[] {3}", b" UID 2)", b"(", b"NIL"]),
    st.tuples(st.sampled_from([b"1 (UID 1 BODY[] {3}", b"2 (BODY[] {2}",
                               b"3 (UID x BODY[] {1}", b"4 (UID 4 BODY[] {99}"]),
              st.binary(max_size=5))), max_size=6))
def test_lean_fetch_parser_never_crashes_on_garbage(data: list[Any]) -> None:
    _count("lean FETCH parser (garbage)")
    try:
        got = _uid_fetch_bodies(_FakeClient(data), "1:*")  # type: ignore[arg-type]
    except imapclient.exceptions.IMAPClientError:
        return
    for uid, items in got.items():
        assert isinstance(uid, int)
        body = items.get(b"BODY[]")
        assert body is None or isinstance(body, (bytes, str, int)), body


def test_the_usual_fetch_answer_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex must match what imaplib really hands over (``12 (UID …``, the word FETCH
    already taken off): it once expected ``12 FETCH (`` and every batch went through
    imapclient's tokenizer, which costs most of a backup's client CPU."""
    import archiver.sources.responses as responses

    def refuse(*args: Any) -> Any:
        raise AssertionError("the usual answer went to imapclient's parser")

    monkeypatch.setattr(responses, "parse_fetch_response", refuse)
    data: list[Any] = [(b"1 (UID 7 BODY[] {5}", b"hello"), b")",
                       (b"2 (UID 9 BODY[] {3}", b"abc"), b")"]
    got = _uid_fetch_bodies(_FakeClient(data), "7,9")  # type: ignore[arg-type]
    assert got == {7: {b"BODY[]": b"hello"}, 9: {b"BODY[]": b"abc"}}
