"""The pipeline is fail-stop: after the first error no later job finishes, ever.

Each test builds jobs that record what ran, makes one of them fail in
``prepare`` (the stage thread: writing files), in ``finish`` while syncing, or
in ``finish`` while recording, and checks which finishes ran and what the
main thread was told.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import pytest

from archiver.pipeline import Job, Pipeline, PipelineStopped


class Boom(Exception):
    pass


class Recorder:
    """Jobs whose prepare/finish/discard note what happened, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()

    def note(self, what: str, name: str, value: Any = None) -> None:
        with self.lock:
            self.events.append((what, name, value))

    def names(self, what: str) -> list[str]:
        return [name for kind, name, _ in self.events if kind == what]

    def job(self, name: str, fail_prepare: bool = False, fail_finish: bool = False,
            slow_finish: float = 0.0, prepare: bool = True) -> Job:
        def do_prepare() -> str:
            self.note("prepare", name)
            if fail_prepare:
                raise Boom(f"prepare {name}")
            return f"staged-{name}"

        def do_finish(result: Optional[str]) -> None:
            if slow_finish:
                time.sleep(slow_finish)
            self.note("finish", name, result)
            if fail_finish:
                raise Boom(f"finish {name}")

        def do_discard(result: str) -> None:
            self.note("discard", name, result)

        return Job(name, name, do_finish, do_prepare if prepare else None, do_discard)


def test_jobs_finish_in_submission_order_when_nothing_fails() -> None:
    rec = Recorder()
    pipe = Pipeline()
    for i in range(20):
        pipe.submit(rec.job(f"j{i}", prepare=i % 3 != 0))
    pipe.drain()
    pipe.stop()
    assert rec.names("finish") == [f"j{i}" for i in range(20)]
    assert all(value is None or value == f"staged-{name}"
               for kind, name, value in rec.events if kind == "finish")


def test_failed_prepare_never_finishes_with_a_missing_result() -> None:
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("a"))
    pipe.submit(rec.job("b", fail_prepare=True))
    with pytest.raises(Boom, match="prepare b"):
        pipe.drain()
    pipe.stop()
    assert rec.names("finish") == ["a"]  # the earlier job still completes
    assert all(value is not None for kind, _, value in rec.events if kind == "finish")


def test_failed_prepare_stops_every_later_job_and_the_folder_end() -> None:
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("batch1", slow_finish=0.2))
    pipe.submit(rec.job("batch2", fail_prepare=True))
    with pytest.raises(Boom):  # the failure shows at a later submit or at the drain
        pipe.submit(rec.job("batch3"))
        time.sleep(0.3)
        pipe.submit(rec.job("finish-folder", prepare=False))
        pipe.drain()
    pipe.stop()
    assert rec.names("finish") == ["batch1"]
    assert "finish-folder" not in rec.names("finish")
    assert "batch3" not in rec.names("prepare")


def test_failed_sync_stops_the_later_batches_and_the_folder_end() -> None:
    """A batch whose fsync fails: the folder must not be recorded as complete."""
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("batch1", fail_finish=True, slow_finish=0.1))
    pipe.submit(rec.job("batch2"))
    pipe.submit(rec.job("finish-folder", prepare=False))
    with pytest.raises(Boom, match="finish batch1"):
        pipe.drain()
    pipe.stop()
    assert rec.names("finish") == ["batch1"]


def test_prepared_batches_after_a_failure_are_discarded_not_leaked() -> None:
    """The stage thread ran ahead of the failing sync: its open files must be released."""
    rec = Recorder()
    pipe = Pipeline(depth=4)
    pipe.submit(rec.job("batch1", fail_finish=True, slow_finish=0.3))
    pipe.submit(rec.job("batch2"))
    pipe.submit(rec.job("batch3"))
    time.sleep(0.1)  # batch2 and batch3 are prepared while batch1 is still syncing
    with pytest.raises(Boom):
        pipe.drain()
    pipe.stop()
    assert set(rec.names("prepare")) >= {"batch2", "batch3"}
    assert sorted(rec.names("discard")) == ["batch2", "batch3"]
    assert rec.names("finish") == ["batch1"]


def test_failed_record_in_finish_stops_later_jobs() -> None:
    """finish = sync then record; a failure while recording also stops everything after."""
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("changes", prepare=False, fail_finish=True))
    pipe.submit(rec.job("batch"))
    pipe.submit(rec.job("finish-folder", prepare=False))
    with pytest.raises(Boom):
        pipe.drain()
    pipe.stop()
    assert rec.names("finish") == ["changes"]
    assert rec.names("discard") in ([], ["batch"])  # prepared or not, never finished


def test_the_error_is_sticky_submit_after_failure_keeps_raising() -> None:
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("a", fail_prepare=True))
    with pytest.raises(Boom):
        pipe.drain()
    with pytest.raises(Boom):
        pipe.submit(rec.job("b"))
    with pytest.raises(Boom):
        pipe.drain()
    pipe.stop()  # already delivered: stop does not raise it a further time
    assert rec.names("finish") == []


def test_stop_reraises_an_error_nobody_has_seen() -> None:
    rec = Recorder()
    pipe = Pipeline()
    pipe.submit(rec.job("a", fail_finish=True))
    with pytest.raises(Boom):
        pipe.stop()
    with pytest.raises(PipelineStopped):
        pipe.submit(rec.job("b"))


def test_earliest_failure_wins_when_stage_and_sync_both_fail() -> None:
    rec = Recorder()
    pipe = Pipeline(depth=4)
    pipe.submit(rec.job("batch1", fail_finish=True, slow_finish=0.2))
    pipe.submit(rec.job("batch2", fail_prepare=True))
    with pytest.raises(Boom, match="finish batch1"):
        pipe.drain()
    pipe.stop()
