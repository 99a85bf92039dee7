"""Real foreign file systems for the suite: an exFAT and an NTFS image, mounted with FUSE.

* exFAT (``mkfs.exfat`` from exfatprogs, mounted with exfat-fuse on a loop
  device): what a USB stick is.  Case-insensitive; refuses ``:`` (ENOENT),
  ``*?<>|"`` and control characters.
* NTFS (``mkntfs -F -Q``, mounted ``ntfs-3g -o windows_names IMAGE DIR``):
  Win32 name rules -- no ``:``, no reserved device names (``CON``,
  ``nul.txt``), no trailing dot or space -- but case-sensitive.

As root (CI) a missing tool is a failure, not a skip: :class:`Unavailable`
is raised and the fixture lets it through; otherwise the test is skipped
with the reason (tests/conftest.py).  Everything is unmounted on teardown,
also after a failed test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

IMAGE_BYTES = 256 << 20  # room for the corpus twice over, exports and restores included


class Unavailable(Exception):
    """A tool or kernel feature the mount needs is missing (message says which)."""


@dataclass(frozen=True)
class ForeignFS:
    kind: str  # "exfat" or "ntfs"
    mountpoint: Path
    case_insensitive: bool


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None
               and not Path("/usr/sbin", t).exists() and not Path("/sbin", t).exists()]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (Debian: exfatprogs exfat-fuse "
                          "ntfs-3g; scripts/test installs them as root)")
    if not Path("/dev/fuse").exists():
        raise Unavailable("/dev/fuse is missing (no FUSE in this container)")


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)} failed ({done.returncode}): "
                          f"{(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout


def _tool(name: str) -> str:
    for where in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if where and Path(where).exists():
            return where
    raise Unavailable(f"{name} not installed")


def _mounted(path: Path) -> bool:
    want = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == want for line in fh if len(line.split()) > 1)


def _unmount(path: Path) -> None:
    for attempt in range(50):
        if not _mounted(path):
            return
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=60)
        if done.returncode == 0:
            return
        time.sleep(0.1 * (attempt + 1))  # a file still open by a finished test's thread
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)


@contextmanager
def exfat(base: Path) -> Iterator[ForeignFS]:
    """An exFAT file system on ``base/mnt`` (image ``base/exfat.img`` on a loop device)."""
    if os.geteuid() != 0:
        raise Unavailable("mounting an image needs root (a loop device)")
    _need("mkfs.exfat", "mount.exfat-fuse", "losetup")
    image, mnt = base / "exfat.img", base / "mnt"
    mnt.mkdir(parents=True)
    with open(image, "wb") as fh:
        fh.truncate(IMAGE_BYTES)
    _run(_tool("mkfs.exfat"), "-L", "STICK", str(image))
    loop = _run(_tool("losetup"), "--find", "--show", str(image)).strip()
    try:
        # exfat-fuse wants a block device ("Block device required" for a plain file)
        _run(_tool("mount.exfat-fuse"), loop, str(mnt))
        try:
            yield ForeignFS("exfat", mnt, case_insensitive=True)
        finally:
            _unmount(mnt)
    finally:
        subprocess.run([_tool("losetup"), "-d", loop], capture_output=True, timeout=60)


@contextmanager
def ntfs(base: Path) -> Iterator[ForeignFS]:
    """An NTFS file system with Win32 name rules on ``base/mnt`` (ntfs-3g, windows_names)."""
    if os.geteuid() != 0:
        raise Unavailable("ntfs-3g mounts need root here")
    _need("mkntfs", "ntfs-3g")
    image, mnt = base / "ntfs.img", base / "mnt"
    mnt.mkdir(parents=True)
    with open(image, "wb") as fh:
        fh.truncate(IMAGE_BYTES)
    _run(_tool("mkntfs"), "-F", "-Q", "-L", "WINDOWS", str(image))
    _run(_tool("ntfs-3g"), "-o", "windows_names", str(image), str(mnt))
    try:
        yield ForeignFS("ntfs", mnt, case_insensitive=False)
    finally:
        _unmount(mnt)


MOUNTS = {"exfat": exfat, "ntfs": ntfs}
