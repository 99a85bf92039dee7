"""Finding a Thunderbird profile and its Local Folders from synthetic profiles.ini/prefs.js."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archiver.errors import EXIT_USAGE
from archiver.export.profile import (
    MAILDIR_STORE,
    ProfileError,
    add_local_folders,
    find_profile,
    local_folders,
    profile_roots,
    read_prefs,
    running,
    thunderbird_kept_out,
)

LAYOUTS = [  # (sys.platform, where profiles.ini lives, relative to HOME or APPDATA)
    ("linux", "home", ".thunderbird"),
    ("darwin", "home", "Library/Thunderbird"),
    ("win32", "appdata", "Thunderbird"),
]


def _root(system: str, tmp_path: Path) -> tuple[Path, list[Path]]:
    home, appdata = tmp_path / "home", tmp_path / "AppData" / "Roaming"
    roots = profile_roots(system, home=home, appdata=str(appdata))
    return roots[0], roots


@pytest.mark.parametrize(("system", "base", "rel"), LAYOUTS)
def test_profile_roots_per_platform(system: str, base: str, rel: str, tmp_path: Path) -> None:
    root, roots = _root(system, tmp_path)
    want = (tmp_path / "home" if base == "home" else tmp_path / "AppData" / "Roaming") / rel
    assert root == want
    if system == "linux":  # the Snap and Flatpak copies are looked at too
        assert tmp_path / "home/snap/thunderbird/common/.thunderbird" in roots
        assert tmp_path / "home/.var/app/org.mozilla.Thunderbird/.thunderbird" in roots


def _ini(root: Path, text: str, *profiles: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "profiles.ini").write_text(textwrap.dedent(text), encoding="utf-8")
    for rel in profiles:
        (root / rel).mkdir(parents=True)


@pytest.mark.parametrize(("system", "base", "rel"), LAYOUTS)
def test_the_install_sections_default_wins_over_default_1(system: str, base: str, rel: str,
                                                          tmp_path: Path) -> None:
    root, roots = _root(system, tmp_path)
    _ini(root, """\
        [Profile1]
        Name=default
        IsRelative=1
        Path=Profiles/old.default
        Default=1

        [Profile0]
        Name=default-release
        IsRelative=1
        Path=Profiles/new.default-release

        [Install8216C80C92C4E828]
        Default=Profiles/new.default-release
        Locked=1

        [General]
        StartWithLastProfile=1
        Version=2
        """, "Profiles/old.default", "Profiles/new.default-release")
    assert find_profile(None, roots).path == root / "Profiles/new.default-release"
    assert find_profile("default", roots).path == root / "Profiles/old.default"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert find_profile(str(outside), roots).path == outside


def test_without_an_install_section_default_1_is_taken(tmp_path: Path) -> None:
    root, roots = _root("linux", tmp_path)
    absolute = tmp_path / "abs-profile"
    _ini(root, f"""\
        [Profile0]
        Name=a
        IsRelative=1
        Path=a.default

        [Profile1]
        Name=b
        IsRelative=0
        Path={absolute}
        Default=1
        """, "a.default")
    absolute.mkdir()
    assert find_profile(None, roots).path == absolute


def test_no_profile_is_a_one_line_usage_error(tmp_path: Path) -> None:
    _root_dir, roots = _root("linux", tmp_path)
    with pytest.raises(ProfileError) as exc:
        find_profile(None, roots)
    assert exc.value.exit_code == EXIT_USAGE and "\n" not in str(exc.value)
    assert "--profile" in str(exc.value)
    with pytest.raises(ProfileError, match="no Thunderbird profile named"):
        find_profile("nosuch", roots)


def _prefs(profile: Path, lines: str) -> None:
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "prefs.js").write_text("// Mozilla User Preferences\n" + textwrap.dedent(lines),
                                      encoding="utf-8")


def test_local_folders_from_the_local_folders_server(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    _prefs(profile, """\
        user_pref("mail.accountmanager.localfoldersserver", "server2");
        user_pref("mail.server.server1.type", "imap");
        user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/imap.example.org");
        user_pref("mail.server.server2.directory", "/somewhere/else");
        user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders-1");
        user_pref("mail.server.server2.hostname", "Local Folders");
        user_pref("mail.server.server2.type", "none");
        """)
    lf = local_folders(profile)
    assert lf.path == profile / "Mail/Local Folders-1" and lf.configured
    _prefs(profile, """\
        user_pref("mail.accountmanager.localfoldersserver", "server3");
        user_pref("mail.server.server3.directory", "/data/mail \\"quoted\\"");
        user_pref("mail.server.server3.type", "none");
        """)
    assert local_folders(profile).path == Path('/data/mail "quoted"')


def test_a_fresh_profile_gets_local_folders_added(tmp_path: Path) -> None:
    profile = tmp_path / "fresh"
    profile.mkdir()
    lf = local_folders(profile)
    assert not lf.configured and lf.path == profile / "Mail" / "Local Folders"
    add_local_folders(profile)
    prefs = read_prefs(profile / "prefs.js")
    assert prefs["mail.accountmanager.localfoldersserver"] == "server1"
    assert prefs["mail.accountmanager.accounts"] == "account1"
    assert local_folders(profile) == type(lf)(profile / "Mail" / "Local Folders", True)


def test_a_maildir_store_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    _prefs(profile, f"""\
        user_pref("mail.accountmanager.localfoldersserver", "server1");
        user_pref("mail.server.server1.type", "none");
        user_pref("mail.server.server1.directory-rel", "[ProfD]Mail/Local Folders");
        user_pref("mail.server.server1.storeContractID", "{MAILDIR_STORE}");
        """)
    with pytest.raises(ProfileError, match="Maildir store") as exc:
        local_folders(profile)
    assert exc.value.exit_code == EXIT_USAGE and "--to maildir" in str(exc.value)


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(60)
"""


