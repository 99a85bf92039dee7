"""Migrate: back up the old server into a local archive and restore it to the new one, overlapped.

The backup engine runs in the calling thread as usual.  Whenever a folder's
backup is durable (the engine's ``on_folder_done`` hook, called from its sync
thread, or at once for an unchanged folder) its name goes on a queue; a
restore thread with its own target connection uploads that folder while the
engine fetches the next one.  So the wall time is close to the slower of the
two directions, not their sum.  With ``--connections`` (auto: 3 when the
target's round trip is 5 ms or more) several restore threads, each with its
own target connection, take folders from that queue; one journal records
what lands (:class:`~archiver.restore.journal.RestoreJournal` writes one
frame at a time), and a target folder is restored into by one thread at a
time.  After the backup, every selected folder of
the archive is passed to the restore once more (folders already done in this
run are skipped; folders the backup could not finish, or archived in an
earlier run, are restored now), then the target is verified.

Rerunning is cheap: the backup fetches only new mail, the restore's journal
knows what landed, and folders without anything new need no target listing.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from archiver.archive import Archive
from archiver.connections import AUTO_CONNECTIONS, MAX_CONNECTIONS, auto_count
from archiver.engine import Backup, BackupOptions, Source, refresh_snapshot
from archiver.jobs import Summary
from archiver.progress import NullProgress, Progress
from archiver.restore.check import TargetReport, verify_target
from archiver.restore.journal import RestoreJournal
from archiver.restore.target import ImapTarget
from archiver.restore.upload import Restore, RestoreOptions, RestoreSummary
from archiver.stores import open_store
from archiver.stores.base import Store


@dataclass
class MigrateResult:
    backup: Summary
    restore: RestoreSummary
    verify: Optional[TargetReport]
    seconds: float

    @property
    def status(self) -> str:
        if self.backup.status != "ok" or self.restore.status != "ok":
            return "partial"
        return "ok" if self.verify is None or self.verify.ok else "missing"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "backup": self.backup.as_dict(),
                "restore": self.restore.as_dict(),
                "verify": self.verify.as_dict() if self.verify is not None else None,
                "seconds": round(self.seconds, 3)}


class _NotesOnly(NullProgress):
    """The restore's progress while the backup owns the bar: notes pass, counts do not."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def note(self, text: str) -> None:
        self._progress.note(text)


def run_migrate(source: Source, archive: Archive, store: Store, target: ImapTarget,
                journal: RestoreJournal, backup_options: BackupOptions,
                restore_options: RestoreOptions, progress: Progress,
                verify: bool = True) -> MigrateResult:
    """Back up ``source`` into ``archive`` and restore it into ``target`` at the same time."""
    start = time.monotonic()
    job = Restore(archive, open_store(archive.dest, archive.format), target, journal,
                  restore_options, _NotesOnly(progress))
    folders: queue.Queue[Optional[str]] = queue.Queue()
    failures: list[BaseException] = []
    stop = threading.Event()
    job.mapper()  # the target's folder list, once, before the threads share it

    def restore_loop(number: int) -> None:
        conn = job.open_connection(number)
        if conn is None:
            return  # refused by the target: the other threads take the folders
        try:
            while True:
                name = folders.get()
                if name is None:
                    folders.put(None)  # the end, for the other threads too
                    return
                if failures or stop.is_set():
                    continue
                try:
                    job.restore_folder(name, conn)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                    failures.append(exc)
        finally:
            if number > 1:
                conn.source.close()

    count = min(restore_options.connections or auto_count(target, AUTO_CONNECTIONS),
                MAX_CONNECTIONS)
    workers = [threading.Thread(target=restore_loop, args=(n,), name=f"restore-{n}",
                                daemon=True) for n in range(1, count + 1)]
    for worker in workers:
        worker.start()
    engine = Backup(source, archive, store, backup_options, progress)
    engine.on_folder_done = folders.put
    try:
        backed = engine.run()
    except BaseException:
        stop.set()
        raise
    finally:
        folders.put(None)
        for worker in workers:
            worker.join()
        source.close()
        store.close()
    if failures:
        raise failures[0]
    refresh_snapshot(archive, backed)  # as a backup does: a lost index can be rebuilt
    # whatever the overlap did not cover (over several connections, as a restore)
    job.restore_folders([entry.name for entry in job.selected_folders()])
    job.finish()
    job.summary.seconds = time.monotonic() - start
    report = verify_target(job, content=False) if verify else None
    return MigrateResult(backed, job.summary, report, time.monotonic() - start)
