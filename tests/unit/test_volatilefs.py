"""The volatile test file system loses exactly what strict POSIX allows a power cut to lose.

tests/integration/test_powercut.py relies on these rules: if the layer kept
more than it must, a missing fsync in archiver would go unnoticed.  Needs
FUSE (mounted through the ``volatile_fs`` fixture), no mail server.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from archiver.durable import fsync_dir
from tests.volatilemount import VolatileFS


def _write(path: Path, data: bytes, *, sync: bool, flags: int = os.O_CREAT | os.O_TRUNC) -> None:
    fd = os.open(path, os.O_WRONLY | flags, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _power_cycle(fs: VolatileFS) -> None:
    fs.cut()
    fs.reboot()


def test_bytes_written_without_fsync_are_gone_after_a_cut(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    _write(m / "named", b"", sync=True)
    fsync_dir(m)  # the name is durable, the bytes written next are not
    _write(m / "named", b"unsynced bytes", sync=False, flags=0)
    _write(m / "new", b"never synced at all", sync=False)
    assert (m / "named").read_bytes() == b"unsynced bytes"
    _power_cycle(volatile_fs)
    assert (m / "named").read_bytes() == b""
    assert not (m / "new").exists()


def test_fsync_of_a_new_file_alone_does_not_keep_its_name(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    _write(m / "f", b"synced data", sync=True)
    _power_cycle(volatile_fs)
    assert os.listdir(m) == []


def test_file_and_directory_fsync_survive_a_cut(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    (m / "d").mkdir()
    fsync_dir(m)
    _write(m / "d" / "f", b"durable", sync=True)
    fsync_dir(m / "d")
    _power_cycle(volatile_fs)
    assert (m / "d" / "f").read_bytes() == b"durable"


def test_a_new_directory_needs_its_parent_fsynced(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    (m / "kept").mkdir()
    fsync_dir(m)
    (m / "lost").mkdir()
    (m / "kept" / "child").mkdir()  # kept/ itself never fsynced: it comes back empty
    _power_cycle(volatile_fs)
    assert os.listdir(m) == ["kept"]
    assert os.listdir(m / "kept") == []


@pytest.mark.parametrize("dir_synced", [False, True])
def test_rename_over_an_existing_file(volatile_fs: VolatileFS, dir_synced: bool) -> None:
    """atomic_write's pattern: the new bytes win only once the directory is fsynced."""
    m = volatile_fs.mountpoint
    _write(m / "f", b"old", sync=True)
    fsync_dir(m)
    _write(m / "f.tmp", b"new", sync=True)
    os.replace(m / "f.tmp", m / "f")
    if dir_synced:
        fsync_dir(m)
    _power_cycle(volatile_fs)
    assert (m / "f").read_bytes() == (b"new" if dir_synced else b"old")
    assert sorted(os.listdir(m)) == ["f"]


def test_rename_across_directories_survives_only_where_fsynced(
        volatile_fs: VolatileFS) -> None:
    """Maildir's tmp/ -> cur/: a name lives in the directory that holds it."""
    m = volatile_fs.mountpoint
    for d in ("tmp", "cur", "other"):
        (m / d).mkdir()
    fsync_dir(m)
    _write(m / "tmp" / "a", b"A", sync=True)
    _write(m / "tmp" / "b", b"B", sync=True)
    fsync_dir(m / "tmp")  # both names durable in tmp/
    os.replace(m / "tmp" / "a", m / "cur" / "a")
    os.replace(m / "tmp" / "b", m / "other" / "b")
    fsync_dir(m / "cur")  # cur/ is synced, tmp/ and other/ are not
    _power_cycle(volatile_fs)
    assert (m / "cur" / "a").read_bytes() == b"A"
    assert os.listdir(m / "other") == []
    assert sorted(os.listdir(m / "tmp")) == ["a", "b"]  # tmp/ never learnt of the moves


