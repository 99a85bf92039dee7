"""Which sync strategy a DEST gets, and why (archiver.durable.choose_strategy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archiver.durable import (
    FileSystemSync,
    PerFileSync,
    choose_strategy,
    filesystem_type,
    kernel_version,
)


@pytest.mark.parametrize("fs,kernel,expect", [
    ("ext4", (6, 1), FileSystemSync), ("xfs", (5, 8), FileSystemSync),
    ("ext4", (5, 7), PerFileSync),  # syncfs reported no writeback errors before 5.8
    ("ext4", (4, 19), PerFileSync),
    ("nfs4", (6, 1), PerFileSync), ("cifs", (6, 1), PerFileSync),
    ("fuse.exfat-fuse", (6, 1), PerFileSync),  # FUSE never sees syncfs
    ("fuseblk", (6, 1), PerFileSync), ("exfat", (6, 1), PerFileSync),
    ("vfat", (6, 1), PerFileSync), (None, (6, 1), PerFileSync),
])
def test_syncfs_only_on_new_kernels_and_known_local_file_systems(
        tmp_path: Path, fs: str | None, kernel: tuple[int, int], expect: type) -> None:
    choice = choose_strategy(tmp_path, mode="auto", fs_type=fs or "", kernel=kernel)
    assert isinstance(choice.strategy, expect), choice.reason
    assert choice.reason  # said in the --verbose log


def test_the_environment_overrides_the_choice(tmp_path: Path) -> None:
    assert isinstance(choose_strategy(tmp_path, mode="fsync", fs_type="ext4",
                                      kernel=(6, 1)).strategy, PerFileSync)
    forced = choose_strategy(tmp_path, mode="syncfs", fs_type="nfs4", kernel=(6, 1)).strategy
    assert isinstance(forced, FileSystemSync) or os.name != "posix"


def test_kernel_version_reads_distribution_suffixes() -> None:
    assert kernel_version("6.18.44-fc-v669") == (6, 18)
    assert kernel_version("5.8.0-1-amd64") == (5, 8)
    assert kernel_version("4.19.0+") == (4, 19)
    assert kernel_version("garbage") == (0, 0)


def test_filesystem_type_comes_from_the_mount_of_the_paths_device(tmp_path: Path) -> None:
    dev = os.stat(tmp_path).st_dev
    here = f"{os.major(dev)}:{os.minor(dev)}"
    mountinfo = (f"22 1 {here} / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
                 "30 22 0:99 / /mnt rw - fuse.sshfs host: rw\n"
                 f"31 22 {here} / /other rw - nfs4 server:/x rw\n")
    assert filesystem_type(tmp_path, mountinfo) == "nfs4"  # the later mount of the device
    assert filesystem_type(tmp_path, "garbage line\n") is None
    assert filesystem_type(tmp_path / "missing", mountinfo) is None
