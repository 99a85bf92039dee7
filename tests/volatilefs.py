"""A FUSE file system that forgets, on a power cut, everything that was not made durable.

kill -9 cannot test "durable before recorded": the page cache survives a
killed process, so a missing fsync goes unnoticed.  This file system keeps
its whole tree in memory (a few MB) and, for every inode, two states: the
*live* one every operation sees and the *durable* one a power cut leaves.
The rules are strict POSIX, nothing more generous:

* write/truncate change a file's live bytes; ``fsync``/``fdatasync`` of the
  file makes its current bytes (and size, mode, mtime) durable -- not its name;
* create, mkdir, rename, unlink and rmdir change the live entries of the
  directories involved; ``fsync`` of a directory (open it O_RDONLY, fsync the
  fd) makes that directory's current entries durable.  A rename touches two
  directories: the new name survives only if its directory was fsynced, the
  old one disappears only if its directory was;
* a *power cut* replaces all live state by the durable state: data never
  synced comes back empty (or as the bytes of the last fsync), names never
  made durable vanish, a rename not made durable is undone.

Not modelled: ``syncfs(2)``/``sync(2)`` from a client (the kernel forwards
neither to a FUSE daemon, so they make nothing durable here -- as on a disk
whose file system ignored them) and hard or symbolic links (refused with
EPERM; ``readlink`` answers EINVAL).  ``flock``/``fcntl`` locks are not
implemented by the daemon, so the kernel keeps them itself (real exclusion
between processes on this machine).  The kernel caches nothing: ``direct_io``
and zero entry/attribute timeouts, so what a reader sees after a cut is the
reverted tree.

A control channel (a Unix socket outside the mount, one command per
connection, one line each way) lets a test count *mutating* operations
(create, mkdir, rename, unlink, rmdir, write, truncate, chmod, utimens,
fsync, fsyncdir) and arm a cut: ``arm N [PID]`` resets the count, and the
N-th mutating operation from then on is not performed -- the tree reverts to
its durable state, PID (if given, or named later by ``victim PID``) gets
SIGKILL at that instant, and every operation fails with EIO (a dead disk)
until ``reboot``.  ``status`` tells whether the cut happened and which
operation it replaced; ``sync`` makes everything durable (test set-up).

Run as ``python -m tests.volatilefs MOUNTPOINT --control SOCKET``;
tests/volatilemount.py starts it, waits for the mount, drives the control
channel and always unmounts it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

# ------------------------------------------------------------------ the model


@dataclass(eq=False)
class Node:
    """One inode: a file (bytes) or a directory (name -> Node), live and durable."""

    is_dir: bool
    mode: int
    mtime_ns: int
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, Node] = field(default_factory=dict)
    durable_data: bytes = b""
    durable_entries: dict[str, Node] = field(default_factory=dict)
    durable_mode: int = 0
    durable_mtime_ns: int = 0

    def __post_init__(self) -> None:
        # A new inode's metadata is durable with it (its *name* is not: that is the
        # parent directory's entry); its data and entries start empty.
        self.durable_mode, self.durable_mtime_ns = self.mode, self.mtime_ns

    def make_durable(self) -> None:
        self.durable_data = bytes(self.data)
        self.durable_entries = dict(self.entries)
        self.durable_mode, self.durable_mtime_ns = self.mode, self.mtime_ns

    def revert(self) -> None:
        self.data = bytearray(self.durable_data)
        self.entries = dict(self.durable_entries)
        self.mode, self.mtime_ns = self.durable_mode, self.durable_mtime_ns


F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _reading(fn: F) -> F:
    """Holds the lock; a dead disk answers EIO."""
    @functools.wraps(fn)
    def wrapper(self: VolatileOps, *args: Any) -> Any:
        with self.mutex:
            if self.dead:
                raise _fail(errno.EIO)
            return fn(self, *args)
    return wrapper  # type: ignore[return-value]


def _mutating(fn: F) -> F:
    """Counts the operation; the armed N-th one is not done: the power is cut instead."""
    @functools.wraps(fn)
    def wrapper(self: VolatileOps, *args: Any) -> Any:
        with self.mutex:
            self.count_mutation(fn.__name__)
            return fn(self, *args)
    return wrapper  # type: ignore[return-value]


class VolatileOps:
    """The FUSE operations (mfusepy calls these by name) over a tree of :class:`Node`."""

    use_ns = True  # times in nanoseconds (mfusepy)

    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.root = Node(True, 0o755, time.time_ns())
        self.handles: dict[int, tuple[Node, int]] = {}  # fh -> (node, open flags)
        self.next_fh = 1
        self.ops = 0  # mutating operations since the last arm/reset
        self.cut_at = 0  # 0 = not armed
        self.kill_pid = 0
        self.dead = False
        self.cut_op = ""  # which operation the cut replaced

    # -------------------------------------------------------------- the model's core

    def count_mutation(self, what: str) -> None:
        if self.dead:
            raise _fail(errno.EIO)
        self.ops += 1
        if self.cut_at and self.ops >= self.cut_at:
            self.power_cut()
            self.cut_op = what
            raise _fail(errno.EIO)

    def power_cut(self) -> None:
        """Everything not durable is lost; the disk is dead until reboot."""
        if self.kill_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.kill_pid, signal.SIGKILL)
        todo, seen = [self.root], set()
        while todo:  # only inodes reachable through durable names survive
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            node.revert()
            todo.extend(node.entries.values())
        self.handles.clear()
        self.cut_at, self.kill_pid, self.dead, self.cut_op = 0, 0, True, "control"

    def sync_all(self) -> None:
        """Make the whole live tree durable (test set-up only; a client cannot do this)."""
        todo = [self.root]
        while todo:
            node = todo.pop()
            node.make_durable()
            todo.extend(node.entries.values())

    def _lookup(self, path: str) -> Node:
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise _fail(errno.ENOTDIR)
            child = node.entries.get(part)
            if child is None:
                raise _fail(errno.ENOENT)
            node = child
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head)
        if not parent.is_dir:
            raise _fail(errno.ENOTDIR)
        if not name or len(name.encode("utf-8", "surrogateescape")) > 255:
            raise _fail(errno.EINVAL if not name else errno.ENAMETOOLONG)
        return parent, name

    def _node(self, path: Optional[str], fh: Optional[int]) -> Node:
        if fh is not None and fh in self.handles:
            return self.handles[fh][0]
        if path is None:
            raise _fail(errno.EBADF)
        return self._lookup(path)

    def _handle(self, fh: int) -> tuple[Node, int]:
        try:
            return self.handles[fh]
        except KeyError:  # a handle from before a power cut
            raise _fail(errno.EIO) from None

    def _new_handle(self, node: Node, flags: int) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (node, flags)
        return fh

    # -------------------------------------------------------------- reading

    @_reading
    def getattr(self, path: Optional[str], fh: Optional[int] = None) -> dict[str, Any]:
        node = self._node(path, fh)
        size = len(node.data)
        kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
        nlink = 2 + sum(c.is_dir for c in node.entries.values()) if node.is_dir else 1
        return {"st_mode": kind | node.mode, "st_nlink": nlink, "st_size": size,
                "st_uid": os.getuid(), "st_gid": os.getgid(), "st_blocks": (size + 511) // 512,
                "st_atime": node.mtime_ns, "st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns}

    @_reading
    def readdir(self, path: Optional[str], fh: int) -> list[str]:
        node = self._node(path, fh)
        if not node.is_dir:
            raise _fail(errno.ENOTDIR)
        return [".", "..", *node.entries]

    @_reading
    def opendir(self, path: str) -> int:
        node = self._lookup(path)
        if not node.is_dir:
            raise _fail(errno.ENOTDIR)
        return self._new_handle(node, os.O_RDONLY)

    def releasedir(self, path: Optional[str], fh: int) -> int:
        return self.release(path, fh)

    @_reading
    def read(self, path: Optional[str], size: int, offset: int, fh: int) -> bytes:
        node, _ = self._handle(fh)
        return bytes(node.data[offset : offset + size])

    @_reading
    def statfs(self, path: str) -> dict[str, int]:
        blocks = 1 << 20  # "4 GiB", mostly free: the tree lives in memory
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": blocks // 2,
                "f_bavail": blocks // 2, "f_files": 1 << 20, "f_ffree": 1 << 19,
                "f_namemax": 255}

    def release(self, path: Optional[str], fh: int) -> int:
        with self.mutex:  # the kernel ignores the answer; a dead disk just forgets
            self.handles.pop(fh, None)
        return 0

    def readlink(self, path: str) -> str:
        raise _fail(errno.EINVAL)  # nothing here is a symbolic link

    def symlink(self, target: str, source: str) -> int:
        raise _fail(errno.EPERM)  # symlink(2): "the file system does not support" them

    def link(self, target: str, source: str) -> int:
        raise _fail(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise _fail(errno.EPERM)

    # -------------------------------------------------------------- names (live only)

    @_mutating
    def create(self, path: str, mode: int, flags: int = os.O_CREAT) -> int:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is not None:
            if flags & os.O_EXCL:
                raise _fail(errno.EEXIST)
            if node.is_dir:
                raise _fail(errno.EISDIR)
            if flags & os.O_TRUNC:
                node.data = bytearray()
        else:
            node = Node(False, stat.S_IMODE(mode), time.time_ns())
            parent.entries[name] = node
            parent.mtime_ns = node.mtime_ns
        return self._new_handle(node, flags)

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            if self.dead:
                raise _fail(errno.EIO)
            node = self._lookup(path)
            if node.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
                raise _fail(errno.EISDIR)
            if flags & os.O_TRUNC:  # sent with the open when the kernel has atomic O_TRUNC
                self.count_mutation("open O_TRUNC")
                node.data = bytearray()
            return self._new_handle(node, flags)

    @_mutating
    def mkdir(self, path: str, mode: int) -> int:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _fail(errno.EEXIST)
        node = Node(True, stat.S_IMODE(mode), time.time_ns())
        parent.entries[name] = node
        parent.mtime_ns = node.mtime_ns
        return 0

    @_mutating
    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _fail(errno.ENOENT)
        if node.is_dir:
            raise _fail(errno.EISDIR)
        del parent.entries[name]
        parent.mtime_ns = time.time_ns()
        return 0

    @_mutating
    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _fail(errno.ENOENT)
        if not node.is_dir:
            raise _fail(errno.ENOTDIR)
        if node.entries:
            raise _fail(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime_ns = time.time_ns()
        return 0

    @_mutating
    def rename(self, old: str, new: str) -> int:
        """rename(2)/os.replace: the new name replaces an existing one atomically (live)."""
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        node = old_parent.entries.get(old_name)
        if node is None:
            raise _fail(errno.ENOENT)
        target = new_parent.entries.get(new_name)
        if target is node:
            return 0
        if node.is_dir and (new + "/").startswith(old.rstrip("/") + "/"):
            raise _fail(errno.EINVAL)  # into its own subtree
        if target is not None:
            if node.is_dir and not target.is_dir:
                raise _fail(errno.ENOTDIR)
            if not node.is_dir and target.is_dir:
                raise _fail(errno.EISDIR)
            if target.is_dir and target.entries:
                raise _fail(errno.ENOTEMPTY)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node
        old_parent.mtime_ns = new_parent.mtime_ns = time.time_ns()
        return 0

    # -------------------------------------------------------------- data and metadata (live)

    @_mutating
    def write(self, path: Optional[str], data: bytes, offset: int, fh: int) -> int:
        node, flags = self._handle(fh)
        if flags & os.O_APPEND:
            offset = len(node.data)  # appends land at the live end, whatever the kernel thought
        if offset > len(node.data):
            node.data.extend(b"\0" * (offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime_ns = time.time_ns()
        return len(data)

    @_mutating
    def truncate(self, path: Optional[str], length: int, fh: Optional[int] = None) -> int:
        node = self._node(path, fh)
        if node.is_dir:
            raise _fail(errno.EISDIR)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(b"\0" * (length - len(node.data)))
        node.mtime_ns = time.time_ns()
        return 0

    @_mutating
    def chmod(self, path: Optional[str], mode: int) -> int:
        node = self._node(path, None)
        node.mode = stat.S_IMODE(mode)
        return 0

    @_mutating
    def utimens(self, path: Optional[str], times: Optional[tuple[int, int]] = None) -> int:
        node = self._node(path, None)
        node.mtime_ns = times[1] if times else time.time_ns()
        return 0

    # -------------------------------------------------------------- durability

    @_mutating
    def fsync(self, path: Optional[str], datasync: int, fh: int) -> int:
        """The file's bytes, size and metadata become durable; its name does not."""
        self._handle(fh)[0].make_durable()  # a file has no entries
        return 0

    @_mutating
    def fsyncdir(self, path: Optional[str], datasync: int, fh: int) -> int:
        """The directory's current entries become durable (not its children's contents)."""
        self._handle(fh)[0].make_durable()  # a directory has no bytes
        return 0

    # -------------------------------------------------------------- FUSE set-up

    def init_with_config(self, conn: Any, config: Any) -> None:
        """No kernel caching, so a reader after a cut sees the reverted tree."""
        if config is not None:
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
            config.direct_io = 1  # no page cache: every read and write reaches us
            config.hard_remove = 1  # unlink really unlinks (no .fuse_hidden renames)
            config.kernel_cache = config.auto_cache = 0

    # -------------------------------------------------------------- control channel

    def control(self, line: str) -> str:
        """One command of the control channel; returns the one-line answer."""
        words = line.split()
        cmd = words[0] if words else ""
        with self.mutex:
            if cmd == "arm":  # arm N [PID]: the N-th mutating operation from now cuts
                self.ops, self.cut_at = 0, int(words[1])
                self.kill_pid = int(words[2]) if len(words) > 2 else 0
                return "ok"
            if cmd == "reset":
                self.ops, self.cut_at, self.kill_pid = 0, 0, 0
                return "ok"
            if cmd == "count":
                return str(self.ops)
            if cmd == "victim":  # victim PID: SIGKILLed when the armed cut fires
                self.kill_pid = int(words[1])
                return "ok"
            if cmd == "status":  # "alive OPS" or "dead OPS OPERATION-THE-CUT-REPLACED"
                return f"alive {self.ops}" if not self.dead else f"dead {self.ops} {self.cut_op}"
            if cmd == "cut":
                self.power_cut()
                return "ok"
            if cmd == "reboot":
                self.dead = False
                self.ops = 0
                return "ok"
            if cmd == "sync":
                self.sync_all()
                return "ok"
            if cmd == "ping":
                return "pong"
        return f"error unknown command {line!r}"


def _serve_control(ops: VolatileOps, sock_path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(8)

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(ops.control(data.decode().strip()).encode() + b"\n")

    threading.Thread(target=loop, name="control", daemon=True).start()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.volatilefs", description=__doc__)
    parser.add_argument("mountpoint")
    parser.add_argument("--control", required=True, help="Unix socket path (outside the mount)")
    args = parser.parse_args(argv)
    import mfusepy  # only the daemon needs it: importing this module for the client does not

    ops = VolatileOps()
    _serve_control(ops, args.control)
    # Single-threaded: operations are applied (and counted) one at a time, in order.
    mfusepy.FUSE(ops, args.mountpoint, foreground=True, nothreads=True, fsname="volatilefs",
                 subtype="volatilefs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
