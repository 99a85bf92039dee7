"""Finding a user's Thunderbird profile and its "Local Folders" directory.

``archiver export DEST --to thunderbird`` (no OUT) installs into a profile in
one step, so it has to find what a user would otherwise click through:

* the profiles: ``profiles.ini`` under the platform's Thunderbird directory
  (:func:`profile_roots`: Linux ``~/.thunderbird`` and the Snap and Flatpak
  copies, macOS ``~/Library/Thunderbird``, Windows ``%APPDATA%\\Thunderbird``);
* the default profile: the ``[Install…]`` section's ``Default`` (what
  Thunderbird itself starts since version 68), else the profile with
  ``Default=1``, else the only one;
* its Local Folders directory: the ``mail.server.serverN.directory-rel``
  (else ``.directory``) of the server ``mail.accountmanager.localfoldersserver``
  names (type ``none``) in ``prefs.js``; a fresh profile may have none yet,
  then ``<profile>/Mail/Local Folders``, where Thunderbird creates it;
* whether that server uses the Maildir store (refused: we write mbox files);
* whether Thunderbird is running on the profile.  Its lock file *stays* after
  Thunderbird exits, so the lock itself is tested, never the file's
  existence: the ``fcntl`` lock on ``.parentlock`` (Linux, macOS) and the
  ``lock`` symlink's process (Linux), or opening ``parent.lock``, which
  Thunderbird holds open without sharing (Windows).  While the export writes,
  it holds that ``fcntl`` lock itself (:func:`thunderbird_kept_out`), so a
  Thunderbird started meanwhile reports "already running" instead of reading
  half-written folders.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from archiver.errors import UsageError
from archiver.i18n import _

MAILDIR_STORE = "@mozilla.org/msgstore/maildirstore;1"
PrefValue = Union[str, int, bool]


class ProfileError(UsageError):
    """No usable Thunderbird profile (exit 2): none found, Maildir store, Thunderbird running."""


def profile_roots(system: Optional[str] = None, home: Optional[Path] = None,
                  appdata: Optional[str] = None) -> list[Path]:
    """Where Thunderbird keeps ``profiles.ini`` on ``system`` (``sys.platform`` values)."""
    system = system or sys.platform
    home = home if home is not None else Path.home()
    if system == "win32":
        base = appdata if appdata is not None else os.environ.get("APPDATA")
        return [Path(base) / "Thunderbird"] if base else [home / "AppData/Roaming/Thunderbird"]
    if system == "darwin":
        return [home / "Library/Thunderbird"]
    return [home / ".thunderbird", home / "snap/thunderbird/common/.thunderbird",
            home / ".var/app/org.mozilla.Thunderbird/.thunderbird"]


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    default: bool = False


def read_profiles(root: Path) -> list[Profile]:
    """The profiles ``root/profiles.ini`` lists; the default one first."""
    ini = configparser.RawConfigParser(strict=False)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        ini.read_string((root / "profiles.ini").read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error):
        return []

    def where(path: str, relative: bool) -> Path:
        path = path.replace("\\", "/") if relative else path
        return (root / path) if relative else Path(path)

    installed = {where(ini[s]["Default"], True) for s in ini.sections()
                 if s.startswith("Install") and ini[s].get("Default")}
    found = []
    for section in ini.sections():
        sec = ini[section]
        if not section.startswith("Profile") or "Path" not in sec:
            continue
        path = where(sec["Path"], sec.get("IsRelative", "1") == "1")
        found.append(Profile(sec.get("Name", path.name), path,
                             path in installed or (not installed and sec.get("Default") == "1")))
    found.sort(key=lambda p: not p.default)
    return found


def find_profile(choice: Optional[str], roots: Optional[list[Path]] = None) -> Profile:
    """``--profile NAME|PATH``, else the default profile; :class:`ProfileError` if none."""
    if choice:
        path = Path(choice).expanduser()
        if path.is_dir():
            return Profile(path.name, path)
    roots = roots if roots is not None else profile_roots()
    profiles = [p for root in roots for p in read_profiles(root)]
    if choice:
        for p in profiles:
            if p.name == choice and p.path.is_dir():
                return p
        raise ProfileError(_("no Thunderbird profile named or at '{choice}': give a profile "
                             "directory or a name from profiles.ini with --profile").format(
                             choice=choice))
    usable = [p for p in profiles if p.path.is_dir()]
    chosen = [p for p in usable if p.default] or (usable if len(usable) == 1 else [])
    if not chosen:
        raise ProfileError(_("no default Thunderbird profile found (looked in {where}): start "
                             "Thunderbird once, or give --profile PATH, or export into a "
                             "directory with 'archiver export DEST OUT --to thunderbird'").format(
                             where=", ".join(str(r) for r in roots)))
    return chosen[0]


_PREF = re.compile(r'^\s*user_pref\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*(.*?)\s*\)\s*;\s*$')


def read_prefs(path: Path) -> dict[str, PrefValue]:
    """``user_pref("name", value);`` lines of a ``prefs.js`` (strings, numbers, booleans)."""
    prefs: dict[str, PrefValue] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return prefs
    for line in text.splitlines():
        m = _PREF.match(line)
        if not m:
            continue
        name, raw = json.loads(f'"{m.group(1)}"'), m.group(2)
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, (str, int, bool)):
            prefs[name] = value
    return prefs


@dataclass(frozen=True)
class LocalFolders:
    path: Path
    configured: bool  # False: the profile has no Local Folders yet; Thunderbird's default


def local_folders(profile: Path) -> LocalFolders:
    """The Local Folders directory of ``profile`` (refused if it uses the Maildir store).

    ``user.js`` is read after ``prefs.js``: Thunderbird lets it override.
    """
    prefs = {**read_prefs(profile / "prefs.js"), **read_prefs(profile / "user.js")}
    key = prefs.get("mail.accountmanager.localfoldersserver")
    servers = [key] if isinstance(key, str) and key else []
    servers += sorted({m.group(1) for k in prefs
                       if (m := re.match(r"mail\.server\.([^.]+)\.type$", k))} - set(servers))
    for server in servers:
        if prefs.get(f"mail.server.{server}.type") != "none":
            continue
        base = f"mail.server.{server}."
        if prefs.get(base + "storeContractID") == MAILDIR_STORE:
            raise ProfileError(_("the Local Folders of Thunderbird profile {profile} use the "
                                 "Maildir store, and archiver writes mbox files: export with "
                                 "'archiver export DEST OUT --to maildir' and import that, or "
                                 "use another profile (--profile)").format(profile=profile))
        rel, absolute = prefs.get(base + "directory-rel"), prefs.get(base + "directory")
        if isinstance(rel, str) and rel.startswith("[ProfD]"):
            return LocalFolders(profile / rel[len("[ProfD]"):], True)
        if isinstance(absolute, str) and absolute:
            return LocalFolders(Path(absolute), True)
    return LocalFolders(profile / "Mail" / "Local Folders", False)


def add_local_folders(profile: Path) -> Path:
    """Give a profile without Local Folders its Local Folders account, as Thunderbird's
    own ``createLocalMailAccount`` does (a fresh profile has none until an account is
    set up, and Thunderbird would not show what we wrote).  Lines appended to
    ``prefs.js`` (replaced atomically); Thunderbird keeps them and rewrites the file
    sorted on exit.  Returns the directory."""
    from archiver.durable import atomic_write

    path = profile / "prefs.js"
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    prefs = {**read_prefs(path), **read_prefs(profile / "user.js")}
    used = {int(m.group(2)) for k in prefs
            if (m := re.match(r"mail\.(account\.account|server\.server)(\d+)\.", k))}
    n = max(used, default=0) + 1
    accounts = str(prefs.get("mail.accountmanager.accounts") or "")
    new = {
        "mail.accountmanager.accounts": ",".join(a for a in (accounts, f"account{n}") if a),
        "mail.accountmanager.localfoldersserver": f"server{n}",
        f"mail.account.account{n}.server": f"server{n}",
        f"mail.server.server{n}.type": "none",
        f"mail.server.server{n}.hostname": "Local Folders",
        f"mail.server.server{n}.name": "Local Folders",
        f"mail.server.server{n}.userName": "nobody",
        f"mail.server.server{n}.directory-rel": "[ProfD]Mail/Local Folders",
    }
    lines = "".join(f"user_pref({json.dumps(k)}, {json.dumps(v, ensure_ascii=False)});\n"
                    for k, v in new.items())
    sep = b"" if not old or old.endswith(b"\n") else b"\n"
    atomic_write(path, old + sep + lines.encode("utf-8"))
    return profile / "Mail" / "Local Folders"


# ---------------------------------------------------------------- is it running?


def running(profile: Path, system: Optional[str] = None) -> bool:
    """Is a Thunderbird holding ``profile``'s lock?  (The lock, never the file's presence.)"""
    system = system or sys.platform
    if system == "win32":
        return _windows_held(profile / "parent.lock")
    return _fcntl_held(profile / ".parentlock") or (
        system.startswith("linux") and _symlink_held(profile / "lock"))


def _fcntl_held(path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there, and not even openable: take it for held
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _symlink_held(path: Path) -> bool:
    """The ``lock`` symlink points to ``IP:+PID`` (or ``IP:PID``); held while PID lives."""
    try:
        target = os.readlink(path)
    except OSError:
        return False
    m = re.search(r":\+?(\d+)$", target)
    if not m:
        return False
    pid = int(m.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed Thunderbird nobody has reaped yet is a zombie: it holds nothing
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _windows_held(path: Path) -> bool:  # pragma: no cover - Windows
    try:
        with open(path, "r+b"):
            return False
    except FileNotFoundError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def thunderbird_kept_out(profile: Path, system: Optional[str] = None) -> Iterator[None]:
    """Refuse if Thunderbird runs on ``profile``; else hold its lock while we write, so
    a Thunderbird started meanwhile says "already running" instead of reading half a
    folder.  (Windows: only checked; Thunderbird's lock there is an open file.)"""
    system = system or sys.platform
    refusal = ProfileError(_("Thunderbird is running on profile {profile}: quit Thunderbird "
                             "and run the export again").format(profile=profile))
    if system == "win32" or (system.startswith("linux") and _symlink_held(profile / "lock")):
        if running(profile, system):
            raise refusal
        yield
        return
    import fcntl

    fd = os.open(profile / ".parentlock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise refusal from None
            raise
        yield
    finally:
        os.close(fd)  # releases the lock
