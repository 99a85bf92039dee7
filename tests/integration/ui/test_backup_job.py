"""The web page's backup without a browser: archiver.ui.backup_job against a real Dovecot.

The page must run the CLI's backup (same archive, same words), report progress
that ends exactly at its total, stop cleanly on Cancel so that a rerun goes on
without duplicates, and never let the password out of memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import ArchiverError
from archiver.ui.backup_job import (
    BackupJob,
    Backups,
    ProgressFeed,
    Request,
    SignIn,
    default_dest,
    sse,
)
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, index_records, run_cli


def _sign_in(dovecot: DovecotServer, user: MailUser, cafile: Path | None = None) -> SignIn:
    return SignIn(f"imaps://127.0.0.1:{dovecot.imaps_port}", user.name,
                  cafile or dovecot.cafile)


class Recording(ProgressFeed):
    """A feed that keeps every folder it was told about and every snapshot's SSE text."""

    def __init__(self) -> None:
        super().__init__()
        self.folders: list[str] = []

    def folder(self, name: str, messages: int | None = None, nbytes: int | None = None) -> None:
        super().folder(name, messages, nbytes)
        self.folders.append(name)


def _watch(job: BackupJob, seen: list[str]) -> dict[str, Any]:
    """Follow the job as the page's event stream does; returns the final snapshot."""
    version = -1
    while True:
        snap = job.feed.wait(version, 5.0)
        seen.append(sse(snap))
        version = snap["version"]
        if snap["final"]:
            return snap


def _archived(dest: Path) -> dict[tuple[str, int], bytes]:
    return {(r["folder"], r["uid"]): (dest / r["path"]).read_bytes()
            for r in index_records(dest) if r["type"] == "msg"}


def _served(dovecot: DovecotServer, user: MailUser) -> dict[tuple[str, int], bytes]:
    return {(folder, uid): data for folder, msgs in dovecot.fetch_all(user).items()
            for uid, data, _flags, _date in msgs}