def test_unlink_and_truncate_are_undone_without_fsync(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    _write(m / "gone", b"1", sync=True)
    _write(m / "cut", b"0123456789", sync=True)
    fsync_dir(m)
    os.unlink(m / "gone")
    os.truncate(m / "cut", 3)
    _power_cycle(volatile_fs)
    assert (m / "gone").read_bytes() == b"1"
    assert (m / "cut").read_bytes() == b"0123456789"


@pytest.mark.parametrize("synced", [False, True])
def test_appends_to_a_synced_file_need_their_own_fsync(volatile_fs: VolatileFS,
                                                       synced: bool) -> None:
    """The mbox store's pattern: an O_APPEND batch, then fsync, then the index."""
    m = volatile_fs.mountpoint
    _write(m / "mbox", b"From a\n\nfirst\n\n", sync=True)
    fsync_dir(m)
    _write(m / "mbox", b"From b\n\nsecond\n\n", sync=synced, flags=os.O_APPEND)
    assert (m / "mbox").read_bytes() == b"From a\n\nfirst\n\nFrom b\n\nsecond\n\n"
    _power_cycle(volatile_fs)
    expect = b"From a\n\nfirst\n\n" + (b"From b\n\nsecond\n\n" if synced else b"")
    assert (m / "mbox").read_bytes() == expect


def test_an_armed_cut_replaces_the_nth_mutating_operation(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    _write(m / "base", b"durable", sync=True)
    fsync_dir(m)
    volatile_fs.arm(4)
    fd = os.open(m / "base", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"+1")  # 1
    os.listdir(m)
    assert (m / "base").read_bytes() == b"durable+1"  # reads are not counted
    os.write(fd, b"+2")  # 2
    os.fsync(fd)  # 3: durable
    with pytest.raises(OSError) as exc:
        os.write(fd, b"+3")  # 4: the power is cut instead
    assert exc.value.errno == errno.EIO
    assert volatile_fs.cut_happened()
    with pytest.raises(OSError) as exc:
        os.listdir(m)  # a dead disk
    assert exc.value.errno == errno.EIO
    os.close(fd)
    volatile_fs.reboot()
    assert (m / "base").read_bytes() == b"durable+1+2"
    assert not volatile_fs.cut_happened()


def test_count_reports_mutating_operations_only(volatile_fs: VolatileFS) -> None:
    m = volatile_fs.mountpoint
    volatile_fs.reset()
    (m / "d").mkdir()  # 1
    _write(m / "d" / "f", b"x", sync=True)  # create 2, write 3, fsync 4
    os.chmod(m / "d" / "f", 0o600)  # 5
    os.utime(m / "d" / "f", (1, 2))  # 6
    os.replace(m / "d" / "f", m / "g")  # 7
    fsync_dir(m)  # 8
    (m / "g").read_bytes()
    os.stat(m / "g")
    os.listdir(m)
    assert volatile_fs.count() == 8


def test_a_cut_kills_the_given_process_at_that_instant(volatile_fs: VolatileFS) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        volatile_fs.arm(1, kill_pid=victim.pid)
        with pytest.raises(OSError):
            (volatile_fs.mountpoint / "x").mkdir()
        assert victim.wait(10) == -9
    finally:
        victim.kill()
        victim.wait()


def test_what_archiver_uses_behaves_like_posix(volatile_fs: VolatileFS) -> None:
    """O_EXCL/O_NOFOLLOW opens, pwrite with a gap, chmod, utime, statfs, flock, symlink."""
    m = volatile_fs.mountpoint
    f = m / "f"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    os.pwrite(fd, b"end", 5)
    os.pwrite(fd, b"ab", 0)
    os.ftruncate(fd, 7)
    os.close(fd)
    assert f.read_bytes() == b"ab\0\0\0en"
    with pytest.raises(FileExistsError):
        os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    os.chmod(f, 0o600)
    os.utime(f, (1_000_000_000, 1_000_000_000))
    st = os.stat(f)
    assert (st.st_mode & 0o777, st.st_mtime, st.st_size) == (0o600, 1_000_000_000, 7)
    assert os.statvfs(m).f_bavail > 0
    with open(f, "rb") as a, open(f, "rb") as b:
        fcntl.flock(a.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(b.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(PermissionError):
        os.symlink("f", m / "link")
    (m / "d").mkdir()
    (m / "d" / "x").write_bytes(b"")
    with pytest.raises(OSError) as exc:
        os.rmdir(m / "d")
    assert exc.value.errno == errno.ENOTEMPTY
