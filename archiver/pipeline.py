"""Two background stages between fetching and the index, so disk and network overlap.

The main thread fetches and submits jobs.  The *stage* thread runs each job's
``prepare`` (write a batch's files into the page cache, hash, decode
headers); the *sync* thread runs its ``finish`` (fsync, rename into place,
fsync the directory, append the index frame).  Writing batch N+1 thus
overlaps making batch N durable.  Both stages handle jobs strictly in
submission order, so index frames keep the order of the work, and nothing is
recorded before it is durable.  After an error every later job is skipped and
the error is raised in the main thread at the next submit or drain.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class Job:
    folder: str
    path: str
    finish: Callable[[Any], None]
    prepare: Optional[Callable[[], Any]] = None


class Pipeline:
    """stage thread (prepare) -> sync thread (finish), in order, with bounded queues."""

    def __init__(self, depth: int = 2) -> None:
        self._staging: queue.Queue[Optional[Job]] = queue.Queue(maxsize=depth)
        self._syncing: queue.Queue[Optional[tuple[Job, Any]]] = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._pending = 0
        self._idle = threading.Condition()
        self._threads = [
            threading.Thread(target=self._stage_loop, name="stage", daemon=True),
            threading.Thread(target=self._sync_loop, name="sync", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _stage_loop(self) -> None:
        while True:
            job = self._staging.get()
            if job is None:
                self._syncing.put(None)
                return
            result: Any = None
            if self._error is None and job.prepare is not None:
                try:
                    result = job.prepare()
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._fail(exc)
            self._syncing.put((job, result))

    def _sync_loop(self) -> None:
        while True:
            item = self._syncing.get()
            if item is None:
                return
            job, result = item
            try:
                if self._error is None:
                    job.finish(result)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._fail(exc)
            finally:
                self._done()

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, job: Job) -> None:
        self._check()
        with self._idle:
            self._pending += 1
        self._staging.put(job)

    def drain(self) -> None:
        """Wait until every submitted job is durable (or failed); re-raise its error."""
        with self._idle:
            while self._pending:
                self._idle.wait()
        self._check()

    def stop(self) -> None:
        self._staging.put(None)
        for t in self._threads:
            t.join()
