"""Mount, drive and always unmount a volatile test file system (tests/volatilefs.py).

:func:`mounted` starts ``python -m tests.volatilefs`` in a subprocess, waits
until the mount and its control socket are up, and at the end unmounts
(``fusermount3 -u``, lazily if busy) and stops the daemon, even after a
failure.  :class:`VolatileFS` speaks the control channel: arm a power cut at
the N-th mutating operation, count operations, learn that the cut happened,
reboot.  This module needs no FUSE bindings itself, so importing it (from
conftest.py) never breaks collection; :func:`mounted` fails with what is
missing instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent



class VolatileFS:
    """A mounted volatile file system, driven through its control socket."""

    def __init__(self, mountpoint: Path, control_path: Path, proc: subprocess.Popen[bytes],
                 log: Path) -> None:
        self.mountpoint = mountpoint
        self.control_path = control_path
        self.proc = proc
        self.log = log

    def ask(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(self.control_path))
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        answer = data.decode().strip()
        if answer.startswith("error") or not answer:
            raise RuntimeError(f"volatilefs control {line!r}: {answer or 'no answer'}")
        return answer

    def arm(self, n: int, kill_pid: int = 0) -> None:
        """Reset the count; the n-th mutating operation from now cuts the power (kills PID)."""
        self.ask(f"arm {n} {kill_pid}" if kill_pid else f"arm {n}")

    def reset(self) -> None:
        """Disarm and reset the count of mutating operations."""
        self.ask("reset")

    def count(self) -> int:
        return int(self.ask("count"))

    def victim(self, pid: int) -> None:
        """PID gets SIGKILL at the instant the armed cut fires."""
        self.ask(f"victim {pid}")

    def cut_happened(self) -> bool:
        return self.ask("status").split()[0] == "dead"

    def cut_operation(self) -> str:
        """Which mutating operation the cut replaced ("" while alive)."""
        return " ".join(self.ask("status").split()[2:])

    def cut(self) -> None:
        """Cut the power now."""
        self.ask("cut")

    def reboot(self) -> None:
        """The disk answers again, with what was durable at the cut.

        The kernel may still hold the pre-cut attributes of an inode (Linux 6.18
        keeps the size a truncate's reply gave, despite attr_timeout=0), so the
        cached dentries and inodes are dropped: a reader must see the disk.
        """
        self.ask("reboot")
        _drop_kernel_caches()

    def sync(self) -> None:
        """Make everything durable (set-up: what a test put there before arming)."""
        self.ask("sync")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _drop_kernel_caches() -> None:
    """Forget cached dentries and inodes (root only; a no-op otherwise)."""
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def prerequisites_missing() -> list[str]:
    """What this machine lacks to mount a volatile fs (empty: nothing)."""
    import importlib.util
    from ctypes.util import find_library

    missing = []
    if not Path("/dev/fuse").exists():
        missing.append("/dev/fuse")
    if shutil.which("fusermount3") is None or find_library("fuse3") is None:
        missing.append("Debian package fuse3 (fusermount3, libfuse3)")
    if importlib.util.find_spec("mfusepy") is None:
        missing.append("PyPI package mfusepy (the 'test' extra)")
    return missing


def is_mounted(mountpoint: Path) -> bool:
    """From /proc/self/mounts: ``os.path.ismount`` says False when the fs answers EIO."""
    target = str(mountpoint.absolute())
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            where = line.split(" ")[1]
            where = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), where)
            if where == target:
                return True
    return False


def _unmount(mountpoint: Path) -> None:
    for args in (["fusermount3", "-u"], ["fusermount3", "-uz"]):
        if not is_mounted(mountpoint):
            return
        subprocess.run([*args, str(mountpoint)], capture_output=True, timeout=30)


@contextlib.contextmanager
def mounted(mountpoint: Path, timeout: float = 15) -> Iterator[VolatileFS]:
    """Mount a fresh volatile fs on ``mountpoint``; always unmounted and stopped after."""
    missing = prerequisites_missing()
    if missing:
        raise RuntimeError("cannot mount the volatile test file system, missing: "
                           + ", ".join(missing) + " (scripts/test installs them)")
    mountpoint.mkdir(parents=True, exist_ok=True)
    ctl_dir = Path(tempfile.mkdtemp(prefix="vfs"))  # short: AF_UNIX paths are limited
    log = mountpoint.parent / f"{mountpoint.name}.volatilefs.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "tests.volatilefs", str(mountpoint),
                                 "--control", str(ctl_dir / "ctl")],
                                env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    fs = VolatileFS(mountpoint, ctl_dir / "ctl", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while not (is_mounted(mountpoint) and (ctl_dir / "ctl").exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"volatilefs did not mount {mountpoint} (exit "
                                   f"{proc.poll()}):\n{fs.log_tail()}")
            time.sleep(0.02)
        fs.ask("ping")
        yield fs
    finally:
        _unmount(mountpoint)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        _unmount(mountpoint)
        shutil.rmtree(ctl_dir, ignore_errors=True)
