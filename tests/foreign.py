"""Real Courier-IMAP 5.0.13 and Cyrus IMAP 3.6.1 servers for the test suite, beside Dovecot.

Nobody knows which IMAP server the old machine runs, so archiver is tested
against these two as well.  Their Debian packages conflict with
``dovecot-imapd``, so they are never installed:

1. :func:`tests.debroot.unpacked_root` asks apt what installing them would add
   on this host, ``apt-get download``\\ s exactly that and ``dpkg -x``\\ es it into
   ``/var/cache/archiver-tests/debs/<server>-<digest>/root`` (only the first
   run downloads).
2. Each server runs inside ``unshare -m`` (a private mount namespace) where a
   generated shell script lays overlay mounts of that tree over ``/etc`` (with
   a writable upper layer in the server directory) and ``/usr`` (read-only),
   mounts a private tmpfs on ``/run``, lays an overlay over ``/dev`` so that
   a tiny syslog catcher can bind ``/dev/log`` (both servers log only to
   syslog; the lines land in ``<dir>/syslog``), runs ``ldconfig`` and starts
   the daemons.  The host's ``/etc``, ``/usr`` and Dovecot never see any of it.
3. Everything else (mail, configuration, certificates) lives in the server
   directory ``/var/tmp/archiver-tests/<random>`` (mail owned by the system
   user ``archiver-test``, as with Dovecot), removed by :meth:`stop`.
   :meth:`stop` ends exactly the processes of that mount namespace.

Root only: mount(2) and the mail user need it.  Real TLS: a throwaway CA
(:attr:`ForeignServer.cafile`) signs a certificate for 127.0.0.1; IMAPS on a
free port (and plain IMAP on another).

Real-server facts the tests pin (tests/integration/test_foreign_servers.py)
----------------------------------------------------------------------------
Courier-IMAP 5.0.13 (Debian 12, authuserdb):

* NAMESPACE ``(("INBOX." ".")) NIL (("#shared." ".")("shared." "."))``; a
  child ``INBOX.Inbox`` (and ``INBOX.Inbox.Sub``) can be created.
* APPEND of a message that does not end in a newline stores it with CRLF added.
* A folder whose Maildir has no ``courierimapuiddb`` yet (mail delivered as
  files, never SELECTed read-write) gets a new UIDVALIDITY on every EXAMINE,
  because a read-only open cannot save the UIDs it handed out:
  :meth:`CourierServer.deliver` makes such a folder.

Cyrus IMAP 3.6.1 (Debian 12 defaults: ``altnamespace: no``,
``unixhierarchysep: no``, sasldb auth):

* NAMESPACE ``(("INBOX." ".")) (("user." ".")) (("" "."))``: another user's
  folder a user may read is listed as ``user.dora.Sent``, a shared folder as
  ``shared.Notices`` (the shared namespace has the empty prefix).
* APPEND stores the bytes as sent (no final CRLF added).
* ``<configdirectory>/msg/motd`` is sent as ``* OK [ALERT] ...`` after LOGIN
  (:meth:`CyrusServer.set_motd`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import imapclient

from tests import debroot
from tests.dovecot import (
    MAIL_SYSTEM_USER,
    ROOT_PARENT,
    MailUser,
    Message,
    _ensure_system_user,
    _flags,
    _free_ports,
    _port_open,
    raw_append,
)


class ForeignUnavailable(RuntimeError):
    """The server cannot run here (not root, no unshare/overlayfs, apt failed)."""


class ForeignError(RuntimeError):
    """The server misbehaved while being started, fed or stopped."""


_SYSLOG = textwrap.dedent('''\
    import os, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sys.argv[1])
    os.chmod(sys.argv[1], 0o666)
    with open(sys.argv[2], "ab", buffering=0) as fh:
        while True:
            fh.write(s.recv(65536).rstrip(b"\\0\\n") + b"\\n")
''')


class ForeignServer:
    """What Courier and Cyrus share: the namespace, the overlays, TLS, users, helpers."""

    name = "foreign"
    packages: tuple[str, ...] = ()
    sep = "."
    host = "127.0.0.1"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.dir = self.base_dir
        self.root = Path()
        self.imap_port = self.imaps_port = 0
        self.users: dict[str, MailUser] = {}
        self.mail_uid = self.mail_gid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._ns = ""
        self._counter = 0

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> ForeignServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cafile(self) -> Path:
        return self.dir / "ssl" / "ca.pem"

    @property
    def syslog(self) -> Path:
        return self.dir / "syslog"

    def start(self) -> ForeignServer:
        if os.geteuid() != 0:
            raise ForeignUnavailable(f"{self.name} runs only as root (mount namespaces)")
        for tool in ("unshare", "nsenter", "setpriv", "apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise ForeignUnavailable(f"{tool} not found")
        try:
            self.root = debroot.unpacked_root(self.name, self.packages)
        except debroot.DebError as e:
            raise ForeignUnavailable(str(e)) from e
        pw = _ensure_system_user(MAIL_SYSTEM_USER)
        self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid
        ROOT_PARENT.mkdir(parents=True, exist_ok=True)
        ROOT_PARENT.chmod(0o755)
        self.dir = ROOT_PARENT / f"{self.name}-{secrets.token_hex(6)}"
        self.dir.mkdir(mode=0o755)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            (self.base_dir / "server").symlink_to(self.dir)
        self._write_certs()
        last = ""
        for _attempt in range(3):
            self.imap_port, self.imaps_port = _free_ports(2)
            self._prepare()
            try:
                self._launch()
                self._ready()
                return self
            except ForeignError as e:  # most likely a port race
                last = str(e)
                self._kill()
        raise ForeignError(f"could not start {self.name}: {last}")

    def _write_certs(self) -> None:
        import trustme

        ssl_dir = self.dir / "ssl"
        ssl_dir.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(ssl_dir / "ca.pem"))
        cert.private_key_pem.write_to_path(str(ssl_dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(ssl_dir / "server.pem"))
        for p in ssl_dir.iterdir():
            os.chown(p, self.mail_uid, self.mail_gid)
            p.chmod(0o600 if p.name.endswith(".key") else 0o644)

    def _prepare(self) -> None:
        """Write the server's configuration for the chosen ports."""
        raise NotImplementedError

    def _script(self) -> str:
        """Shell commands run in the namespace after the mounts; the last one keeps running."""
        raise NotImplementedError

    def _launch(self) -> None:
        d, r = self.dir, self.root
        ov = d / "ov"
        shutil.rmtree(ov, ignore_errors=True)
        for sub in ("etc/u", "etc/w", "dev/u", "dev/w"):
            (ov / sub).mkdir(parents=True)
        (d / "syslogd.py").write_text(_SYSLOG)
        script = d / "start.sh"
        script.write_text(f"""#!/bin/sh
# Generated by tests/foreign.py: runs inside `unshare -m`, nothing here reaches the host.
set -e
mount --make-rprivate /
mount -t overlay overlay -o lowerdir={r}/etc:/etc,upperdir={ov}/etc/u,workdir={ov}/etc/w /etc
mount -t overlay overlay -o lowerdir={r}/usr:/usr /usr
mount -t tmpfs -o mode=755 tmpfs /run
mount -t overlay overlay -o lowerdir=/dev,upperdir={ov}/dev/u,workdir={ov}/dev/w /dev
rm -f /dev/log
{sys.executable} {d}/syslogd.py /dev/log {d}/syslog &
ldconfig
echo "{self.name}:x:{self.mail_uid}:{self.mail_gid}::/nonexistent:/usr/sbin/nologin" >>/etc/passwd
{self._script()}
""")
        with open(d / "server.log", "ab") as log:
            self._proc = subprocess.Popen(["unshare", "-m", "sh", str(script)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ForeignError(f"{self.name} exited ({self._proc.returncode}){self._tail()}")
            with contextlib.suppress(OSError):
                ns = os.readlink(f"/proc/{self._proc.pid}/ns/mnt")
                if ns != os.readlink("/proc/self/ns/mnt"):
                    self._ns = ns
            if self._ns and _port_open(self.imap_port) and _port_open(self.imaps_port):
                return
            time.sleep(0.05)
        raise ForeignError(f"{self.name} did not open ports {self.imap_port}/"
                           f"{self.imaps_port}{self._tail()}")

    def _ready(self) -> None:
        """After the ports are open: whatever the server needs before the first user."""

    def _tail(self) -> str:
        out = ""
        for f in ("server.log", "syslog"):
            with contextlib.suppress(OSError):
                out += f"\n--- {f} ---\n" + "\n".join(
                    (self.dir / f).read_text(errors="replace").splitlines()[-25:])
        return out

    def _namespace_pids(self) -> list[int]:
        if not self._ns:
            return [self._proc.pid] if self._proc and self._proc.poll() is None else []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self._ns:
                        pids.append(int(entry))
        return pids

    def _kill(self) -> None:
        """End every process of the server's mount namespace (daemons fork away from the
        launcher's process group, so the group alone is not enough); SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in self._namespace_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self._proc is not None:
                    self._proc.poll()
                if not self._namespace_pids():
                    break
                time.sleep(0.05)
            else:
                continue
            break
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._proc, self._ns = None, ""

    def stop(self) -> None:
        self._kill()
        if self.dir != self.base_dir and self.dir.exists():
            for f in ("server.log", "syslog"):
                with contextlib.suppress(OSError):
                    shutil.copy(self.dir / f, self.base_dir / f"{self.name}-{f}")
            with contextlib.suppress(OSError):
                (self.base_dir / "server").unlink()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = self.base_dir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ns_run(self, *cmd: str, as_mail_user: bool = False,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run *cmd* inside the server's mount namespace (its /etc, /usr, /run)."""
        if self._proc is None:
            raise ForeignError(f"{self.name} is not running")
        pre = ["nsenter", "-t", str(self._proc.pid), "-m", "--"]
        if as_mail_user:
            pre += ["setpriv", f"--reuid={self.mail_uid}", f"--regid={self.mail_gid}",
                    "--clear-groups"]
        r = subprocess.run([*pre, *cmd], input=stdin, capture_output=True)
        if r.returncode != 0:
            raise ForeignError(f"{' '.join(cmd)} failed ({r.returncode}): "
                               f"{r.stderr.decode(errors='replace')}")
        return r

    # --------------------------------------------------------------- clients
    def _new_name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}{secrets.token_hex(3)}"

    def new_user(self, prefix: str = "u", password: str | None = None) -> MailUser:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def imap(self, user: MailUser, *, timeout: float = 30) -> imapclient.IMAPClient:
        """A logged-in IMAPS client (the caller logs out); INTERNALDATEs timezone-aware."""
        c = imapclient.IMAPClient(self.host, port=self.imaps_port, ssl=True,
                                  ssl_context=self.ssl_context(), timeout=timeout)
        c.normalise_times = False
        try:
            c.login(user.name, user.password)
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

    def folder(self, logical: str) -> str:
        """Server name of a "/"-separated personal folder: ``a/b`` -> ``INBOX.a.b``."""
        if logical.upper() == "INBOX":
            return "INBOX"
        return "INBOX" + self.sep + logical.replace("/", self.sep)

    def create_folder(self, user: MailUser, name: str, *,
                      client: imapclient.IMAPClient | None = None) -> None:
        """Create (if missing) and subscribe the server folder *name* and its parents."""
        with self._maybe(user, client) as c:
            parts = name.split(self.sep)
            for i in range(2, len(parts) + 1):
                sub = self.sep.join(parts[:i])
                if not c.folder_exists(sub):
                    c.create_folder(sub)
                c.subscribe_folder(sub)

    @contextlib.contextmanager
    def _maybe(self, user: MailUser,
               client: imapclient.IMAPClient | None) -> Iterator[imapclient.IMAPClient]:
        if client is not None:
            yield client
        else:
            with self.session(user) as c:
                yield c

    def append(self, user: MailUser, folder: str, message: bytes, flags: Iterable[str] = (),
               internaldate: _dt.datetime | None = None, *,
               client: imapclient.IMAPClient | None = None) -> int:
        """APPEND *message* byte-for-byte to the server folder *folder*; returns its UID."""
        with self._maybe(user, client) as c:
            if folder.upper() != "INBOX" and folder.startswith("INBOX" + self.sep):
                self.create_folder(user, folder, client=c)
            return raw_append(c, folder, message, flags, internaldate)

    def list_folders(self, user: MailUser) -> list[str]:
        with self.session(user) as c:
            return sorted(n for fl, _d, n in c.list_folders()
                          if not any(f.lower() == b"\\noselect" for f in fl))

    def fetch_all(self, user: MailUser) -> dict[str, list[Message]]:
        """Every selectable folder's messages as served, read with EXAMINE (like
        :meth:`tests.dovecot.DovecotServer.fetch_all`): ``{folder: [(uid, bytes, flags
        without \\Recent, INTERNALDATE)]}`` by UID."""
        out: dict[str, list[Message]] = {}
        with self.session(user) as c:
            for name in sorted(n for fl, _d, n in c.list_folders()
                               if not any(f.lower() == b"\\noselect" for f in fl)):
                info = c.select_folder(name, readonly=True)
                msgs: list[Message] = []
                if int(info.get(b"EXISTS", 0)):
                    resp = c.fetch(c.search(["ALL"]), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
                    for uid, d in resp.items():
                        msgs.append((int(uid), bytes(d[b"BODY[]"]), _flags(d[b"FLAGS"]),
                                     d[b"INTERNALDATE"]))
                out[name] = sorted(msgs, key=lambda m: m[0])
                c.close_folder()
        return out

    def uidvalidity(self, user: MailUser, folder: str) -> int:
        with self.session(user) as c:
            return int(c.select_folder(folder, readonly=True)[b"UIDVALIDITY"])


# ======================================================================== Courier
class CourierServer(ForeignServer):
    """Courier-IMAP 5.0.13 with courier-authlib's userdb (``/etc/courier/userdb``)."""

    name = "courier"
    packages = ("courier-imap", "courier-authlib-userdb")

    @property
    def etc(self) -> Path:
        """Bind-mounted on /etc/courier in the namespace: the host can edit it."""
        return self.dir / "etc-courier"

    def home(self, user: MailUser | str) -> Path:
        return self.dir / "home" / (user if isinstance(user, str) else user.name)

    def _prepare(self) -> None:
        if not self.etc.exists():
            shutil.copytree(self.root / "etc" / "courier", self.etc, symlinks=True)
            (self.dir / "home").mkdir(mode=0o755)
            rc = self.etc / "authdaemonrc"
            rc.write_text(re.sub(r"(?m)^authmodulelist=.*$", 'authmodulelist="authuserdb"',
                                 rc.read_text()))
            key = (self.dir / "ssl" / "server.key").read_bytes()
            crt = (self.dir / "ssl" / "server.pem").read_bytes()
            (self.etc / "imapd.pem").write_bytes(key + crt)
            (self.etc / "imapd.pem").chmod(0o600)
            (self.etc / "userdb").write_text("")
            (self.etc / "userdb").chmod(0o600)
            with open(self.etc / "imapd-ssl", "a") as fh:
                # no session cache in /var/lib/courier; no DH file (ECDHE suffices)
                fh.write("\n# tests/foreign.py\nTLS_CACHEFILE=\nTLS_DHPARAMS=\n")

    def _script(self) -> str:
        tcpd = ("couriertcpd -address=127.0.0.1 -maxprocs=100 -maxperip=100 "
                "-nodnslookup -noidentlookup")
        login = "/usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir"
        return f"""mount --bind {self.etc} /etc/courier
mkdir -p /run/courier/authdaemon
set -a
. /etc/courier/imapd
. /etc/courier/imapd-ssl
set +a
makeuserdb
/usr/lib/courier/courier-authlib/authdaemond &
{tcpd} {self.imap_port} {login} &
IMAP_TLS=1 {tcpd} {self.imaps_port} /usr/bin/couriertls -server -tcpd {login} &
wait
"""

    def new_user(self, prefix: str = "u", password: str | None = None) -> MailUser:
        """A fresh userdb user with an empty Maildir (``makeuserdb`` in the namespace)."""
        name = self._new_name(prefix)
        user = MailUser(name, password or secrets.token_urlsafe(12))
        home = self.home(name)
        for sub in ("", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
            (home / sub).mkdir(mode=0o700 if sub else 0o755, exist_ok=True)
            os.chown(home / sub, self.mail_uid, self.mail_gid)
        crypted = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=user.password,
                                 capture_output=True, text=True, check=True).stdout.strip()
        with open(self.etc / "userdb", "a") as fh:
            fh.write(f"{name}\tuid={self.mail_uid}|gid={self.mail_gid}|home={home}"
                     f"|mail={home}/Maildir|systempw={crypted}\n")
        self.ns_run("makeuserdb")
        self.users[name] = user
        return user

    def deliver(self, user: MailUser, folder_dir: str, message: bytes, flags: str = "",
                internaldate: _dt.datetime | None = None) -> Path:
        """Put *message* into the Maildir as a delivery agent would (no IMAP): into
        ``Maildir/<folder_dir>/cur`` (``""`` is INBOX, ``".Lists"`` is INBOX.Lists, made
        if missing, ASCII names only) with Maildir info *flags* ("S", "RS", ...).

        A folder made here has no ``courierimapuiddb``: until someone SELECTs it
        read-write, every EXAMINE hands out a new UIDVALIDITY.
        """
        fdir = self.home(user) / "Maildir" / folder_dir
        for sub in ("", "cur", "new", "tmp"):
            (fdir / sub).mkdir(mode=0o700, exist_ok=True)
            os.chown(fdir / sub, self.mail_uid, self.mail_gid)
        if folder_dir and not (fdir / "maildirfolder").exists():
            (fdir / "maildirfolder").touch()
            os.chown(fdir / "maildirfolder", self.mail_uid, self.mail_gid)
        self._counter += 1
        now = time.time()
        base = f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{self._counter}.archiver-test"
        tmp = fdir / "tmp" / base
        tmp.write_bytes(message)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        if internaldate is not None:
            ts = internaldate.timestamp()
            os.utime(tmp, (ts, ts))
        dest = fdir / "cur" / f"{base}:2,{''.join(sorted(flags))}"
        os.rename(tmp, dest)
        return dest


# ========================================================================== Cyrus
class CyrusServer(ForeignServer):
    """Cyrus IMAP 3.6.1 with sasldb auth, Debian's namespace defaults and an admin."""

    name = "cyrus"
    packages = ("cyrus-imapd", "sasl2-bin")

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self.admin = MailUser("cyrusadmin", secrets.token_urlsafe(12))

    @property
    def config_dir(self) -> Path:
        return self.dir / "conf"

    def _prepare(self) -> None:
        d = self.dir
        for sub in ("conf", "conf/msg", "spool"):
            (d / sub).mkdir(exist_ok=True)
            os.chown(d / sub, self.mail_uid, self.mail_gid)
        (d / "imapd.conf").write_text(f"""# Generated by tests/foreign.py
configdirectory: {d}/conf
partition-default: {d}/spool
defaultpartition: default
proc_path: /run/cyrus/proc
mboxname_lockpath: /run/cyrus/lock
lmtpsocket: /run/cyrus/socket/lmtp
idlesocket: /run/cyrus/socket/idle
notifysocket: /run/cyrus/socket/notify
altnamespace: no
unixhierarchysep: no
admins: {self.admin.name}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {d}/sasldb2
sasl_mech_list: PLAIN LOGIN
tls_server_cert: {d}/ssl/server.pem
tls_server_key: {d}/ssl/server.key
hashimapspool: true
syslog_prefix: cyrus-test
""")
        bin_ = "/usr/lib/cyrus/bin"
        (d / "cyrus.conf").write_text(f"""# Generated by tests/foreign.py
START {{
  recover cmd="{bin_}/ctl_cyrusdb -r"
}}
SERVICES {{
  imap cmd="{bin_}/imapd" listen="127.0.0.1:{self.imap_port}" prefork=0 maxchild=100
  imaps cmd="{bin_}/imapd -s" listen="127.0.0.1:{self.imaps_port}" prefork=0 maxchild=100
}}
EVENTS {{
}}
""")

    def _script(self) -> str:
        d = self.dir
        return f"""cp {d}/imapd.conf /etc/imapd.conf
cp {d}/cyrus.conf /etc/cyrus.conf
echo "cyrus:x:{self.mail_uid}:{self.mail_gid}::/nonexistent:/usr/sbin/nologin" >>/etc/passwd
mkdir -p /run/cyrus/proc /run/cyrus/lock /run/cyrus/socket
chown -R cyrus /run/cyrus
printf '%s' '{self.admin.password}' | saslpasswd2 -p -c -f {d}/sasldb2 {self.admin.name}
chown cyrus {d}/sasldb2
setpriv --reuid=cyrus --regid={self.mail_gid} --clear-groups /usr/lib/cyrus/bin/ctl_cyrusdb -r
exec /usr/lib/cyrus/bin/master -l 32
"""

    def _ready(self) -> None:
        # the ports open before the admin can log in; wait for a real LOGIN
        deadline = time.monotonic() + 20
        while True:
            try:
                self.imap(self.admin, timeout=5).logout()
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    raise ForeignError(f"cyrus admin cannot log in: {e}{self._tail()}") from e
                time.sleep(0.1)

    def new_user(self, prefix: str = "u", password: str | None = None) -> MailUser:
        """A fresh sasldb user whose INBOX (``user.<name>``) the admin creates."""
        name = self._new_name(prefix)
        user = MailUser(name, password or secrets.token_urlsafe(12))
        self.ns_run("saslpasswd2", "-p", "-c", "-f", str(self.dir / "sasldb2"), name,
                    stdin=user.password.encode())
        with self.session(self.admin) as c:
            c.create_folder(f"user.{name}")
        self.users[name] = user
        return user

    def share(self, owner: MailUser, folder: str, reader: MailUser,
              rights: str = "lrs") -> None:
        """Let *reader* see *owner*'s server folder *folder* (``INBOX.x`` for owner is
        ``user.<owner>.x`` for the reader)."""
        with self.session(owner) as c:
            c.setacl(folder, reader.name, rights)

    def shared_folder(self, name: str, messages: Iterable[bytes],
                      readers: Iterable[MailUser]) -> None:
        """A folder of the shared namespace (e.g. ``shared.Notices``), filled by the admin
        and readable by *readers*."""
        with self.session(self.admin) as c:
            parts = name.split(self.sep)
            for i in range(1, len(parts) + 1):
                sub = self.sep.join(parts[:i])
                if not c.folder_exists(sub):
                    c.create_folder(sub)
            c.setacl(name, self.admin.name, "lrswipkxtecda")
            for r in readers:
                c.setacl(name, r.name, "lrs")
            for m in messages:
                raw_append(c, name, m)

    def set_motd(self, text: str | None) -> None:
        """The "message of the day" Cyrus sends as ``* OK [ALERT] text`` after LOGIN."""
        motd = self.config_dir / "msg" / "motd"
        if text is None:
            motd.unlink(missing_ok=True)
        else:
            motd.write_text(text + "\n")
            os.chown(motd, self.mail_uid, self.mail_gid)
