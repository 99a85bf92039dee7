"""Fetch chosen messages of some folders again, through the backup's own path.

For ``archiver verify --repair`` (:mod:`archiver.repair`): the index says a
damaged message is archived, so a backup would never fetch it again.
:class:`Refetcher` is the backup engine with another folder loop: each
folder is opened (EXAMINE) and listed, its :data:`Pick` chooses from the
listing, and the chosen messages are fetched, stored and recorded exactly as
a backup does (batches, streaming of large messages, the fail-stop pipeline,
durable before recorded).  A folder the server does not list goes to
``unlisted`` (its Pick is never called).  After a lost connection the folder
is listed and picked again.  Folder counters are not changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from archiver.archive import Archive
from archiver.connections import Connection
from archiver.engine import Backup, BackupOptions, Source
from archiver.pipeline import Job
from archiver.plan import FolderPlan
from archiver.progress import Progress
from archiver.sources.base import Folder, FolderStatus, MessageMeta
from archiver.stores.base import Store


@dataclass
class Refetch:
    """What to fetch again from one folder, and records to write before the bodies."""

    messages: list[MessageMeta]  # entries of the folder's listing
    records: list[dict[str, Any]] = field(default_factory=list)


# Chooses from a listed folder: (its path in DEST, its EXAMINE status, its listing) -> Refetch.
Pick = Callable[[str, FolderStatus, list[MessageMeta]], Refetch]


class Refetcher(Backup):
    """The backup engine, fetching only what each folder's Pick chooses."""

    def __init__(self, source: Source, archive: Archive, store: Store,
                 picks: Mapping[str, Pick], options: Optional[BackupOptions] = None,
                 progress: Optional[Progress] = None) -> None:
        super().__init__(source, archive, store, options, progress)
        self.picks = dict(picks)
        self.unlisted: list[str] = []  # folders asked for that the server does not list

    def _run_folders(self) -> None:
        conn = Connection(self.source)
        folders = {f.name: f for f in self._with_reconnect(conn, self.source.folders)}
        for name, pick in self.picks.items():
            folder = folders.get(name)
            if folder is None or not folder.selectable:
                self.unlisted.append(name)
                continue
            if not self._folder_pass(conn, folder, functools.partial(
                    self._refetch_folder, conn, folder, pick)):
                return

    def _refetch_folder(self, conn: Connection, folder: Folder, pick: Pick) -> None:
        path = self._ensure_folder(folder)
        opened = conn.source.open_folder(folder)
        chosen = pick(path, opened, conn.source.list_messages(opened.messages))
        self.store.forget(path)  # the Pick may have moved files aside
        if chosen.records:
            self._pipeline.submit(Job(folder.name, path,
                                      lambda _: self._record(folder.name, chosen.records)))
        plan = FolderPlan(opened.uidvalidity, list(chosen.messages), [], [], 0)
        self._plan_total(folder.name, len(plan.to_fetch), plan.fetch_bytes())
        self.progress.folder(folder.name, len(plan.to_fetch), plan.fetch_bytes())
        self._fetch_all(conn, folder, path, plan)

        def done(_: Any) -> None:
            self._record(folder.name, [])  # a pending folder record, if nothing else went
            self.store.forget(path)

        self._pipeline.submit(Job(folder.name, path, done))
