"""Unpacked Debian packages of servers that cannot be installed beside Dovecot.

Courier-IMAP and Cyrus IMAP conflict with ``dovecot-imapd`` (they all provide
``imap-server``), so the suite never installs them.  :func:`unpacked_root`
asks apt which packages an installation *would* add on this host
(``apt-get -s install``), fetches exactly those with ``apt-get download``
and unpacks them with ``dpkg -x`` into
``/var/cache/archiver-tests/debs/<name>-<digest of the package=version list>/root``.
Only the first run downloads; a change of the host (an upgrade, a package
installed meanwhile) gives a new digest and so a fresh copy.  The tree is
merged as Debian 12 is (``/bin``, ``/sbin``, ``/lib*`` folded into ``/usr``),
so that :mod:`tests.foreign` can lay its ``etc`` and ``usr`` over the host's
with overlay mounts in a private mount namespace.

Root only (apt-get download, dpkg -x, and later mount(2) need it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path("/var/cache/archiver-tests/debs")
# Never needed to run an IMAP server in the tests: an MTA pulled in by
# "default-mta | mail-transport-agent".
SKIP = re.compile(r"^(exim4|postfix|sendmail|nullmailer)")


class DebError(RuntimeError):
    """The packages could not be found, downloaded or unpacked."""


def _env() -> dict[str, str]:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")


def plan(packages: Sequence[str]) -> list[tuple[str, str]]:
    """(package, version) that ``apt-get install PACKAGES`` would unpack on this host.

    A package apt would remove instead (dovecot-imapd: the conflict that is the
    reason for all this) is simply not our business.  Without package lists
    (a fresh container) ``apt-get update`` runs once.
    """
    cmd = ["apt-get", "-s", "-q", "install", "--no-install-recommends", *packages]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if r.returncode != 0 and "Unable to locate package" in r.stdout + r.stderr:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=_env(),
                       check=False)
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if r.returncode != 0:
        raise DebError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    out = []
    for line in r.stdout.splitlines():
        m = re.match(r"Inst (\S+) (?:\[\S+\] )?\((\S+)", line)
        if m and not SKIP.match(m.group(1)):
            out.append((m.group(1), m.group(2)))
    if not out:
        raise DebError(f"apt plans nothing for {packages}:\n{r.stdout}")
    return sorted(out)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _merge_usr(root: Path) -> None:
    """Move /bin, /sbin, /lib* of the unpacked tree under /usr (Debian 12 is usr-merged:
    /lib is a symlink to usr/lib on the host, so only /usr can be overlaid)."""
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        src = root / top
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, root / "usr" / top, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(src)


def unpacked_root(name: str, packages: Sequence[str]) -> Path:
    """A directory holding the files of *packages* and the dependencies this host lacks."""
    want = plan(packages)
    digest = hashlib.sha256(repr(want).encode()).hexdigest()[:12]
    base = CACHE / f"{name}-{digest}"
    done = base / ".complete"
    if done.exists():
        return base / "root"
    with _locked(CACHE / f".{name}.lock"):
        if done.exists():
            return base / "root"
        shutil.rmtree(base, ignore_errors=True)
        debs, root = base / "debs", base / "root"
        debs.mkdir(parents=True)
        root.mkdir()
        r = subprocess.run(["apt-get", "download", "-q", *(f"{p}={v}" for p, v in want)],
                           cwd=debs, capture_output=True, text=True, env=_env())
        if r.returncode != 0:
            raise DebError(f"apt-get download failed in {debs}:\n{r.stdout}{r.stderr}")
        for deb in sorted(debs.glob("*.deb")):
            r = subprocess.run(["dpkg", "-x", str(deb), str(root)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise DebError(f"dpkg -x {deb} failed: {r.stderr}")
        _merge_usr(root)
        (base / "packages").write_text("".join(f"{p} {v}\n" for p, v in want))
        done.write_text("ok\n")
    return base / "root"
