"""mbox archives that mail programs show whole, and files programs leave beside mail.

Thunderbird shows a ``X.sbd`` directory only under a file ``X``: a folder that
is only a parent (``\\Noselect``, or implied by a child) gets an empty mbox
file.  ``verify`` and ``reindex`` pass over what mail programs and desktops
write beside the mail (``.msf``, locks, ``dovecot*``, ``.DS_Store`` ...).
"""

from __future__ import annotations

import mailbox
from pathlib import Path

from archiver.archive import Archive
from archiver.sidefiles import is_side_file
from archiver.stores.mbox import MboxStore, parent_files
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli


def _parent_with_child(dovecot: DovecotServer, user: MailUser) -> None:
    with dovecot.session(user) as c:
        c.create_folder("Archive/2003")  # Dovecot lists "Archive" as \Noselect
        c.append("Archive/2003", b"Subject: a\r\n\r\nFrom the past\r\n")
        c.append("Archive/2003", b"Subject: b\r\n\r\nbody\r\n")
    assert "Archive" not in dovecot.list_folders(user, selectable_only=True)


def _folders(dest: Path) -> dict[str, tuple[int, bool]]:
    """Index folders: name -> (messages, \\Noselect)."""
    state = Archive.open_existing(dest).state()
    return {name: (len(f.messages), f.parent_only) for name, f in state.folders.items()}


def test_parent_files_name_every_ancestor_and_a_noselect_folder_itself() -> None:
    assert parent_files("INBOX") == []
    assert parent_files("A.sbd/B.sbd/C") == ["A", "A.sbd/B"]
    assert parent_files("Archive", mailbox=False) == ["Archive"]


def test_noselect_parent_gets_an_empty_mbox_file_and_verify_stays_clean(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _parent_with_child(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    parent = dest / "Archive"
    assert parent.is_file() and parent.stat().st_size == 0
    assert len(mailbox.mbox(str(dest / "Archive.sbd" / "2003"), create=False)) == 2
    assert _folders(dest)["Archive"] == (0, True)
    assert run_cli(["verify", str(dest)])[0] == 0
    # rebuilt from the files and the snapshot, the parent stays a \Noselect folder
    assert run_cli(["reindex", str(dest), "--force"])[0] == 0
    folders = _folders(dest)
    assert folders["Archive"] == (0, True) and folders["Archive/2003"] == (2, False)
    assert run_cli(["verify", str(dest)])[0] == 0


def test_rerun_writes_the_parent_file_an_older_archive_lacks(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _parent_with_child(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    (dest / "Archive").unlink()  # as archiver wrote it before parents had files
    assert backup(dovecot, mail_user, dest)[0] == 0
    assert (dest / "Archive").is_file() and (dest / "Archive").stat().st_size == 0


def test_implied_parent_file_is_made_without_truncating_a_folder_with_mail(
        tmp_path: Path) -> None:
    store = MboxStore(tmp_path)
    (tmp_path / "A").write_bytes(b"From x Thu Jan  1 00:00:00 1970\nmail\n\n")
    store.prepare_folder("A.sbd/B.sbd/C")
    assert (tmp_path / "A").read_bytes().endswith(b"mail\n\n")  # not truncated
    assert (tmp_path / "A.sbd" / "B").stat().st_size == 0
    assert (tmp_path / "A.sbd" / "B.sbd" / "C").is_file()
    store.prepare_parents([("X.sbd/Y", True)])
    assert (tmp_path / "X").stat().st_size == 0


def test_reindex_without_snapshot_does_not_make_a_parent_file_a_folder(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _parent_with_child(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    for snap in (dest / ".archiver").glob("snapshot*"):
        snap.unlink()
    assert run_cli(["reindex", str(dest), "--force"])[0] == 0
    folders = _folders(dest)
    assert "Archive" not in folders and folders["Archive/2003"][0] == 2
    assert run_cli(["verify", str(dest)])[0] == 0


def test_restore_of_an_mbox_archive_leaves_the_parent_a_noselect_folder(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _parent_with_child(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    target = dovecot.new_user("t")
    pw = password_file(target, tmp_path / ".pw-target")
    code, _, err = run_cli(["restore", str(dest),
                            f"imaps://{target.name}@127.0.0.1:{dovecot.imaps_port}",
                            "--target-cafile", str(dovecot.cafile),
                            "--target-password-file", str(pw), "--timeout", "20"])
    assert code == 0, err
    selectable = dovecot.list_folders(target, selectable_only=True)
    assert "Archive/2003" in selectable and "Archive" not in selectable


# ---------------------------------------------------------------- side files

MBOX_SIDE_FILES = ["INBOX.msf", "Archive.msf", "Archive.sbd/2003.msf", "INBOX.lock",
                   ".INBOX.lock", ".mutthdrcache", ".DS_Store", "._INBOX", "Thumbs.db",
                   "desktop.ini"]


def test_side_file_names() -> None:
    for name in ["Drafts.msf", ".INBOX.lock", "INBOX.lock", ".mutt_cache", ".DS_Store",
                 "thumbs.db", "Desktop.ini", "dovecot-uidlist", "dovecot-keywords",
                 "dovecot.index.log", "._1.2.archiver:2,S"]:
        assert is_side_file(name), name
    for name in ["INBOX", "Drafts", "1.2.archiver:2,S", "notes.txt", "dovecot"]:
        assert not is_side_file(name), name


def test_verify_stays_clean_beside_mail_programs_files_and_reports_a_stray_one(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _parent_with_child(dovecot, mail_user)
    dovecot.append(mail_user, "INBOX", b"Subject: i\r\n\r\ni\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    for rel in MBOX_SIDE_FILES:
        (dest / rel).write_bytes(b"\x00not mail, but not empty\n")
    code, out, err = run_cli(["verify", str(dest)])
    assert code == 0, out + err
    assert backup(dovecot, mail_user, dest)[0] == 0
    assert run_cli(["reindex", str(dest), "--force"])[0] == 0
    assert set(_folders(dest)) == {"INBOX", "Archive", "Archive/2003"}
    (dest / "Stray").write_bytes(b"From x Thu Jan  1 00:00:00 1970\nmail\n\n")
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 1 and "Stray" in out and ".msf" not in out


def test_verify_of_a_maildir_passes_over_dovecot_and_desktop_files(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: i\r\n\r\ni\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    inbox = dest / "INBOX"
    for rel in ["dovecot-uidlist", "dovecot-keywords", "dovecot.index", "dovecot.index.log",
                "cur/.DS_Store", "cur/._1.1.archiver:2,S", "new/Thumbs.db"]:
        (inbox / rel).write_bytes(b"x")
    (dest / "Old" / "cur").mkdir(parents=True)  # a folder the index does not know
    (dest / "Old" / "cur" / "dovecot.index.cache").write_bytes(b"x")
    code, out, err = run_cli(["verify", str(dest)])
    assert code == 0, out + err
    code, _, err = run_cli(["reindex", str(dest), "--force"])
    assert code == 0 and "skipped" not in err, err
    (inbox / "cur" / "9.9.archiver:2,S").write_bytes(b"Subject: stray\r\n\r\n")
    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 1 and "9.9.archiver" in out and "DS_Store" not in out
