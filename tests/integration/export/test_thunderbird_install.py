"""`archiver export DEST --to thunderbird` straight into a profile: wrapper, reruns, refusals."""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archiver.export.install import RECORD
from archiver.export.profile import MAILDIR_STORE
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, backup, build_archive, run_cli

NAME = "Old ECCS"


@pytest.fixture(scope="module")
def archive_dir(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(dovecot, tmp_path_factory.mktemp("tbinstall"))


def _profile(where: Path, extra: str = "") -> Path:
    """A profile whose prefs.js names its Local Folders (as Thunderbird writes it)."""
    where.mkdir(parents=True)
    (where / "prefs.js").write_text(textwrap.dedent("""\
        // Mozilla User Preferences
        user_pref("mail.accountmanager.accounts", "account1,account2");
        user_pref("mail.accountmanager.localfoldersserver", "server2");
        user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders");
        user_pref("mail.server.server2.hostname", "Local Folders");
        user_pref("mail.server.server2.type", "none");
        """) + extra, encoding="utf-8")
    return where


def _install(dest: Path, profile: Path, *extra: str) -> tuple[int, str]:
    code, _out, err = run_cli(["export", str(dest), "--to", "thunderbird", "--profile",
                               str(profile), "--name", NAME, *extra])
    return code, err


def _box(profile: Path) -> Path:
    return profile / "Mail" / "Local Folders" / f"{NAME}.sbd"


def _count(path: Path) -> int:
    return len(mailbox.mbox(path, create=False))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RECORD}


def test_export_without_out_is_only_for_thunderbird(archive_dir: Path) -> None:
    for kind in ("mbox", "maildir", "eml"):
        code, _out, err = run_cli(["export", str(archive_dir), "--to", kind])
        assert code == 2 and err.count("\n") == 1 and "needs OUT" in err, err


def test_out_is_wrapped_in_the_named_folder(archive_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _out, err = run_cli(["export", str(archive_dir), str(out), "--to", "thunderbird",
                               "--name", NAME])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [NAME, f"{NAME}.sbd"]
    assert (out / NAME).read_bytes() == b""  # Thunderbird needs the folder's own file
    assert (out / f"{NAME}.sbd" / "INBOX").is_file()  # never clashes with its own Inbox
    assert not (out / "INBOX").exists()


def test_install_into_a_profile_is_the_same_tree_as_out(archive_dir: Path,
                                                        tmp_path: Path) -> None:
    profile = _profile(tmp_path / "p")
    code, err = _install(archive_dir, profile)
    assert code == 0, err
    assert (profile / "Mail" / "Local Folders" / NAME).is_file()
    out = tmp_path / "out"
    assert run_cli(["export", str(archive_dir), str(out), "--to", "thunderbird",
                    "--name", NAME])[0] == 0
    assert _files(_box(profile)) == _files(out / f"{NAME}.sbd")


def _user_archive(dovecot: DovecotServer, tmp_path: Path) -> tuple[MailUser, Path]:
    user = dovecot.new_user("tb")
    corpus.load(dovecot, user, corpus.nasty_messages(), corpus.folder_names())
    dest = tmp_path / "archive"
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    return user, dest


NEW = (b"From: new@example.jp\r\nTo: alice@example.jp\r\nSubject: new one\r\n"
       b"Message-ID: <new-after-export@example.jp>\r\n\r\nnew body\r\n")


def test_a_rerun_adds_only_new_mail_and_drops_the_stale_msf(dovecot: DovecotServer,
                                                            tmp_path: Path) -> None:
    user, dest = _user_archive(dovecot, tmp_path)
    profile = _profile(tmp_path / "p")
    assert _install(dest, profile)[0] == 0
    box = _box(profile)
    before = {p: _count(p) for p in box.rglob("*") if p.is_file() and p.name != RECORD}
    for name in ("INBOX", "Sent"):  # Thunderbird has opened these
        (box / f"{name}.msf").write_bytes(b"// <!-- <mdb:mork:z v=\"1.4\"/> -->\n")
    again = _install(dest, profile)
    assert again[0] == 0 and "exported 0 messages" in again[1], again
    assert (box / "INBOX.msf").exists()  # nothing appended: the summary is still right

    dovecot.append(user, "INBOX", NEW, ["\\Flagged"], dt.datetime(2024, 4, 1, 9, 0,
                                                                   tzinfo=dt.timezone.utc))
    assert backup(dovecot, user, dest)[0] == 0
    code, err = _install(dest, profile)
    assert code == 0 and "exported 1 message " in err, err
    n = sum(before.values())
    assert f"{n} messages were exported before and not added again" in err
    after = {p: _count(p) for p in before}
    assert after[box / "INBOX"] == before[box / "INBOX"] + 1
    assert all(after[p] == before[p] for p in before if p.name != "INBOX")
    last = list(mailbox.mbox(box / "INBOX", create=False))[-1]
    assert last["Message-ID"] == "<new-after-export@example.jp>"
    assert last["X-Mozilla-Status"] == "0004"
    assert not (box / "INBOX.msf").exists() and (box / "Sent.msf").exists()


def test_a_new_folder_is_added_beside_the_users_own(dovecot: DovecotServer,
                                                    tmp_path: Path) -> None:
    user, dest = _user_archive(dovecot, tmp_path)
    profile = _profile(tmp_path / "p")
    assert _install(dest, profile)[0] == 0
    box = _box(profile)
    (box / "Notes").write_bytes(b"")  # a folder the user made in Thunderbird
    dovecot.append(user, "Notes/2024", NEW)
    assert backup(dovecot, user, dest)[0] == 0
    code, err = _install(dest, profile)
    assert code == 0 and "exported 1 message " in err, err
    assert (box / "Notes").read_bytes() == b""
    assert _count(box / "Notes (2).sbd" / "2024") == 1 and (box / "Notes (2)").is_file()
    assert _install(dest, profile)[1].startswith("exported 0 messages")


def test_a_message_deleted_in_thunderbird_is_not_added_again(dovecot: DovecotServer,
                                                             tmp_path: Path) -> None:
    """Thunderbird compacts a folder after a delete: the file is rewritten without the
    message and every offset moves.  The record is by identity, so the rerun neither
    re-adds the deleted message nor duplicates the others."""
    user, dest = _user_archive(dovecot, tmp_path)
    profile = _profile(tmp_path / "p")
    assert _install(dest, profile)[0] == 0
    inbox = _box(profile) / "INBOX"
    box = mailbox.mbox(inbox, create=False)
    kept = [box.get_bytes(k) for k in box.keys()[1:]]
    box.remove(box.keys()[0])
    box.flush()  # rewrites the file, as a compaction does
    box.close()
    dovecot.append(user, "INBOX", NEW)
    assert backup(dovecot, user, dest)[0] == 0
    code, err = _install(dest, profile)
    assert code == 0 and "exported 1 message " in err, err
    box = mailbox.mbox(inbox, create=False)
    now = [box.get_bytes(k) for k in box.iterkeys()]
    assert now[:-1] == kept and b"<new-after-export@example.jp>" in now[-1]


def test_refusals_are_one_line_with_exit_2(archive_dir: Path, tmp_path: Path) -> None:
    maildir = _profile(tmp_path / "maildir", 'user_pref("mail.server.server2.storeContractID", '
                                             f'"{MAILDIR_STORE}");\n')
    code, err = _install(archive_dir, maildir)
    assert code == 2 and err.count("\n") == 1 and "Maildir store" in err, err
    assert not (maildir / "Mail").exists()

    code, _out, err = run_cli(["export", str(archive_dir), "--to", "thunderbird"],
                              env={"HOME": str(tmp_path / "nohome"), "APPDATA": ""})
    assert code == 2 and err.count("\n") == 1 and "no default Thunderbird profile" in err, err

    busy = _profile(tmp_path / "busy")
    (busy / ".parentlock").write_bytes(b"")  # a stale lock file alone: not running
    assert _install(archive_dir, busy)[0] == 0
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_WRONLY)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("held", flush=True)
        time.sleep(60)
        """), str(busy / ".parentlock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, err = _install(archive_dir, busy)
        assert code == 2 and err.count("\n") == 1 and "Thunderbird is running" in err, err
    finally:
        holder.kill()
        holder.wait()


KILL = """
import os, sys
import archiver.export.install as install
from archiver.cli import run

