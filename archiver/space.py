"""Will the mail fit on DEST?  Disk space needed for the messages not yet archived.

A file takes whole clusters on disk: a 3 KB message takes 128 KiB on a
large exFAT stick, so adding up message sizes would promise room that is
not there.  Each Maildir file is rounded up to DEST's cluster (``statvfs``
``f_frsize``, else ``f_bsize``, of DEST or its nearest existing parent); an
mbox folder is one file, so its new bytes are rounded once per folder.  On
top comes an allowance for the index and metadata (:data:`METADATA_FIXED`
plus :data:`METADATA_PER_MESSAGE` per message, documented in README "check").

Pure arithmetic apart from :func:`volume_of`, which reads the file system.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archiver.i18n import _, ngettext
from archiver.units import human_size

# The allowance for DEST/.archiver (index frames, snapshot, archive.json, folders.json,
# lock): 1 MiB, plus 512 bytes per message (a compressed index record and its snapshot
# line take about half that).
METADATA_FIXED = 1 << 20
METADATA_PER_MESSAGE = 512
# mbox: the "From " line, the blank line after each message and ">From " escapes.
MBOX_PER_MESSAGE = 128
# A new Maildir folder: its directory and cur/, new/, tmp/ (a new mbox folder: its file's
# first cluster is in the rounding; one more for a .sbd directory).
MAILDIR_DIRS = 4
FALLBACK_CLUSTER = 4096  # where statvfs does not exist (Windows)


@dataclass(frozen=True)
class Volume:
    """The file system DEST is (or would be) on."""

    path: Path  # DEST, or its nearest existing parent
    cluster: int
    free: int


def nearest_existing(dest: Path) -> Path:
    """DEST if it exists, else its nearest existing parent directory."""
    path = dest.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path if path.is_dir() else path.parent


def volume_of(dest: Path) -> Volume:
    """Cluster size and free bytes (for this user: ``f_bavail``) where DEST is."""
    where = nearest_existing(dest)
    statvfs = getattr(os, "statvfs", None)
    cluster = FALLBACK_CLUSTER
    if statvfs is not None:
        st = statvfs(where)
        cluster = st.f_frsize or st.f_bsize or FALLBACK_CLUSTER
    return Volume(where, cluster, shutil.disk_usage(where).free)


def round_up(n: int, cluster: int) -> int:
    return -(-n // cluster) * cluster


@dataclass
class FolderNew:
    """The messages of one folder not yet in DEST."""

    name: str
    sizes: dict[int, int]  # UID -> RFC822.SIZE
    fresh: bool = True  # the archive has no directory (file) for it yet


@dataclass
class SpaceNeed:
    """What the mail not yet archived takes on DEST (``check``'s and backup's numbers)."""

    messages: int = 0
    bytes: int = 0  # the messages' own sizes
    needed_bytes: int = 0  # on disk: rounded to clusters, with the metadata allowance
    cluster: int = FALLBACK_CLUSTER
    folders: list[FolderNew] = field(default_factory=list)


def disk_need(new: Sequence[FolderNew], fmt: str, cluster: int,
              new_archive: bool = True) -> SpaceNeed:
    """Bytes on disk for ``new`` in an archive of format ``fmt`` (maildir or mbox).

    The metadata allowance is left out when an existing archive gets no new
    message (a no-op rerun on a full stick must not be refused).
    """
    need = SpaceNeed(cluster=cluster, folders=list(new))
    total = 0
    for folder in new:
        sizes = folder.sizes.values()
        need.messages += len(sizes)
        need.bytes += sum(sizes)
        if fmt == "mbox":
            if sizes:
                # appended to an existing file, the first cluster may be partly used
                total += round_up(sum(sizes) + MBOX_PER_MESSAGE * len(sizes), cluster)
                total += cluster * (2 if folder.fresh else 1)
        else:
            total += sum(round_up(n, cluster) for n in sizes)
            if folder.fresh:
                total += MAILDIR_DIRS * cluster
    if need.messages or new_archive:
        total += round_up(METADATA_FIXED + METADATA_PER_MESSAGE * need.messages, cluster)
    need.needed_bytes = total
    return need


def upper_bound(folders: Sequence[tuple[int, int]], fmt: str, cluster: int) -> int:
    """Bytes on disk that ``folders`` ((messages, bytes) each, from STATUS) can take at
    most if every message were new: a file wastes less than one cluster.

    Why: a first backup would otherwise list every message's size before the
    backup lists them again; when even this bound fits, no listing is needed.
    """
    total = 0
    messages = 0
    for count, size in folders:
        messages += count
        if fmt == "mbox":
            total += size + MBOX_PER_MESSAGE * count + 3 * cluster
        else:
            total += size + count * (cluster - 1) + MAILDIR_DIRS * cluster
    return total + round_up(METADATA_FIXED + METADATA_PER_MESSAGE * messages, cluster)


def too_big(need: SpaceNeed, volume: Volume, dest: Path) -> str:
    """The one-line refusal of a backup that would not fit (exit 6)."""
    return _("the mail not yet archived needs {needed} on {dest} ({messages}, {cluster} "
             "clusters) but only {free} is free there: free some space or choose another "
             "DEST (--no-space-check skips this check)").format(
        needed=human_size(need.needed_bytes), dest=dest,
        messages=ngettext("{n} message", "{n} messages", need.messages).format(
            n=need.messages),
        cluster=cluster_size(volume.cluster), free=human_size(volume.free))


def cluster_size(n: int) -> str:
    """A cluster as people know it: ``4 KiB``, ``128 KiB`` (file systems count in binary)."""
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"
