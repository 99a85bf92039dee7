"""archiver against a real Courier-IMAP 5.0.13 (tests/foreign.py).

Courier's personal namespace is ``INBOX.`` with separator ``.``; it adds CRLF
to a message APPENDed without a final newline; a Maildir folder that no one
SELECTed read-write (mail delivered as files) gets a new UIDVALIDITY on every
EXAMINE.  Backups must stay byte-exact and bounded through all of it, and a
restore to another Courier account must verify.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import pytest

from archiver.archive import Archive
from tests import corpus
from tests.foreign import CourierServer
from tests.helpers import run_cli
from tests.integration.foreign_common import (
    Loaded,
    archive_by_server_name,
    assert_archive_mirrors,
    backup,
    load_corpus,
    record_count,
    target_args,
)

DELIVERED = ".Delivered"  # Maildir dir of INBOX.Delivered, filled without IMAP (UID churn)


def _delivered(i: int) -> bytes:
    return (f"From: list{i}@example.jp\r\nSubject: delivered {i}\r\n"
            f"Message-ID: <delivered-{i}@example.jp>\r\n\r\n{'配信 ' * (i + 1)}\r\n").encode()


def _fill(courier: CourierServer) -> Loaded:
    user = courier.new_user("courier")
    # Courier refuses the emoji folder's name (see the facts test): leave it out here
    loaded = load_corpus(courier, user, skip_folders=(corpus.EMOJI,))
    courier.append(user, "INBOX.Inbox", b"Subject: child Inbox\r\nMessage-ID: <ci@x>\r\n\r\n"
                   b"in INBOX.Inbox\r\n", ["\\Seen"])
    courier.append(user, "INBOX.Inbox.Sub", b"Subject: grandchild\r\n\r\nin INBOX.Inbox.Sub\r\n")
    when = _dt.datetime(2003, 4, 1, 9, 0, tzinfo=corpus.JST)
    for i, flags in enumerate(("S", "", "FS")):
        courier.deliver(user, DELIVERED, _delivered(i), flags, when + _dt.timedelta(hours=i))
    courier.deliver(user, DELIVERED, b"", "S", when)  # zero bytes: only a file can do that
    return loaded


@pytest.fixture(scope="module")
def courier_user(courier: CourierServer) -> Loaded:
    return _fill(courier)


@pytest.fixture(scope="module")
def courier_archive(courier: CourierServer, courier_user: Loaded,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("courier-archive") / "a"
    code, summary, err = backup(courier, courier_user.user, dest)
    assert code == 0, err
    assert summary["status"] == "ok", summary
    return dest


def test_courier_facts_the_suite_relies_on(courier: CourierServer) -> None:
    """Real-server facts: namespace, INBOX.Inbox, the final CRLF, UIDVALIDITY churn."""
    user = courier.new_user("facts")
    with courier.session(user) as c:
        assert c.namespace().personal == (("INBOX.", "."),)
        courier.create_folder(user, "INBOX.Inbox.Sub", client=c)
        names = {n for _f, _d, n in c.list_folders()}
        assert {"INBOX", "INBOX.Inbox", "INBOX.Inbox.Sub"} <= names
        with pytest.raises(Exception, match="LIST failed|CREATE failed"):
            courier.create_folder(user, "INBOX.emoji 📧 box", client=c)  # non-BMP name
    uid = courier.append(user, "INBOX", b"Subject: x\r\n\r\nno newline")
    assert courier.fetch_all(user)["INBOX"][0][:2] == (uid, b"Subject: x\r\n\r\nno newline\r\n")
    courier.deliver(user, DELIVERED, _delivered(0))
    seen = []
    for _ in range(3):
        seen.append(courier.uidvalidity(user, "INBOX.Delivered"))
        time.sleep(1.05)  # the new UIDVALIDITY is the clock's second
    assert len(set(seen)) == 3, seen  # a new UIDVALIDITY on every EXAMINE
    assert len({courier.uidvalidity(user, "INBOX") for _ in range(2)}) == 1


def test_courier_backup_is_byte_exact_and_reruns_add_nothing_despite_uid_churn(
        courier: CourierServer, courier_user: Loaded, courier_archive: Path) -> None:
    user, dest = courier_user.user, courier_archive
    assert courier_user.refused == {}
    assert assert_archive_mirrors(courier, user, dest) == courier_user.appended + 2 + 4
    assert run_cli(["verify", str(dest)])[0] == 0
    before = record_count(dest)
    for _ in range(2):
        code, summary, err = backup(courier, user, dest)
        assert code == 0, err
        assert (summary["new"], summary["gone"], summary["flags_updated"]) == (0, 0, 0), summary
    # INBOX.Delivered churns (its UIDVALIDITY is the clock's second): each run may cost
    # a rename per message of it -- its record under the new UID and a "gone" for the
    # old one, 2 x 4 -- and a folder record or two; never a copy of every record
    assert record_count(dest) - before <= 2 * (2 * 4 + 3) < courier_user.appended
    assert assert_archive_mirrors(courier, user, dest) == courier_user.appended + 6
    assert run_cli(["verify", str(dest)])[0] == 0


def test_courier_incremental_backup_fetches_only_new_mail(
        courier: CourierServer, tmp_path: Path) -> None:
    user = courier.new_user("incr")
    for i in range(3):
        courier.append(user, "INBOX.Sent", _delivered(10 + i), ["\\Seen"])
        courier.deliver(user, DELIVERED, _delivered(20 + i))
    dest = tmp_path / "a"
    code, summary, err = backup(courier, user, dest)
    assert code == 0 and summary["new"] == 6, (err, summary)
    courier.append(user, "INBOX.Sent", _delivered(30))
    courier.deliver(user, DELIVERED, _delivered(31), "S")
    code, summary, err = backup(courier, user, dest)
    assert code == 0, err
    assert (summary["new"], summary["gone"]) == (2, 0), summary
    assert assert_archive_mirrors(courier, user, dest) == 8


def test_courier_restore_to_a_new_account_verifies_and_a_rerun_without_journal_adds_nothing(
        courier: CourierServer, courier_archive: Path, tmp_path: Path) -> None:
    target = courier.new_user("restored")
    args = ["restore", str(courier_archive), *target_args(courier, target, tmp_path)]
    code, out, err = run_cli([*args, "--verify", "--include-deleted"])
    assert code == 0, err
    assert "missing:" not in err
    first = courier.fetch_all(target)
    for journal in (courier_archive / ".archiver").glob("restore-*"):
        journal.unlink()
    code, out, err = run_cli([*args, "--verify", "--include-deleted", "--json"])
    assert code == 0, err
    assert courier.fetch_all(target) == first  # nothing uploaded twice
    # the message without a final newline came back with Courier's CRLF
    sent_nonl = [d for msgs in first.values() for _u, d, _f, _i in msgs
                 if b"Subject: no trailing newline" in d]
    assert [d[-11:] for d in sent_nonl] == [b"last line\r\n"]


def test_courier_child_folder_named_inbox_stays_its_own_folder(
        courier: CourierServer, courier_user: Loaded, courier_archive: Path,
        tmp_path: Path) -> None:
    """``INBOX.Inbox`` is the logical folder ``INBOX/Inbox``, not INBOX; its child is
    ``INBOX/Inbox/Sub``; a restore puts them back as ``INBOX.Inbox`` and ``INBOX.Inbox.Sub``."""
    state = Archive.open_existing(courier_archive).state()
    by_server = {e.server_name: name for name, e in state.folders.items()}
    assert by_server["INBOX"] == "INBOX"
    assert by_server["INBOX.Inbox"] == "INBOX/Inbox"
    assert by_server["INBOX.Inbox.Sub"] == "INBOX/Inbox/Sub"
    have = archive_by_server_name(courier_archive)
    assert [d for d, _f in have["INBOX.Inbox"].values()] == [
        b"Subject: child Inbox\r\nMessage-ID: <ci@x>\r\n\r\nin INBOX.Inbox\r\n"]
    target = courier.new_user("inboxchild")
    code, _out, err = run_cli(["restore", str(courier_archive),
                               *target_args(courier, target, tmp_path), "--folder", "INBOX*"])
    assert code == 0, err
    got = courier.fetch_all(target)
    assert [d for _u, d, _f, _i in got["INBOX.Inbox"]] == [d for d, _f in
                                                           have["INBOX.Inbox"].values()]
    assert len(got["INBOX.Inbox.Sub"]) == 1
    assert sorted(d for _u, d, _f, _i in got["INBOX"]) == sorted(
        d for d, _f in have["INBOX"].values())


def test_courier_with_three_connections_archives_the_same(
        courier: CourierServer, courier_user: Loaded, tmp_path: Path) -> None:
    """Several connections, each churning UIDs with its own EXAMINEs: the archive still
    mirrors the server, and a rerun adds nothing."""
    user, dest = courier_user.user, tmp_path / "a"
    code, summary, err = backup(courier, user, dest, "--connections", "3")
    assert code == 0 and summary["status"] == "ok", err
    assert assert_archive_mirrors(courier, user, dest) == courier_user.appended + 6
    code, summary, err = backup(courier, user, dest, "--connections", "3")
    assert code == 0 and summary["new"] == 0, summary