def test_guided_backup_reports_progress_to_the_exact_total_and_archives_the_server(
        dovecot: DovecotServer, loaded_user: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = loaded_user.user
    hub = Backups(timeout=20, home=tmp_path / "MailArchive")
    pending = hub.sign_in(_sign_in(dovecot, user), user.password)
    view = pending.overview
    served = _served(dovecot, user)
    # step 2 shows the folders as `archiver folders` does, with counts and sizes
    assert view.dest == tmp_path / "MailArchive" / f"{user.name}@127.0.0.1"
    listed = {f.name: f for f in view.folders}
    assert listed[corpus.JA_INBOX].messages == sum(1 for f, _ in served if f == corpus.JA_INBOX)
    assert view.total_messages == len(served)
    assert view.total_bytes == sum(len(b) for b in served.values())
    assert view.fits and view.needed > view.total_bytes and view.free > 0
    assert not view.dest.exists(), "looking must not create DEST"

    job = hub.start(view.dest, "maildir")
    assert job is not None
    assert hub.pending() is None, "the sign-in (and its password) is forgotten once started"
    events: list[str] = []
    final = _watch(job, events)
    assert final["phase"] == "done", final["message"]
    assert final["bytes_total"] == sum(len(b) for b in served.values())
    assert final["bytes_done"] == final["bytes_total"] and final["percent"] == 100
    assert final["messages_done"] == final["messages_total"] == len(served)
    from archiver.cli.summaries import backup_line

    assert final["summary"] == backup_line(job.summary)
    assert _archived(view.dest) == served
    # the page says the same as the CLI: a rerun from the command line finds nothing new
    code, _out, err = backup(dovecot, user, view.dest)
    assert code == 0 and "0 new messages" in err, err

    # the password: in no event, no log line, nowhere in the job once it ended
    assert not any(user.password in e for e in events)
    assert user.password not in caplog.text
    assert job._password is None


def test_cancel_stops_cleanly_and_a_rerun_goes_on_without_duplicates(
        dovecot: DovecotServer, loaded_user: Any, tmp_path: Path) -> None:
    user = loaded_user.user
    served = _served(dovecot, user)
    dest = tmp_path / "a"

    class CancelAfterTwoBatches(Recording):
        job: BackupJob

        def advance(self, messages: int, nbytes: int) -> None:
            super().advance(messages, nbytes)
            if self.done_messages >= 4:
                self.job.cancel()

    def small_batches(options: Any) -> None:
        options.batch_count = 2
        options.connections = 1

    job = BackupJob(Request(_sign_in(dovecot, user), dest, None), user.password, 20,
                    tune=small_batches)
    feed = job.feed = CancelAfterTwoBatches()
    feed.job = job
    final = _watch(job.start(), [])
    assert final["phase"] == "cancelled", final
    assert "Start the same backup again" in final["message"]
    first = _archived(dest)
    assert 4 <= len(first) < len(served), len(first)
    assert all(served[k] == v for k, v in first.items()), "what was saved is exact"
    assert job.summary is not None and job.summary.new == len(first)
    assert f"{len(first)} new messages" in final["summary"]

    again = BackupJob(Request(_sign_in(dovecot, user), dest, None), user.password, 20)
    final = _watch(again.start(), [])
    assert final["phase"] == "done", final["message"]
    assert again.summary is not None and again.summary.new == len(served) - len(first)
    records = [(r["folder"], r["uid"]) for r in index_records(dest) if r["type"] == "msg"]
    assert not [k for k, n in Counter(records).items() if n > 1], "duplicate records"
    assert _archived(dest) == served
    assert final["bytes_done"] == final["bytes_total"]


def test_the_page_shows_the_folder_being_copied_by_its_decoded_japanese_name(
        dovecot: DovecotServer, loaded_user: Any, tmp_path: Path) -> None:
    user = loaded_user.user
    job = BackupJob(Request(_sign_in(dovecot, user), tmp_path / "a", "mbox"), user.password,
                    20)
    job.feed = feed = Recording()
    assert _watch(job.start(), [])["phase"] == "done"
    assert corpus.JA_INBOX in feed.folders and corpus.JA_LAB in feed.folders
    assert (tmp_path / "a" / ".archiver").is_dir()


def _cli_error(args: list[str]) -> str:
    code, _out, err = run_cli(args)
    assert code != 0
    line = next(x for x in err.splitlines() if x.startswith("archiver: error: "))
    return line.removeprefix("archiver: error: ")


@pytest.mark.parametrize("trouble", ["wrong password", "wrong CA", "another account",
                                     "server not found"])
def test_errors_are_the_cli_one_line_messages(dovecot: DovecotServer, mail_user: MailUser,
                                             tmp_path: Path, trouble: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dest = tmp_path / "dest"
    password = mail_user.password
    cafile = dovecot.cafile
    if trouble == "wrong password":
        password = "not-" + password
    elif trouble == "wrong CA":
        cafile = dovecot.wrong_cafile
    elif trouble == "another account":
        other = dovecot.new_user("other")
        assert backup(dovecot, other, dest)[0] == 0
    host = "no-such-host.invalid" if trouble == "server not found" else "127.0.0.1"
    url = f"imaps://{host}:{dovecot.imaps_port}"
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    expected = _cli_error(["backup", url.replace("//", f"//{mail_user.name}@"), str(dest),
                           "--cafile", str(cafile), "--password-file", str(pw)])

    sign_in = SignIn(url, mail_user.name, cafile)
    job = BackupJob(Request(sign_in, dest, None), password, 20)
    events: list[str] = []
    final = _watch(job.start(), events)
    assert final["phase"] == "failed"
    assert final["message"] == expected
    assert "Traceback" not in final["message"]
    if trouble != "another account":  # step 1 already says it
        with pytest.raises(ArchiverError) as caught:
            Backups(timeout=20, home=tmp_path).sign_in(sign_in, password, dest)
        assert caught.value.message == expected
    assert not any(password in e for e in events) and password not in caplog.text


def test_default_destination_is_in_the_documents_folder(tmp_path: Path) -> None:
    ep = SignIn("ecc-new", "s1234").endpoint()
    assert default_dest(ep, tmp_path) == (tmp_path
                                          / "s1234@mail.ecc.u-tokyo.ac.jp@imap.ecc.u-tokyo.ac.jp")
    assert default_dest(SignIn("imaps://a%2Fb@h").endpoint(), tmp_path).name == "a_b@h"


def test_a_bug_is_one_line_and_a_report_file_never_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.crash
    import archiver.ui.backup_job as backup_job

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(archiver.crash, "crash_dir", lambda: tmp_path / "crash")
    monkeypatch.setattr(backup_job, "connect", broken)
    job = BackupJob(Request(SignIn("imaps://127.0.0.1:1", "u"), tmp_path / "d"), "secret-pw")
    final = _watch(job.start(), [])
    assert final["phase"] == "failed"
    assert final["message"].startswith("internal error: ValueError: a bug; the details are in ")
    assert "Traceback" not in final["message"] and "\n" not in final["message"]
    (report,) = (tmp_path / "crash").iterdir()
    assert "Traceback" in report.read_text() and "secret-pw" not in report.read_text()