real = install.write_mbox_entry
seen = []

def dying(write, from_line, msg, extra=()):
    seen.append(1)
    if len(seen) < int(sys.argv[1]):
        return real(write, from_line, msg, extra)
    data = []
    real(data.append, from_line, msg, extra)
    whole = b"".join(data)
    write(whole[: len(whole) // 2])
    write.__closure__[0].cell_contents.flush()  # the torn half reaches the file
    os._exit(9)  # killed: no finally, no cleanup

def dies_before_recording(path):  # appended and fsynced, not yet recorded as done
    os._exit(9)

if sys.argv[1] == "recorded":
    install._drop_summary = dies_before_recording
else:
    install.write_mbox_entry = dying
sys.exit(run(sys.argv[2:]))
"""


@pytest.mark.parametrize("victim", ["3", "12", "recorded"])
def test_a_killed_export_is_repaired_by_a_rerun(archive_dir: Path, tmp_path: Path,
                                                victim: str) -> None:
    """Killed half way through a message (3rd, 12th), or after a folder's messages were
    appended and fsynced but before they were recorded: the rerun cuts the file back
    to where that run began and writes them again."""
    clean = _profile(tmp_path / "clean")
    assert _install(archive_dir, clean)[0] == 0
    profile = _profile(tmp_path / "p")
    proc = subprocess.run([sys.executable, "-c", KILL, victim, "export", str(archive_dir),
                           "--to", "thunderbird", "--profile", str(profile), "--name", NAME],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          check=False)
    assert proc.returncode == 9, proc.stderr
    torn = _files(_box(profile))
    assert torn != _files(_box(clean))
    code, err = _install(archive_dir, profile)
    assert code == 0 and "took back what an interrupted export left unrecorded" in err, err
    assert _files(_box(profile)) == _files(_box(clean))  # no duplicate, no torn message
    assert _install(archive_dir, profile)[1].startswith("exported 0 messages")
