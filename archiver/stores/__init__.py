"""Stores keep message bytes on disk; :func:`open_store` picks one by archive format."""

from __future__ import annotations

import os
from pathlib import Path

from archiver.errors import DestinationError
from archiver.stores.base import Store


def open_store(root: Path, fmt: str) -> Store:
    """The store that reads and writes an archive of format ``fmt`` under ``root``."""
    if fmt == "maildir":
        from archiver.stores.maildir import MaildirStore

        # ARCHIVER_SYNC=fsync: one fsync per file instead of syncfs (docs: README).
        return MaildirStore(root, syncfs=os.environ.get("ARCHIVER_SYNC", "auto") != "fsync")
    if fmt == "mbox":
        from archiver.stores.mbox import MboxStore

        return MboxStore(root)
    raise DestinationError(f"{root} uses the unknown format '{fmt}': upgrade archiver")
