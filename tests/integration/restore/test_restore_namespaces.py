"""Restore never creates other users' or shared folders (issue 11).

Archives made with ``--all-namespaces`` mark them in the index; older
archives kept them as personal folders (``shared/dora/Sent``), which the
target's own NAMESPACE tells apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from archiver.account import Endpoint, TLSOptions
from archiver.archive import Archive
from archiver.restore.journal import RestoreJournal
from archiver.restore.mapping import FolderMapper
from archiver.restore.target import ImapTarget, TargetFolder
from archiver.restore.upload import Restore, RestoreOptions
from archiver.stores import open_store
from tests.dovecot import DovecotServer
from tests.fakeimap import FakeImap
from tests.integration.restore.test_restore import restore
from tests.integration.restore.test_restore_rewrites import CourierLike
from tests.integration.test_namespaces import COURIER_BOX, CYRUS_BOX, Courier, Cyrus, _msg
from tests.integration.test_namespaces import backup as fake_backup

NOTE = ("3 folders from other users' or shared namespaces were not restored: they are not "
        "yours to create")


def test_folders_marked_as_other_namespaces_are_not_restored(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Cyrus(CYRUS_BOX) as server:
        code, _, err = fake_backup(server, dest, "--all-namespaces")
    assert code == 0, err
    user = dovecot.new_user()
    code, out, err = restore(dest, dovecot, user, "--json", "--verify")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["notes"] == [NOTE]
    assert summary["problems"] == [] and summary["verify"]["ok"], summary
    served = {name: sorted(m[1] for m in msgs)
              for name, msgs in dovecot.fetch_all(user).items()}
    assert served == {"INBOX": [_msg("mine-1")], "Sent": [_msg("mine-sent")]}


class SharedTarget(CourierLike):
    """A restore target whose NAMESPACE has other users' folders under ``shared/``."""

    namespace = b'(("" "/")) (("shared/" "/")) (("public/" "/"))'

    def reply_capability(self, tag: bytes, rest: bytes) -> bytes:
        return (b"* CAPABILITY IMAP4rev1 UIDPLUS NAMESPACE AUTH=PLAIN\r\n"
                + tag + b" OK done\r\n")

    def handlers(self) -> dict[bytes, Callable[[bytes, bytes], bytes]]:
        return {**super().handlers(), b"NAMESPACE": self.reply_namespace}


def test_an_old_archive_of_shared_folders_is_not_restored_into_the_targets_shared_namespace(
        tmp_path: Path) -> None:
    class OldServer(FakeImap):  # no NAMESPACE: everything was archived as personal
        pass

    dest = tmp_path / "dest"
    box = {b"INBOX": {1: _msg("mine")}, b"shared/dora/Sent": {1: _msg("dora")},
           b"shared/dora/Drafts": {1: _msg("dora-draft")}, b"public/news": {1: _msg("news")},
           b"Work": {1: _msg("work")}}
    with OldServer(box) as old:
        code, summary, err = fake_backup(old, dest)
    assert code == 0 and summary["notes"] == [], err
    with SharedTarget() as target:
        ep = Endpoint("imap", "127.0.0.1", target.port, "u", TLSOptions(plaintext=True))
        sink = ImapTarget(ep, "pw", timeout=5)
        sink.connect()
        archive = Archive.open_existing(dest)
        journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user).open(True)
        try:
            summary = Restore(archive, open_store(dest, archive.format), sink, journal,
                              RestoreOptions()).run()
        finally:
            journal.close()
            sink.close()
            archive.close()
        created = [c for c in target.commands if b" CREATE " in c.upper()]
        appended = sorted(target.mailbox)
    assert summary.notes == [NOTE]
    assert summary.problems == [] and summary.refused == [] and summary.status == "ok"
    assert not any(b"shared" in c or b"public" in c for c in created), created
    assert appended == [b"INBOX", b"Work"]
    assert target.mailbox[b"Work"] == {1: _msg("work")}


def test_courier_inbox_child_named_inbox_round_trips(dovecot: DovecotServer,
                                                     tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with Courier(COURIER_BOX) as server:
        code, _, err = fake_backup(server, dest)
    assert code == 0, err
    user = dovecot.new_user()
    code, out, err = restore(dest, dovecot, user, "--json", "--verify")
    assert code == 0, err
    served = {name: sorted(m[1] for m in msgs)
              for name, msgs in dovecot.fetch_all(user).items()}
    assert served == {"INBOX": [_msg("inbox-1"), _msg("inbox-2")],
                      "INBOX/Inbox": [_msg("child-1")],
                      "INBOX/Inbox/Sub": [_msg("sub-1"), _msg("sub-5")],
                      "Sent": [_msg("sent-3")]}


def test_a_courier_target_gets_inbox_child_back_under_its_own_name() -> None:
    listing = [TargetFolder(b"INBOX", "INBOX", ".", ()),
               TargetFolder(b"INBOX.Inbox", "INBOX.Inbox", ".", ("\\Sent",))]
    mapper = FolderMapper(RestoreOptions(), listing, "INBOX.", ".", {})
    assert mapper.server_name(mapper.target("INBOX/Inbox")) == "INBOX.Inbox"
    assert mapper.server_name(mapper.target("INBOX/Inbox/Sub")) == "INBOX.Inbox.Sub"
    assert mapper.server_name(mapper.target("INBOX")) == "INBOX"
    assert mapper.server_name(mapper.target("Sent")) == "INBOX.Sent"
    # a target's special folder named INBOX.Inbox is that folder, not the INBOX
    assert mapper.roles["\\Sent"] == ("INBOX", "Inbox")
    assert mapper.server_name(mapper.roles["\\Sent"]) == "INBOX.Inbox"
