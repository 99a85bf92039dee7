"""Two background stages between fetching and the index, so disk and network overlap.

The main thread fetches and submits jobs.  The *stage* thread runs each job's
``prepare`` (write a batch's files into the page cache, hash, decode
headers); the *sync* thread runs its ``finish`` (fsync, rename into place,
fsync the directory, append the index frame).  Writing batch N+1 thus
overlaps making batch N durable.  Both stages handle jobs strictly in
submission order, so index frames keep the order of the work, and nothing is
recorded before it is durable.

Fail-stop: the first error (in ``prepare`` or ``finish``) stops the
pipeline for good.  Jobs submitted *before* the failing one still finish
(they are earlier in the order, and their bytes are already written); no job
from the failing one on runs its ``finish`` -- a job whose ``prepare``
failed is never finished with a missing result, and a folder's closing job
never runs after one of its batches failed, so nothing is recorded as
complete that is not.  A job that was prepared but will not be finished gets
its ``discard`` (closing descriptors).  The error is raised in the main
thread by the next :meth:`Pipeline.submit`, :meth:`Pipeline.drain` or
:meth:`Pipeline.stop`, and again by every later submit or drain: the
pipeline never accepts work after a failure.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Job:
    folder: str
    path: str
    finish: Callable[[Any], None]
    prepare: Optional[Callable[[], Any]] = None
    discard: Optional[Callable[[Any], None]] = None  # a prepared result that will not finish
    seq: int = field(default=0, compare=False)
    passed: Optional[threading.Event] = field(default=None, compare=False)  # see flush()


@dataclass
class _Prepared:
    job: Job
    result: Any = None
    ok: bool = True  # False: prepare raised (or was skipped after a failure)


class PipelineStopped(RuntimeError):
    """submit() after stop(): a programming error, not a user's."""


class Pipeline:
    """stage thread (prepare) -> sync thread (finish), in order, with bounded queues."""

    def __init__(self, depth: int = 2) -> None:
        self._staging: queue.Queue[Optional[Job]] = queue.Queue(maxsize=depth)
        self._syncing: queue.Queue[Optional[_Prepared]] = queue.Queue(maxsize=depth)
        self._lock = threading.Lock()
        self._submitting = threading.Lock()
        self._error: Optional[BaseException] = None
        self._failed_at: Optional[int] = None  # seq of the earliest job that failed
        self._delivered = False  # the error was raised to the caller at least once
        self._seq = itertools.count(1)
        self._pending = 0
        self._idle = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._stage_loop, name="stage", daemon=True),
            threading.Thread(target=self._sync_loop, name="sync", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------ worker threads

    def _fail(self, job: Job, exc: BaseException) -> None:
        with self._lock:
            if self._failed_at is None or job.seq < self._failed_at:
                self._failed_at = job.seq
                self._error = exc

    def _stopped_before(self, job: Job) -> bool:
        """Must ``job`` be skipped because it, or a job before it, failed?"""
        with self._lock:
            return self._failed_at is not None and job.seq >= self._failed_at

    def _any_failure(self) -> bool:
        with self._lock:
            return self._failed_at is not None

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
            item = _Prepared(job)
            # Every failure so far is at or before this job (the sync thread works
            # behind this one), so once anything failed nothing more is prepared.
            if self._any_failure():
                item.ok = False
            elif job.prepare is not None:
                try:
                    item.result = job.prepare()
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    item.ok = False
                    self._fail(job, exc)
            self._syncing.put(item)

    def _sync_loop(self) -> None:
        while True:
            item = self._syncing.get()
            if item is None:
                return
            job = item.job
            try:
                if item.ok and not self._stopped_before(job):
                    job.finish(item.result)
                elif item.ok and job.prepare is not None and job.discard is not None:
                    job.discard(item.result)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._fail(job, exc)
            finally:
                self._done()
                if job.passed is not None:
                    job.passed.set()

    # ------------------------------------------------------------ main thread

    def _check(self) -> None:
        with self._lock:
            err = self._error
            if err is not None:
                self._delivered = True
        if err is not None:
            raise err

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises the pipeline's error instead once anything failed."""
        if self._stopped:
            raise PipelineStopped("submit() after stop()")
        self._check()
        # Several connections' threads submit: a job's number and its place in the
        # queue must agree, or "every job before the failing one" would be wrong.
        with self._submitting:
            job.seq = next(self._seq)
            with self._idle:
                self._pending += 1
            self._staging.put(job)

    def flush(self) -> None:
        """Wait until every job submitted before this call has finished (or been
        skipped), without waiting for jobs other threads submit meanwhile as
        :meth:`drain` would; re-raise the pipeline's error."""
        passed = threading.Event()
        self.submit(Job("", "", finish=lambda _: None, passed=passed))
        passed.wait()
        self._check()

    def drain(self) -> None:
        """Wait until every submitted job finished (or was skipped); re-raise the error."""
        with self._idle:
            while self._pending:
                self._idle.wait()
        self._check()

    def stop(self) -> None:
        """Let queued jobs end, stop the threads; raise an error nobody has seen yet."""
        if not self._stopped:
            self._stopped = True
            self._staging.put(None)
            for t in self._threads:
                t.join()
        with self._lock:
            err = None if self._delivered else self._error
            self._delivered = True
        if err is not None:
            raise err
