"""Random access into a pack: byte ranges across frame boundaries, large files, damage.

Packs here are made with tiny frames (4 kB), so messages and mbox byte ranges
straddle frames and one file fills many; every message read through the pack's
store (whole, head, in chunks) must equal the archived bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archiver.errors import DestinationError
from archiver.offline.catalog import catalog
from archiver.pack.format import FOOTER_SIZE, frames_for
from archiver.pack.reader import PackDamaged, PackReader
from archiver.pack.unpack import unpack
from archiver.pack.view import PackStore
from archiver.pack.writer import write_pack
from archiver.reading import open_archive
from archiver.stores import open_store
from tests.unit.test_pack_recipe import make_archive, messages


def _pack(tmp_path: Path, fmt: str, n: int = 60, frame_size: int = 4096) -> tuple[Path, Path,
                                                                                   list[bytes]]:
    msgs = messages(n)
    msgs.append(b"".join(msgs[:8]))  # one message larger than several frames
    msgs.append(b"")  # and an empty one
    src = tmp_path / f"src-{fmt}"
    make_archive(src, fmt, msgs)
    pack = tmp_path / f"{fmt}.pack"
    write_pack(src, pack, level=3, frame_size=frame_size)
    return src, pack, msgs


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_every_message_reads_back_exactly_across_frame_boundaries(
        tmp_path: Path, fmt: str) -> None:
    src, pack, msgs = _pack(tmp_path, fmt)
    archive = open_archive(pack)
    tree_store = open_store(src, fmt)
    reader = PackReader(pack)
    assert len(reader.index.frames) > 20
    store = PackStore(reader)
    items = catalog(archive)
    assert len(items) == len(msgs)
    straddling = 0
    for item in items:
        want = msgs[item.entry.uid - 1]
        assert store.read_message(item.entry) == want
        assert b"".join(store.message_chunks(item.entry)) == want
        # as from the directory (an mbox head cut inside a ">From " line stays quoted there)
        assert store.read_head(item.entry, 100) == tree_store.read_head(item.entry, 100)
        store.check_message(item.entry)
        member = reader.files[item.entry.path]
        start = member.start + (item.entry.offset or 0)
        length = item.entry.length if fmt == "mbox" else member.size
        assert length is not None
        straddling += len(frames_for(reader.index.frames,
                                     [f.start for f in reader.index.frames], start,
                                     length)) > 1
    # the ranges did cross frames: mbox messages anywhere, Maildir files only when larger
    # than a frame (the large one)
    assert straddling > 5 if fmt == "mbox" else straddling == 1


def test_a_file_never_straddles_frames_unless_larger_than_one(tmp_path: Path) -> None:
    _src, pack, _msgs = _pack(tmp_path, "maildir")
    with PackReader(pack) as reader:
        starts = [f.start for f in reader.index.frames]
        for m in reader.index.files:
            span = frames_for(reader.index.frames, starts, m.start, m.size)
            assert len(span) <= 1 or m.size > 4096, m.path
            if m.size > 4096:
                assert reader.index.frames[span[0]].start == m.start, m.path


def test_unpack_gives_every_byte_back(tmp_path: Path) -> None:
    src, pack, _msgs = _pack(tmp_path, "mbox")
    out = tmp_path / "out"
    unpack(pack, out)
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        assert (out / rel).is_dir() == path.is_dir(), rel
        if path.is_file() and rel.as_posix() != ".archiver/lock":
            assert (out / rel).read_bytes() == path.read_bytes(), rel


def test_a_flipped_byte_in_a_frame_is_refused_naming_the_frame(tmp_path: Path) -> None:
    _src, pack, msgs = _pack(tmp_path, "maildir")
    with PackReader(pack) as reader:
        frame = reader.index.frames[3]
        member = next(m for m in reader.index.files
                      if m.start >= frame.start and m.start < frame.start + frame.length)
    data = bytearray(pack.read_bytes())
    data[frame.offset + frame.size // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    with PackReader(pack) as reader:
        with pytest.raises(PackDamaged, match="frame 3 "):
            reader.read_file(member.path)
        good = reader.index.files[-1]  # other frames still read
        assert hashlib.sha256(reader.read_file(good.path)).hexdigest() == good.sha256


@pytest.mark.parametrize("cut", [1, FOOTER_SIZE, 1000])
def test_a_cut_pack_is_refused_on_opening(tmp_path: Path, cut: int) -> None:
    _src, pack, _msgs = _pack(tmp_path, "maildir")
    data = pack.read_bytes()
    pack.write_bytes(data[:-cut])
    with pytest.raises(DestinationError, match="not a readable pack"):
        PackReader(pack)


def test_a_running_archivers_scratch_is_left_out_and_everything_else_kept(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_archive(src, "mbox", messages(3))
    meta = src / ".archiver"
    (meta / "tmp").mkdir()
    for scratch in ("lock", "restore-h-u.lock", "folders.json.tmp", "tmp/0123.1.2.partial"):
        (meta / scratch).write_bytes(b"scratch")
    for kept in (".archiver/restore-h-u.jsonl.zst", ".archiver/folders.json", "Inbox.msf",
                 ".archiver/damaged/x"):
        (src / kept).parent.mkdir(exist_ok=True)
        (src / kept).write_bytes(b"kept")
    pack = tmp_path / "p.pack"
    write_pack(src, pack, level=3)
    with PackReader(pack) as reader:
        files = set(reader.files)
        dirs = {d.path for d in reader.index.dirs}
    assert {".archiver/restore-h-u.jsonl.zst", ".archiver/folders.json", "Inbox.msf",
            ".archiver/damaged/x", "Inbox", ".archiver/archive.json"} <= files
    assert not {f for f in files if "lock" in f or f.endswith((".tmp", ".partial"))}
    assert ".archiver/tmp" in dirs  # the directory is the archive's; its contents are not
