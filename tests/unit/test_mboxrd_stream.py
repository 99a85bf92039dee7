"""mboxrd quoting of a stream cut anywhere equals quoting the whole message (hypothesis).

Restore and export read large mbox messages in chunks and unquote them on the
fly; a chunk may end inside a ``>>From `` line.  Differential against the
whole-message :func:`archiver.stores.mbox.unquote` / ``quote`` on random
chunkings, plus the store read back in tiny chunks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from archiver.state import MessageEntry
from archiver.stores.base import Incoming
from archiver.stores.mbox import MboxStore, quote, unquote
from archiver.stores.mboxrd import StreamQuoter

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOKENS = st.sampled_from([b"From ", b">From ", b">>From x", b">", b">>>", b"From", b"Fro",
                          b"F", b"r", b"om", b" ", b"\n", b"\r\n", b"\r", b"x", b"\x00"])
MESSAGE = st.lists(st.one_of(TOKENS, st.binary(max_size=12)), max_size=60).map(b"".join)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])  # empty pieces too: feed(b"") must be harmless
        last = p
    return out


def _stream(quoter: StreamQuoter, pieces: list[bytes]) -> bytes:
    return b"".join(quoter.feed(p) for p in pieces) + quoter.end()


@FUZZ
@given(MESSAGE, st.lists(st.integers(0, 1 << 16), max_size=12))
@example(b">>From a\n", [1, 2, 3, 4, 5, 6, 7])
@example(b"x\n>From ", [2])
@example(b">From", [1])
def test_streamed_unquote_equals_whole_unquote_on_any_chunking(data: bytes,
                                                               cuts: list[int]) -> None:
    quoted = quote(data)
    assert _stream(StreamQuoter.unquoting(), _pieces(quoted, cuts)) == unquote(quoted) == data
    # and on bytes that were never quoted by us (a damaged or foreign file)
    assert _stream(StreamQuoter.unquoting(), _pieces(data, cuts)) == unquote(data)


@FUZZ
@given(MESSAGE, st.lists(st.integers(0, 1 << 16), max_size=12))
@example(b">>From a\n", [1, 2, 3, 4, 5, 6, 7])
def test_streamed_quote_equals_whole_quote_on_any_chunking(data: bytes,
                                                           cuts: list[int]) -> None:
    assert _stream(StreamQuoter.quoting(), _pieces(data, cuts)) == quote(data)


@FUZZ
@given(st.integers(1, 5000), st.sampled_from([b"From x\n", b"Frx\n", b"", b"x"]),
       st.integers(1, 700))
def test_a_long_run_of_gt_is_passed_on_not_held(run: int, rest: bytes, step: int) -> None:
    """Only a few bytes are ever held back, however long the undecided line grows."""
    data = b">" * run + rest
    for quoter, whole in ((StreamQuoter.unquoting(), unquote), (StreamQuoter.quoting(), quote)):
        out = b""
        for i in range(0, len(data), step):
            out += quoter.feed(data[i:i + step])
            assert min(i + step, len(data)) - len(out) <= 6, (i, len(out))
        assert out + quoter.end() == whole(data)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(MESSAGE, min_size=1, max_size=5), st.integers(1, 9))
def test_mbox_store_streams_each_message_exactly_in_tiny_chunks(messages: list[bytes],
                                                                chunk: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = MboxStore(Path(d))
        store.prepare_folder("INBOX")
        items = [Incoming(1, i + 1, (), (), None, data=m) for i, m in enumerate(messages)]
        staged, results = store.stage_batch("INBOX", items)
        store.commit_staged(staged)
        for m, r in zip(messages, results):
            entry = MessageEntry("INBOX", 1, 1, "INBOX", r.size, r.sha256, (), (),
                                 offset=r.offset, length=r.length)
            store.check_message(entry)
            assert b"".join(store.message_chunks(entry, chunk)) == m == \
                store.read_message(entry)
