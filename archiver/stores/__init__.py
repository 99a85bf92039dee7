"""Stores keep message bytes on disk; :func:`open_store` picks one by archive format."""

from __future__ import annotations

import logging
from pathlib import Path

from archiver.durable import choose_strategy
from archiver.errors import DestinationError
from archiver.i18n import _
from archiver.stores.base import Store

log = logging.getLogger("archiver.stores")


def open_store(root: Path, fmt: str) -> Store:
    """The store that reads and writes an archive of format ``fmt`` under ``root``.

    A pack (``archiver pack``) gets a store that reads from it and refuses writing.
    """
    from archiver.pack.reader import is_pack

    if is_pack(root):
        from archiver.pack.reader import open_pack
        from archiver.pack.view import PackStore

        return PackStore(open_pack(root))
    if fmt not in ("maildir", "mbox"):
        raise DestinationError(_("{root} uses the unknown format '{fmt}': upgrade archiver").format(
                                 root=root, fmt=fmt))
    choice = choose_strategy(root)
    log.info("durability for %s: %s", root, choice.reason)
    if fmt == "maildir":
        from archiver.stores.maildir import MaildirStore

        return MaildirStore(root, choice.strategy)
    from archiver.stores.mbox import MboxStore

    return MboxStore(root, choice.strategy)
