"""Restore from a read-only archive (a DVD, a read-only mount, a snapshot): the journal moves.

Mechanism: a read-only bind mount of the archive (``mount --bind`` then
``mount -o remount,ro,bind``; needs root): a chmod would not stop root,
a read-only mount stops everyone (EROFS).  The journal then lives in the
user state directory (``XDG_STATE_HOME`` here), one directory per archive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup
from tests.integration.restore.test_restore import contents, restore


@contextlib.contextmanager
def read_only_view(archive: Path, where: Path) -> Iterator[Path]:
    """``archive`` mounted read-only at ``where`` (unmounted afterwards)."""
    where.mkdir()
    bound = subprocess.run(["mount", "--bind", str(archive), str(where)],
                           capture_output=True).returncode == 0
    assert bound, "mount --bind failed (needs root)"
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], check=True)
        with pytest.raises(OSError) as refused:
            (where / ".archiver" / "probe").write_bytes(b"")
        assert refused.value.errno == errno.EROFS
        print(f"\nread-only mechanism: mount --bind + remount,ro,bind ({where})")
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _fill(server: DovecotServer, user: MailUser, n: int) -> None:
    with server.session(user) as c:
        for i in range(n):
            server.append(user, ("INBOX", "Sent", "Lists")[i % 3],
                          b"Subject: ro %d\r\nMessage-ID: <ro-%d@t>\r\n\r\nbody\r\n" % (i, i),
                          ("\\Seen",) if i % 2 else (), client=c)


def _archive(dovecot: DovecotServer, where: Path, n: int = 12) -> tuple[MailUser, Path]:
    old = dovecot.new_user()
    _fill(dovecot, old, n)
    dest = where / "a"
    code, _, err = backup(dovecot, old, dest)
    assert code == 0, err
    return old, dest


def test_restore_from_a_read_only_archive_keeps_the_journal_in_the_state_directory(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    old, dest = _archive(dovecot, tmp_path / "one")
    state = tmp_path / "state"
    env = {"XDG_STATE_HOME": str(state)}
    new = dovecot_new.new_user()
    with read_only_view(dest, tmp_path / "ro") as ro:
        code, _, err = restore(ro, dovecot_new, new, "--dry-run", env=env)
        assert code == 0, err
        lines = [x for x in err.splitlines() if x.startswith("journal")]
        assert len(lines) == 1 and str(state / "archiver" / "restore") in lines[0], err
        assert "read-only" in lines[0]
        assert not state.exists()  # a dry run writes nothing, not even the journal

        code, out, err = restore(ro, dovecot_new, new, "--json", env=env)
        assert code == 0, err
        first = json.loads(out)
        assert first["uploaded"] == 12, first
        journal = Path(first["journal"])
        assert journal.parent.parent == state / "archiver" / "restore"
        assert journal.parent.name.startswith(f"{old.name}@127.0.0.1-")
        assert journal.exists() and journal.with_suffix(".lock").exists()

        # the journal is what knows: no look at the target (--no-dedup), nothing again
        code, out, err = restore(ro, dovecot_new, new, "--json", "--no-dedup", env=env)
        assert code == 0, err
        again = json.loads(out)
        assert again["uploaded"] == 0 and again["already"] == 12, again
        assert contents(dovecot_new, new) == contents(dovecot, old)

        # the lock works there too
        with open(journal.with_suffix(".lock"), "ab") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            code, _, err = restore(ro, dovecot_new, new, "--quiet", env=env)
        assert code == 6 and "already restoring" in err, err

    # another read-only archive (another account) never shares that journal
    _, other = _archive(dovecot, tmp_path / "two", n=3)
    with read_only_view(other, tmp_path / "ro2") as ro:
        code, out, err = restore(ro, dovecot_new, new, "--json", "--prefix", "two/", env=env)
        assert code == 0, err
        second = json.loads(out)
        assert second["uploaded"] == 3, second
        assert Path(second["journal"]).parent != journal.parent


def test_journal_begun_while_writable_goes_on_read_only_and_back(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    old, dest = _archive(dovecot, tmp_path)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new, "--json", "--folder", "INBOX", env=env)
    assert code == 0, err
    part = json.loads(out)
    assert part["uploaded"] == 4 and Path(part["journal"]).parent == dest / ".archiver"
    # --no-dedup everywhere below: only the journals can keep these runs from duplicating
    with read_only_view(dest, tmp_path / "ro") as ro:
        code, out, err = restore(ro, dovecot_new, new, "--json", "--no-dedup", env=env)
        assert code == 0, err
        rest = json.loads(out)
        assert rest["already"] == 4 and rest["uploaded"] == 8, rest
        assert str(tmp_path / "state") in rest["journal"]
    code, out, err = restore(dest, dovecot_new, new, "--json", "--no-dedup", env=env)
    assert code == 0, err
    back = json.loads(out)
    assert back["already"] == 12 and back["uploaded"] == 0, back
    assert Path(back["journal"]).parent == dest / ".archiver"
    assert contents(dovecot_new, new) == contents(dovecot, old)