def test_a_held_parentlock_means_running_a_stale_one_does_not(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    profile.mkdir()
    assert not running(profile, "linux")
    (profile / ".parentlock").write_bytes(b"")  # left behind by a Thunderbird that exited
    assert not running(profile, "linux") and not running(profile, "darwin")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(profile / ".parentlock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert running(profile, "linux") and running(profile, "darwin")
    finally:
        holder.kill()
        holder.wait()
    assert not running(profile, "linux")


def test_the_lock_symlink_counts_only_while_its_process_lives(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    profile.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.symlink(f"127.0.1.1:+{dead.pid}", profile / "lock")
    assert not running(profile, "linux")
    (profile / "lock").unlink()
    os.symlink(f"127.0.1.1:+{os.getpid()}", profile / "lock")
    assert running(profile, "linux")
    assert not running(profile, "darwin")  # macOS Thunderbird uses only .parentlock
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (profile / "lock").unlink()
        os.symlink(f"127.0.1.1:+{killed.pid}", profile / "lock")
        assert running(profile, "linux")
        killed.kill()
        for _ in range(100):  # killed, not yet reaped: a zombie holds no lock
            if Path(f"/proc/{killed.pid}/stat").read_text().rpartition(")")[2].split()[0] \
                    == "Z":
                break
            time.sleep(0.05)
        assert not running(profile, "linux")
    finally:
        killed.kill()
        killed.wait()


TRY = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
"""


def test_the_export_holds_thunderbirds_lock_while_it_writes(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    profile.mkdir()
    (profile / ".parentlock").write_bytes(b"")  # stale: no refusal
    lock = str(profile / ".parentlock")
    with thunderbird_kept_out(profile, "linux"):
        assert subprocess.run([sys.executable, "-c", TRY, lock], check=False).returncode == 1
    assert subprocess.run([sys.executable, "-c", TRY, lock], check=False).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLD, lock], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ProfileError, match="Thunderbird is running"), \
                thunderbird_kept_out(profile, "linux"):
            pass
    finally:
        holder.kill()
        holder.wait()
