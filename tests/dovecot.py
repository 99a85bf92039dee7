"""A throwaway, real Dovecot (IMAP, IMAPS, POP3, POP3S) for the test suite.

Usage::

    server = DovecotServer(tmp_path)
    server.start()
    user = server.new_user()
    server.append(user, "INBOX", b"Subject: hi\r\n\r\nbody\r\n")
    ...
    server.stop()

or ``with DovecotServer(tmp_path) as server: ...``.

Everything lives under one directory (``server.dir``): dovecot.conf, the
passwd-files ``passwd.d/<user>``, ``master-users``, ``ssl/`` (``ca.pem`` is what clients
must trust), ``run/`` (Dovecot's base_dir, with ``master.pid``), ``state/``,
``dovecot.log``, ``mail/<user>`` (Maildir++) and ``home/<user>``.

Root vs. non-root
-----------------
Dovecot refuses to serve mail as root.  When the tests run as root, the mail
is owned by the system user ``archiver-test`` (created on first use), and the
server directory is put under ``/var/tmp/archiver-tests/<random>`` (0755
parents) because pytest's tmp dirs are 0700 and the ``dovecot``/``dovenull``
and ``archiver-test`` users must be able to reach it; that directory is
removed by :meth:`DovecotServer.stop` (the log is copied back into
``base_dir`` first).  When not root, everything runs as the current user
inside ``base_dir`` itself (no chroot for the login processes).

Facts about Dovecot 2.3 the tests rely on (checked in tests/test_fixtures.py)
-------------------------------------------------------------------------------
* APPEND of a zero-byte message is refused (``NO``), hence
  :meth:`DovecotServer.write_maildir_file`.
* NUL bytes in a message are served as 0x80 over IMAP.
* Line endings: APPEND stores the message in Maildir with LF line endings
  (CRLF -> LF) and silently drops a CR at the very end of the message; BODY[]
  is served with every bare LF turned into CRLF; other lone CRs are kept.
  So ``b"a\\rb\\r\\r\\n"`` is served as ``b"a\\rb\\r\\n"`` and ``b"x\\r"`` as ``b"x"``
  -- see :func:`served_form`.  (Note: ``imaplib``/``IMAPClient.append`` would rewrite
  line endings *before* sending; :meth:`append` sends the literal raw.)
* Folder names ``..``, ``a/../b`` and ``cur`` are accepted.
* A passwd-file is re-stat()ed at most once per second, so users added to
  one shared file may stay unknown for ~1 s; hence one file per user
  (``passwd.d/%u``), which is visible immediately.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import grp
import hashlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imapclient
from imapclient import imap_utf7
from imapclient.imapclient import _literal

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
DOVECONF = Path("/usr/bin/doveconf")
MAIL_SYSTEM_USER = "archiver-test"
ROOT_PARENT = Path("/var/tmp/archiver-tests")

MASTER_USER = "admin"
MASTER_PASSWORD = "admin-pw"
MASTER_SEPARATOR = "*"

# Maildir info-flag letters <-> IMAP system flags.
MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",  # "passed" (mutt); Dovecot 2.3 ignores P: its $Forwarded is a keyword letter
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}


class DovecotMissing(RuntimeError):
    """Dovecot is not installed (install dovecot-imapd and dovecot-pop3d)."""


class DovecotError(RuntimeError):
    pass


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str

    def as_master(self) -> tuple[str, str]:
        """(login, password) to log in as this user through the master user."""
        return f"{self.name}{MASTER_SEPARATOR}{MASTER_USER}", MASTER_PASSWORD


Message = tuple[int, bytes, "set[str]", _dt.datetime]


def served_form(data: bytes, *, appended: bool = True) -> bytes:
    """What Dovecot 2.3 serves as BODY[] for a message APPENDed (or written) as *data*.

    Saving via APPEND stores the message with LF line endings: every CRLF
    becomes LF and a CR at the very end of the message is dropped (a lone CR
    elsewhere is kept).  Serving turns every LF that is not preceded by CR into
    CRLF and every NUL into 0x80.  A file written straight into the Maildir
    (``appended=False``) only goes through the serving step.
    """
    if appended:
        data = data.replace(b"\r\n", b"\n")
        if data.endswith(b"\r"):
            data = data[:-1]
    return re.sub(rb"(?<!\r)\n", b"\r\n", data).replace(b"\0", b"\x80")


def dovecot_available() -> bool:
    return DOVECOT.exists() and DOVEADM.exists()


def skip_requested() -> bool:
    return os.environ.get("ARCHIVER_SKIP_DOVECOT", "") == "1"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    """True while *pid* runs; a zombie counts as gone (the daemonized master is
    not our child, so whoever reaps it may take a while)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )
    # Another process may have created it concurrently (exit code 9).
    if r.returncode not in (0, 9):
        raise DovecotError(f"useradd {name} failed: {r.stderr.strip()}")
    return pwd.getpwnam(name)


