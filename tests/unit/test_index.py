"""The index: zstd frames readable by zstdcat, torn tails detected and cut."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.index import IndexWriter, read_index
from archiver.state import IndexState


def _write(path: Path, frames: list[list[dict]]) -> None:
    w = IndexWriter(path, 0)
    for f in frames:
        w.append(f)
    w.close()


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    p = tmp_path / "i.zst"
    _write(p, [[{"n": 1, "s": "受信箱"}], [{"n": i} for i in range(2, 500)]])
    res = read_index(p)
    assert [r["n"] for r in res.records] == list(range(1, 500))
    assert not res.torn


def test_zstdcat_reads_the_index(tmp_path: Path) -> None:
    if shutil.which("zstdcat") is None:
        if os.geteuid() == 0:  # CI: scripts/test installs zstd; missing must not pass unseen
            pytest.fail("zstdcat is not installed: scripts/test installs zstd (PACKAGES)")
        pytest.skip("zstd CLI not installed")
    p = tmp_path / "i.zst"
    _write(p, [[{"a": "日本語"}], [{"b": 2}]])
    out = subprocess.run(["zstdcat", str(p)], capture_output=True, check=True).stdout
    assert out.decode().splitlines() == ['{"a":"日本語"}', '{"b":2}']


def test_torn_tail_is_detected_then_cut_by_the_next_writer(tmp_path: Path) -> None:
    p = tmp_path / "i.zst"
    _write(p, [[{"n": 1}], [{"n": 2}]])
    whole = p.read_bytes()
    for cut in range(1, 12):
        p.write_bytes(whole + whole[: len(whole) // 2][:cut])
        res = read_index(p)
        assert [r["n"] for r in res.records] == [1, 2]
        assert res.torn
    w = IndexWriter(p, res.good_length)
    w.append([{"n": 3}])
    w.close()
    res = read_index(p)
    assert [r["n"] for r in res.records] == [1, 2, 3] and not res.torn


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_garbage_never_crashes_the_reader(junk: bytes, cut: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "i.zst"
        _write(p, [[{"n": 1}]])
        good = p.read_bytes()
        p.write_bytes(good[:cut] + junk)
        res = read_index(p)
        assert res.good_length <= len(good[:cut] + junk)
        for rec in res.records:
            assert isinstance(rec, dict)


def test_state_folds_msg_flags_and_gone_records() -> None:
    recs = [
        {"type": "folder", "folder": "INBOX", "dir": "INBOX"},
        {"type": "msg", "folder": "INBOX", "uidvalidity": 7, "uid": 1, "path": "INBOX/cur/a",
         "size": 3, "sha256": "x", "flags": ["\\Seen"], "keywords": []},
        {"type": "msg", "folder": "INBOX", "uidvalidity": 7, "uid": 2, "path": "INBOX/cur/b",
         "size": 3, "sha256": "y", "flags": [], "keywords": []},
        {"type": "flags", "folder": "INBOX", "uidvalidity": 7, "uid": 1, "flags": [],
         "keywords": ["$Junk"], "path": "INBOX/cur/a2"},
        {"type": "gone", "folder": "INBOX", "uidvalidity": 7, "uid": 2},
    ]
    st8 = IndexState.from_records(recs)
    msgs = st8.folders["INBOX"].messages
    assert msgs[(7, 1)].flags == () and msgs[(7, 1)].keywords == ("$Junk",)
    assert msgs[(7, 1)].path == "INBOX/cur/a2"
    assert msgs[(7, 2)].gone