def maildir_folder_dirname(folder: str) -> str:
    """On-disk directory (relative to the user's Maildir root) of an IMAP folder.

    Maildir++ layout with listescape: INBOX is the root (""), every other
    folder is "." + its components joined by ".", each component encoded in
    modified UTF-7, with "\\" and "." escaped as "\\5c" and "\\2e" and a leading "~"
    as "\\7e" (checked against Dovecot 2.3.19 in tests/test_fixtures.py).
    """
    if folder.upper() == "INBOX":
        return ""
    parts = []
    for comp in folder.split("/"):
        enc = imap_utf7.encode(comp).decode("ascii")
        enc = enc.replace("\\", "\\5c").replace(".", "\\2e")
        if enc.startswith("~"):
            enc = "\\7e" + enc[1:]
        parts.append(enc)
    return "." + ".".join(parts)


class DovecotServer:
    """A real Dovecot listening on 127.0.0.1 on free ports."""

    host = "127.0.0.1"

    def __init__(self, base_dir: Path, extra_config: str = "") -> None:
        self.base_dir = Path(base_dir)
        self.extra_config = extra_config
        self.is_root = os.geteuid() == 0
        self.dir: Path = self.base_dir  # real server directory, set in start()
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0
        self.users: dict[str, MailUser] = {}
        self.master = MailUser(MASTER_USER, MASTER_PASSWORD)
        self._counter = itertools.count(1)
        self._pid: int | None = None
        self._owned_dir = False
        self.mail_uid = os.getuid()
        self.mail_gid = os.getgid()

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.dir / "dovecot.conf"

    @property
    def passwd_dir(self) -> Path:
        """One passwd-file per user: ``passwd.d/<name>`` (see new_user)."""
        return self.dir / "passwd.d"

    @property
    def log_file(self) -> Path:
        return self.dir / "dovecot.log"

    @property
    def cafile(self) -> Path:
        return self.dir / "ssl" / "ca.pem"

    @property
    def wrong_cafile(self) -> Path:
        return self.dir / "ssl" / "wrong-ca.pem"

    @property
    def pidfile(self) -> Path:
        return self.dir / "run" / "master.pid"

    def maildir(self, user: MailUser | str) -> Path:
        return self.dir / "mail" / _name(user)

    def folder_path(self, user: MailUser | str, folder: str) -> Path:
        """Maildir++ directory of *folder* (INBOX is the user's Maildir root)."""
        d = maildir_folder_dirname(folder)
        return self.maildir(user) / d if d else self.maildir(user)

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DovecotServer:
        if not dovecot_available():
            raise DovecotMissing(
                f"{DOVECOT} / {DOVEADM} not found: install the Debian packages "
                "dovecot-imapd and dovecot-pop3d (scripts/test does it when run as root), "
                "or set ARCHIVER_SKIP_DOVECOT=1 to skip the tests that need a server."
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.is_root:
            pw = _ensure_system_user(MAIL_SYSTEM_USER)
            self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid
            ROOT_PARENT.mkdir(parents=True, exist_ok=True)
            ROOT_PARENT.chmod(0o755)
            self.dir = ROOT_PARENT / secrets.token_hex(6)
            self.dir.mkdir(mode=0o755)
            self.dir.chmod(0o755)
            self._owned_dir = True
            link = self.base_dir / "server"
            with contextlib.suppress(OSError):
                if link.is_symlink():
                    link.unlink()
                link.symlink_to(self.dir)
        else:
            self.dir = self.base_dir
        for sub in ("run", "state", "mail", "home", "ssl"):
            (self.dir / sub).mkdir(exist_ok=True)
        for sub in ("mail", "home"):
            os.chown(self.dir / sub, self.mail_uid, self.mail_gid)
            (self.dir / sub).chmod(0o755)
        self._write_certs()
        self._write_users()
        last_err: Exception | None = None
        for _attempt in range(5):
            (self.imap_port, self.imaps_port, self.pop3_port,
             self.pop3s_port) = _free_ports(4)
            self._write_config()
            try:
                self._launch()
                return self
            except DovecotError as e:  # most likely a port race; retry
                last_err = e
                self._kill()
        raise DovecotError(f"could not start Dovecot: {last_err}")

    def _launch(self) -> None:
        r = subprocess.run([str(DOVECONF), "-c", str(self.conf), "-n"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise DovecotError(f"bad config {self.conf}: {r.stderr}")
        # Dovecot daemonizes; its stdio must not be our pipes (or run() would
        # wait for the daemon to close them).
        out = self.dir / "dovecot.stderr"
        with open(out, "ab") as fh:
            r = subprocess.run([str(DOVECOT), "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                               stdout=fh, stderr=fh)
        if r.returncode != 0:
            raise DovecotError(f"dovecot failed to start ({r.returncode}): "
                               f"{out.read_text(errors='replace')}{self._log_tail()}")
        deadline = time.monotonic() + 15
        ports = (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port)
        while time.monotonic() < deadline:
            # the pidfile may exist but be empty for a moment (written after creation)
            pid = self.pidfile.read_text().strip() if self.pidfile.exists() else ""
            if pid.isdigit() and all(_port_open(p) for p in ports):
                self._pid = int(pid)
                return
            time.sleep(0.05)
        raise DovecotError(f"dovecot did not open its ports {ports}{self._log_tail()}")

    def log_problems(self) -> list[str]:
        """Lines of dovecot.log with Error/Fatal/Panic (for post-mortems and sanity checks)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines()
                if re.search(r": (Error|Fatal|Panic)(\(|:)", ln)]

    def _log_tail(self) -> str:
        try:
            return "\n--- dovecot.log ---\n" + "\n".join(
                self.log_file.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def _kill(self) -> None:
        pid = self._pid
        if pid is None and self.pidfile.exists():
            with contextlib.suppress(ValueError, OSError):
                pid = int(self.pidfile.read_text().strip())
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.02)
        else:
            raise DovecotError(f"dovecot pid {pid} did not exit")
        ports = (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port)
        while time.monotonic() < deadline and any(p and _port_open(p) for p in ports):
            time.sleep(0.05)
        self._pid = None

    def stop(self) -> None:
        self._kill()
        if self._owned_dir and self.dir.exists():
            with contextlib.suppress(OSError):
                shutil.copy(self.log_file, self.base_dir / "dovecot.log")
            with contextlib.suppress(OSError):
                (self.base_dir / "server").unlink()
            shutil.rmtree(self.dir, ignore_errors=True)
            self._owned_dir = False

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    # ---------------------------------------------------------------- config
    def _write_certs(self) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ssl_dir = self.dir / "ssl"
        ca.cert_pem.write_to_path(str(ssl_dir / "ca.pem"))
        cert.private_key_pem.write_to_path(str(ssl_dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(ssl_dir / "server.pem"))
        trustme.CA().cert_pem.write_to_path(str(ssl_dir / "wrong-ca.pem"))
        (ssl_dir / "server.key").chmod(0o600)
        for n in ("ca.pem", "server.pem", "wrong-ca.pem"):
            (ssl_dir / n).chmod(0o644)

    def _write_users(self) -> None:
        (self.dir / "master-users").write_text(
            f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n")
        self._make_auth_readable(self.dir / "master-users")
        self.passwd_dir.mkdir(exist_ok=True)
        self.passwd_dir.chmod(0o755 if self.is_root else 0o700)

    def _make_auth_readable(self, path: Path) -> None:
        if self.is_root:
            # the auth process runs as the "dovecot" user
            try:
                gid = grp.getgrnam("dovecot").gr_gid
                os.chown(path, 0, gid)
                path.chmod(0o640)
            except KeyError:
                path.chmod(0o644)
        else:
            path.chmod(0o600)

    def _write_config(self) -> None:
        d = self.dir
        if self.is_root:
            ids = f"""
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
"""
            chroot = ""
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            ids = f"""
default_internal_user = {me}
default_internal_group = {group}
default_login_user = {me}
first_valid_uid = 1
first_valid_gid = 1
"""
            # an unprivileged master cannot chroot() (login, anvil, ipc)
            chroot = "  chroot =\n"
        dh = Path("/usr/share/dovecot/dh.pem")
        dh_line = f"ssl_dh = <{dh}" if dh.exists() else ""
        conf = f"""# Generated by tests/dovecot.py -- throwaway test server, loopback only.
instance_name = archiver-test-{d.name}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap pop3
listen = 127.0.0.1
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
auth_verbose = yes
{ids}
ssl = yes
ssl_cert = <{d}/ssl/server.pem
ssl_key = <{d}/ssl/server.key
{dh_line}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# failed logins answer at once (default 2 s) to keep the suite fast
auth_failure_delay = 0

mail_location = maildir:{d}/mail/%u
mail_plugins = $mail_plugins listescape
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}
plugin {{
  listescape_char = "\\\\"
}}

auth_master_user_separator = {MASTER_SEPARATOR}
passdb {{
  driver = passwd-file
  master = yes
  args = {d}/master-users
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = {d}/passwd.d/%u
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd.d/%u
  default_fields = uid={self.mail_uid} gid={self.mail_gid} home={d}/home/%u
}}

imap_max_line_length = 2M
mail_max_userip_connections = 50
protocol imap {{
  mail_max_userip_connections = 50
  # COMPRESS=DEFLATE (RFC 4978) for tests/integration/test_link.py
  mail_plugins = $mail_plugins zlib imap_zlib
}}
protocol pop3 {{
  mail_max_userip_connections = 50
  pop3_uidl_format = %08Xu%08Xv
}}

service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
{chroot}  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
# No auth penalty: otherwise every failed login from 127.0.0.1 (wrong-password
# tests) delays all following logins by up to 15 s.
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service ipc {{
{chroot}}}
service imap {{
  process_limit = 256
}}
service pop3 {{
  process_limit = 256
}}

# ---- extra_config ----
{self.extra_config}
"""
        self.conf.write_text(conf)

    # ----------------------------------------------------------------- users
    def new_user(self, prefix: str = "u", password: str | None = None) -> MailUser:
        """Add a fresh user (empty mailbox) to the passwd-file and return it."""
        name = f"{prefix}{next(self._counter)}{secrets.token_hex(3)}"
        user = MailUser(name, password or secrets.token_urlsafe(12).replace(":", "_"))
        self.users[name] = user
        home = self.dir / "home" / name
        home.mkdir(exist_ok=True)
        os.chown(home, self.mail_uid, self.mail_gid)
        # One passwd-file per user (args = passwd.d/%u).  A single shared file
        # does NOT work reliably: Dovecot 2.3's passwd-file driver stat()s the
        # file at most once per second (last_sync_time == ioloop_time), so a
        # user added in the same second as an earlier lookup stays "unknown
        # user" for up to a second -- and each failed login then costs the
        # 2 s auth_failure_delay.  A brand-new file path is opened on its first
        # lookup, so the user is visible at once.  Written atomically.
        path = self.passwd_dir / name
        tmp = self.passwd_dir / f".{name}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{user.password}::::::\n")
        self._make_auth_readable(tmp)
        os.replace(tmp, path)
        return user

    # --------------------------------------------------------------- clients
    def ssl_context(self, cafile: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(cafile or self.cafile))

    def imap(self, user: MailUser | None = None, *, tls: bool = True,
             cafile: Path | None = None, login: tuple[str, str] | None = None,
             timeout: float = 30) -> imapclient.IMAPClient:
        """A logged-in IMAPClient (IMAPS by default; ``tls=False``: plain port 143-style).

        The caller closes it (``logout()`` or use it as a context manager).
        ``normalise_times`` is off, so INTERNALDATEs are timezone-aware.
        """
        if tls:
            c = imapclient.IMAPClient(self.host, port=self.imaps_port, ssl=True,
                                      ssl_context=self.ssl_context(cafile), timeout=timeout)
        else:
            c = imapclient.IMAPClient(self.host, port=self.imap_port, ssl=False,
                                      timeout=timeout)
        c.normalise_times = False
        if login is None:
            assert user is not None
            login = (user.name, user.password)
        try:
            c.login(*login)
        except Exception:
            with contextlib.suppress(Exception):
                c.shutdown()
            raise
        return c

    @contextlib.contextmanager
    def session(self, user: MailUser) -> Iterator[imapclient.IMAPClient]:
        c = self.imap(user)
        try:
            yield c
        finally:
            with contextlib.suppress(Exception):
                c.logout()

    def pop3(self, user: MailUser, *, tls: bool = True) -> poplib.POP3:  # noqa: F821
        import poplib

        if tls:
            p: poplib.POP3 = poplib.POP3_SSL(self.host, self.pop3s_port,
                                             context=self.ssl_context(), timeout=30)
        else:
            p = poplib.POP3(self.host, self.pop3_port, timeout=30)
        p.user(user.name)
        p.pass_(user.password)
        return p

    # ------------------------------------------------------- mailbox helpers
    def create_folder(self, user: MailUser, name: str, *,
                      client: imapclient.IMAPClient | None = None) -> None:
        """Create (if missing) and subscribe *name* and its parents ("/" hierarchy)."""
        with _maybe_session(self, user, client) as c:
            _ensure_folder(c, name)

    def append(self, user: MailUser, folder: str, message: bytes, flags: Iterable[str] = (),
               internaldate: _dt.datetime | None = None, *,
               client: imapclient.IMAPClient | None = None) -> int:
        """APPEND *message* byte-for-byte (no line-ending rewriting); return its UID.

        Creates the folder if missing.  Raises DovecotError if the server refuses.
        """
        with _maybe_session(self, user, client) as c:
            _ensure_folder(c, folder)
            return raw_append(c, folder, message, flags, internaldate)

    def write_maildir_file(self, user: MailUser, folder: str, message: bytes,
                           flags: str = "", internaldate: _dt.datetime | None = None) -> Path:
        """Drop *message* straight into the user's Maildir++ (for what APPEND refuses).

        *flags* are Maildir info letters ("S" seen, "R" answered, "F" flagged,
        "D" draft, "T" deleted).  The folder is created over IMAP first if needed,
        the file is owned by the mail user, then ``doveadm force-resync`` makes
        Dovecot pick it up.  Returns the file's path.
        """
        if folder.upper() != "INBOX":
            self.create_folder(user, folder)
        else:
            with self.session(user) as c:
                c.select_folder("INBOX", readonly=True)  # makes sure the Maildir exists
        fdir = self.folder_path(user, folder)
        if not (fdir / "cur").is_dir():
            raise DovecotError(f"expected Maildir folder at {fdir}")
        now = time.time()
        base = f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{next(self._counter)}" \
               f".archiver-test"
        info = ":2," + "".join(sorted(set(flags)))
        tmp = fdir / "tmp" / base
        tmp.write_bytes(message)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        if internaldate is not None:
            ts = internaldate.timestamp()
            os.utime(tmp, (ts, ts))
        dest = fdir / "cur" / (base + info)
        os.rename(tmp, dest)
        self.doveadm("force-resync", "-u", user.name, folder)
        return dest

    def set_flags(self, user: MailUser, folder: str, uid: int, flags: Iterable[str]) -> None:
        """Replace the flags of message *uid* (STORE FLAGS)."""
        with self.session(user) as c:
            c.select_folder(folder)
            c.set_flags([uid], list(flags), silent=True)

    def expunge(self, user: MailUser, folder: str, uid: int) -> None:
        """Mark *uid* \\Deleted and UID EXPUNGE just that message."""
        with self.session(user) as c:
            c.select_folder(folder)
            c.add_flags([uid], [imapclient.DELETED], silent=True)
            c.uid_expunge([uid])

    def delete_folder(self, user: MailUser, folder: str) -> None:
        with self.session(user) as c:
            with contextlib.suppress(imapclient.exceptions.IMAPClientError):
                c.unsubscribe_folder(folder)
            c.delete_folder(folder)

    def rename_folder(self, user: MailUser, old: str, new: str) -> None:
        with self.session(user) as c:
            c.rename_folder(old, new)

    def uidvalidity(self, user: MailUser, folder: str) -> int:
        with self.session(user) as c:
            return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def bump_uidvalidity(self, user: MailUser, folder: str) -> int:
        """Give *folder* a new UIDVALIDITY, keeping messages (and their UIDs) as they are.

        Uses ``doveadm mailbox update --uid-validity``, which rewrites the value
        in the index and dovecot-uidlist.  Returns the new UIDVALIDITY.
        """
        old = self.uidvalidity(user, folder)
        new = max(old + 1, int(time.time()))
        if new == old:
            new += 1
        self.doveadm("mailbox", "update", "-u", user.name, "--uid-validity", str(new), folder)
        got = self.uidvalidity(user, folder)
        if got != new:
            raise DovecotError(f"UIDVALIDITY of {folder!r} is {got}, wanted {new}")
        return new

    def renumber(self, user: MailUser, folder: str, new_uid: dict[int, int]) -> None:
        """Give messages of *folder* other UIDs under the SAME UIDVALIDITY (RFC 3501 forbids it;
        Courier-IMAP does it), as a server that lost its UID list would.

        *new_uid* maps a current UID to the UID it gets (others keep theirs).  Rewrites
        the folder's ``dovecot-uidlist`` (UIDVALIDITY kept, the next UID moved past every
        UID) and deletes its ``dovecot.index*``, so Dovecot re-reads the list on the next
        EXAMINE (no session may hold the folder open meanwhile).  Flags stay with the
        messages (they live in the Maildir file names).
        """
        d = self.folder_path(user, folder)
        lines = (d / "dovecot-uidlist").read_text().splitlines()
        present = {p.name.split(":", 1)[0] for sub in ("cur", "new") for p in (d / sub).iterdir()}
        # Lines of expunged messages linger until Dovecot compacts the list: leave them out.
        head, rows = lines[0], [ln.split(" ", 1) for ln in lines[1:]
                                if ln.strip() and ln.rsplit(":", 1)[-1] in present]
        renamed = sorted((new_uid.get(int(uid), int(uid)), rest) for uid, rest in rows)
        uids = [uid for uid, _ in renamed]
        if len(set(uids)) != len(uids):
            raise DovecotError(f"renumber {folder!r}: two messages would share a UID")
        nxt = int(m.group(1)) if (m := re.search(r" N(\d+)", head)) else 1
        head = re.sub(r" N\d+", f" N{max(nxt, *uids) + len(uids) + 1}", head)
        (d / "dovecot-uidlist").write_text("\n".join(
            [head, *(f"{uid} {rest}" for uid, rest in renamed)]) + "\n")
        for p in d.glob("dovecot.index*"):
            p.unlink()

    def rotate_uids(self, user: MailUser, folder: str) -> dict[int, int]:
        """Each UID of *folder* now names the message the next UID named (the first
        message takes the last UID), same UIDVALIDITY; returns old UID -> new UID."""
        with self.session(user) as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(int(u) for u in c.search(["ALL"]))
        mapping = {old: new for old, new in zip(uids[1:] + uids[:1], uids)}
        self.renumber(user, folder, mapping)
        return mapping

    def list_folders(self, user: MailUser, *, selectable_only: bool = True) -> list[str]:
        with self.session(user) as c:
            return _list(c, selectable_only)

    def fetch_all(self, user: MailUser) -> dict[str, list[Message]]:
        """Every folder's messages as Dovecot serves them, read with EXAMINE.

        ``{folder: [(uid, BODY[] bytes, flags without \\Recent, INTERNALDATE), ...]}``
        sorted by UID; empty folders map to [].  Flags are str; the INTERNALDATE is
        timezone-aware.
        """
        out: dict[str, list[Message]] = {}
        with self.session(user) as c:
            for name in _list(c, True):
                info = c.select_folder(name, readonly=True)
                msgs: list[Message] = []
                uids = c.search(["ALL"]) if int(info.get(b"EXISTS", 0)) else []
                if uids:
                    resp = c.fetch(uids, ["UID", "FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
                    for uid, d in sorted(resp.items()):
                        msgs.append((int(uid), bytes(d[b"BODY[]"]),
                                     _flags(d[b"FLAGS"]), d[b"INTERNALDATE"]))
                out[name] = sorted(msgs, key=lambda m: m[0])
                c.unselect_folder() if c.has_capability("UNSELECT") else c.close_folder()
        return out

    def fingerprint(self, user: MailUser) -> str:
        """sha256 over sorted (mailbox, uidvalidity) and (mailbox, uid, flags-\\Recent).

        Read-only (LIST + EXAMINE + FETCH FLAGS): calling it changes nothing.
        Any change of flags, message set, folder set or UIDVALIDITY changes it.
        """
        rows: list[str] = []
        with self.session(user) as c:
            for name in _list(c, True):
                info = c.select_folder(name, readonly=True)
                rows.append(f"M\t{name}\t{int(info[b'UIDVALIDITY'])}")
                uids = c.search(["ALL"]) if int(info.get(b"EXISTS", 0)) else []
                if uids:
                    for uid, d in c.fetch(uids, ["FLAGS"]).items():
                        fl = " ".join(sorted(_flags(d[b"FLAGS"])))
                        rows.append(f"U\t{name}\t{int(uid)}\t{fl}")
                c.close_folder()
        return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c <conf> ARGS``; returns the CompletedProcess (text)."""
        r = subprocess.run([str(DOVEADM), "-c", str(self.conf), *args],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({r.returncode}): "
                               f"{r.stderr.strip()}")
        return r


# ---------------------------------------------------------------- internals
def _name(user: MailUser | str) -> str:
    return user if isinstance(user, str) else user.name


def _flags(raw: Sequence[bytes | str]) -> set[str]:
    out = set()
    for f in raw:
        s = f.decode() if isinstance(f, bytes) else f
        if s != "\\Recent":
            out.add(s)
    return out


def _list(c: imapclient.IMAPClient, selectable_only: bool) -> list[str]:
    names = []
    for flags, _delim, name in c.list_folders():
        if selectable_only and any(f.lower() == b"\\noselect" for f in flags):
            continue
        names.append(name)
    return sorted(names)


def _ensure_folder(c: imapclient.IMAPClient, name: str) -> None:
    if name.upper() == "INBOX":
        return
    parts = name.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if not c.folder_exists(sub):
            c.create_folder(sub)
        c.subscribe_folder(sub)


@contextlib.contextmanager
def _maybe_session(server: DovecotServer, user: MailUser,
                   client: imapclient.IMAPClient | None) -> Iterator[imapclient.IMAPClient]:
    if client is not None:
        yield client
    else:
        with server.session(user) as c:
            yield c


_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.I)


def raw_append(c: imapclient.IMAPClient, folder: str, message: bytes,
               flags: Iterable[str] = (), internaldate: _dt.datetime | None = None) -> int:
    """APPEND with the message sent as an untouched literal; returns the APPENDUID UID.

    imaplib.IMAP4.append (used by IMAPClient.append) rewrites every bare CR or
    LF to CRLF before sending, which would hide exactly the bytes the corpus
    is about; IMAPClient._raw_command sends the literal as-is.
    """
    args: list[bytes] = [c._normalise_folder(folder)]
    args.append(("(" + " ".join(flags) + ")").encode())
    if internaldate is not None:
        if internaldate.tzinfo is None:
            raise ValueError("internaldate must be timezone-aware")
        args.append(('"' + imapclient.imapclient.datetime_to_INTERNALDATE(internaldate) + '"')
                    .encode())
    args.append(_literal(message))
    typ, data = c._raw_command(b"APPEND", args, uid=False)
    text = b" ".join(x for x in data if isinstance(x, bytes))
    if typ != "OK":
        raise DovecotError(f"APPEND to {folder!r} refused: {typ} {text!r}")
    m = _APPENDUID.search(text)
    if not m:
        raise DovecotError(f"no APPENDUID in APPEND response {text!r}")
    return int(m.group(2))
