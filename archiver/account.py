"""Where to connect and as whom: source URLs, presets, passwords, TLS settings.

Shared by every protocol (IMAP now, POP3 and restore targets later) so the
rules (TLS verified by default, passwords never on the command line) live in
one place.
"""

from __future__ import annotations

import os
import ssl
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import SplitResult, unquote, urlsplit

from archiver.errors import UsageError
from archiver.i18n import _

DEFAULT_PORTS = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}


@dataclass(frozen=True)
class Preset:
    """A named server, so a student types ``ecc-old`` instead of a URL."""

    name: str
    scheme: str
    host: str
    port: int
    domain: Optional[str]  # login is USER@domain; None = bare user name
    description: str


PRESETS = {
    p.name: p
    for p in (
        Preset("ecc-old", "imaps", "old-mail.ecc.u-tokyo.ac.jp", 993, None,
               "old ECCS mail server (IMAP over SSL, bare user name)"),
        Preset("ecc-old-pop", "pop3s", "old-mail.ecc.u-tokyo.ac.jp", 995, None,
               "old ECCS mail server (POP over SSL, bare user name)"),
        Preset("ecc-new", "imaps", "imap.ecc.u-tokyo.ac.jp", 993, "mail.ecc.u-tokyo.ac.jp",
               "new ECCS mail server (IMAP over SSL, USER@mail.ecc.u-tokyo.ac.jp)"),
    )
}


@dataclass(frozen=True)
class TLSOptions:
    cafile: Optional[Path] = None
    insecure: bool = False
    plaintext: bool = False  # allow imap:// / pop3:// without STARTTLS/STLS


@dataclass(frozen=True)
class OptionNames:
    """The command-line options that set one end's login and TLS.

    An error names the option that fixes it *in the command at hand*: the
    target of ``restore`` and ``migrate`` is set with ``--target-cafile``,
    ``--target-user`` ..., so "give its CA with --cafile" would send the user
    to an option that restore rejects.  ``plaintext`` is None where no such
    option exists (the target is always encrypted).
    """

    user: str = "--user"
    password_file: str = "--password-file"
    password_env: str = "ARCHIVER_PASSWORD"
    cafile: str = "--cafile"
    insecure: str = "--insecure"
    plaintext: Optional[str] = "--plaintext"
    timeout: str = "--timeout"
    master_user: Optional[str] = "--master-user"  # None: no admin login on this end
    master_separator: str = "--master-separator"
    master_password_file: str = "--master-password-file"
    master_password_env: str = "ARCHIVER_MASTER_PASSWORD"


SOURCE_OPTIONS = OptionNames()
TARGET_OPTIONS = OptionNames(user="--target-user", password_file="--target-password-file",
                             password_env="ARCHIVER_TARGET_PASSWORD",
                             cafile="--target-cafile", insecure="--target-insecure",
                             plaintext=None, master_user=None)


DEFAULT_MASTER_SEPARATOR = "*"
MASTER_MODES = ("separator", "authzid")


@dataclass(frozen=True)
class MasterLogin:
    """An administrator ("master user") logging in to someone else's mailbox.

    Dovecot's master users (https://doc.dovecot.org/, "Master users") reach
    user ``alice`` either as login name ``alice*admin`` with admin's password
    (``separator``), or with SASL PLAIN whose authorization identity is
    ``alice`` and authentication identity ``admin`` (``authzid``, RFC 4616).
    The mailbox -- and so the archive's identity -- is alice's either way.
    ``from_user`` is True when the master came written into the user name
    (``--user 'alice*admin'``): the password is then read like a user's.
    """

    name: str
    separator: str = DEFAULT_MASTER_SEPARATOR
    mode: str = "separator"  # separator | authzid
    from_user: bool = False

    def login_name(self, user: str) -> str:
        """What goes into LOGIN / USER in separator mode: ``alice*admin``."""
        return f"{user}{self.separator}{self.name}"


@dataclass(frozen=True)
class Endpoint:
    """A parsed SOURCE/TARGET: protocol, host, port and login name.

    ``user`` is always the MAILBOX user (alice), also when an administrator
    logs in for her (``master``): the archive's identity must not depend on
    who opened the mailbox.
    """

    scheme: str  # imaps | imap | pop3s | pop3
    host: str
    port: int
    user: str
    tls: TLSOptions = field(default_factory=TLSOptions)
    notes: tuple[str, ...] = ()
    options: OptionNames = SOURCE_OPTIONS  # what this end's errors tell the user to add
    master: Optional[MasterLogin] = None

    @property
    def login(self) -> str:
        """The name sent in LOGIN / USER (separator mode: ``alice*admin``)."""
        if self.master is not None and self.master.mode == "separator":
            return self.master.login_name(self.user)
        return self.user

    @property
    def implicit_tls(self) -> bool:
        return self.scheme.endswith("s")

    @property
    def protocol(self) -> str:
        return self.scheme.rstrip("s") if self.scheme != "pop3s" else "pop3"

    def display(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}"


def parse_endpoint(
    spec: str,
    user: Optional[str] = None,
    ask_user: Optional[Callable[[], str]] = None,
    tls: Optional[TLSOptions] = None,
    options: OptionNames = SOURCE_OPTIONS,
    master: Optional[MasterLogin] = None,
) -> Endpoint:
    """Parse ``imaps://USER@HOST[:PORT]`` (or imap/pop3s/pop3) or a preset name.

    ``user`` (``--user``) overrides or supplies the login; with a preset and
    no user, ``ask_user`` is called (a prompt).  A preset's login rule is
    applied and any correction is returned in ``notes`` for the CLI to print.
    ``options`` are the option names this end's errors suggest.  ``master``
    (``--master-user``) logs in as an administrator for that user; a user name
    written the Dovecot way, ``alice*admin``, is split into the two as well.
    """
    ep = _parse_endpoint(spec, user, ask_user, tls or TLSOptions(), options)
    return with_master(ep, master)


def with_master(ep: Endpoint, master: Optional[MasterLogin]) -> Endpoint:
    """``ep`` with its administrator login: ``--master-user``, or the one written
    into the user name (``alice*admin``), which becomes user ``alice``."""
    separator = master.separator if master is not None else DEFAULT_MASTER_SEPARATOR
    user, written = split_master(ep.user, separator)
    if master is not None:
        if written is not None:
            raise UsageError(
                _("the user name '{login}' already names an admin after '{sep}': give the "
                  "mailbox user alone ('{user}') with {option} {name}").format(
                    login=ep.user, sep=separator, user=user, option=ep.options.master_user,
                    name=master.name))
        return replace(ep, master=master)
    if written is None:
        return ep
    master = MasterLogin(written, separator, "separator", from_user=True)
    if ep.options.master_user is None:  # a restore target: log in as written, say nothing
        return replace(ep, user=user, master=master)
    note = _("'{login}' is the Dovecot admin (master user) login for mailbox user '{user}': "
             "the archive belongs to '{user}'; next time write {option} {name} with the "
             "mailbox user alone").format(login=ep.user, user=user,
                                          option=ep.options.master_user, name=written)
    return replace(ep, user=user, notes=ep.notes + (note,), master=master)


def split_master(login: str, separator: str = DEFAULT_MASTER_SEPARATOR
                 ) -> tuple[str, Optional[str]]:
    """``alice*admin`` -> (``alice``, ``admin``); a plain name -> (name, None)."""
    if separator and separator in login:
        user, _sep, name = login.partition(separator)
        if user and name:
            return user, name
    return login, None


def same_account(have: dict[str, Any], source: dict[str, str],
                 separator: str = DEFAULT_MASTER_SEPARATOR) -> bool:
    """Is the archive recorded as ``have`` the account ``source`` (host, mailbox user)?

    The host compares without case.  The user compares as the mailbox user:
    an archive that an older archiver recorded under the admin login
    (``alice*admin``) is alice's.
    """
    if str(have.get("host", "")).lower() != str(source.get("host", "")).lower():
        return False
    recorded = str(have.get("user", ""))
    return split_master(recorded, separator)[0] == source.get("user", "")


def _parse_endpoint(spec: str, user: Optional[str], ask_user: Optional[Callable[[], str]],
                    tls: TLSOptions, options: OptionNames) -> Endpoint:
    if spec in PRESETS:
        preset = PRESETS[spec]
        login = user or (ask_user() if ask_user else "")
        if not login:
            raise UsageError(_("{preset} needs a user name: add {option} YOUR_ID").format(
                preset=spec, option=options.user))
        login, notes = _apply_domain_rule(login.strip(), preset)
        return Endpoint(preset.scheme, preset.host, preset.port, login, tls, notes, options)
    if "://" not in spec:
        raise UsageError(
            _("'{spec}' is not a server: use imaps://USER@HOST (or imap://, pop3s://, "
              "pop3://) or a preset ({presets})").format(spec=spec,
                                                      presets=", ".join(sorted(PRESETS))))
    try:
        parts = urlsplit(spec)
    except ValueError as exc:
        raise UsageError(_("'{spec}' is not a valid URL ({reason}): write it as "
                           "imaps://USER@HOST[:PORT]").format(spec=spec, reason=exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UsageError(
            _("unknown protocol '{scheme}://' in '{spec}': use imaps://, imap://, pop3s:// "
              "or pop3://").format(scheme=scheme, spec=spec))
    if parts.password is not None:
        raise UsageError(
            _("a password in the URL would show up in process lists and shell history: "
              "remove it and use {option}, {env} or the prompt").format(
                option=options.password_file, env=options.password_env))
    host = parts.hostname
    if not host:
        raise UsageError(_("no host name in '{spec}': write it as {scheme}://USER@HOST").format(
            spec=spec, scheme=scheme))
    port = _port(spec, scheme, parts)
    login = user or (unquote(parts.username) if parts.username else "")
    if not login and ask_user:
        login = ask_user()
    if not login:
        raise UsageError(_("no user name: write {scheme}://USER@{host} or add {option} "
                           "USER").format(scheme=scheme, host=host, option=options.user))
    return Endpoint(scheme, host, port, login, tls, (), options)


def _port(spec: str, scheme: str, parts: SplitResult) -> int:
    """The URL's port (the scheme's default when none is given), or a one-line error."""
    try:
        port = parts.port
    except ValueError:  # urllib: "Port could not be cast to integer value as '99x'"
        port = 0
    if port is None and not parts.netloc.endswith(":"):
        return DEFAULT_PORTS[scheme]
    if port is None or not 1 <= port <= 65535:
        raise UsageError(
            _("bad port in '{spec}': after the ':' comes a number from 1 to 65535 "
              "(or leave it out for {default}, the usual {scheme} port)").format(
                spec=spec, default=DEFAULT_PORTS[scheme], scheme=scheme))
    return port


def _apply_domain_rule(login: str, preset: Preset) -> tuple[str, tuple[str, ...]]:
    if preset.domain is None and "@" in login:
        bare = login.split("@", 1)[0]
        return bare, (_("{preset} logs in with the bare user name: using '{bare}' instead of "
                        "'{login}'").format(preset=preset.name, bare=bare, login=login),)
    if preset.domain is not None and "@" not in login:
        full = f"{login}@{preset.domain}"
        return full, (_("{preset} logs in with the full address: using '{full}'").format(
            preset=preset.name, full=full),)
    return login, ()


# ---------------------------------------------------------------- passwords


def read_password(
    password_file: Optional[Path],
    options: OptionNames,
    prompt: Optional[Callable[[str], str]],
    what: str,
) -> str:
    """The password file (first line, trailing CR/LF stripped), else the environment
    variable, else the prompt -- which needs a terminal: without one (cron, a
    pipe, ``</dev/null``) the error names the option and variable to use."""
    if password_file is not None:
        try:
            with open(password_file, "rb") as fh:
                line = fh.readline()
        except OSError as exc:
            raise UsageError(
                _("cannot read password file {file}: {reason}; check the path given to "
                  "{option}").format(file=password_file, reason=exc.strerror,
                                     option=options.password_file)
            ) from None
        pw = line.rstrip(b"\r\n").decode("utf-8", errors="surrogateescape")
        if not pw:
            raise UsageError(_("password file {file} is empty: put the password on its "
                               "first line").format(file=password_file))
        return pw
    env = os.environ.get(options.password_env)
    if env:
        return env
    if prompt is None or not has_terminal():
        raise UsageError(
            _("no password for {what} and no terminal to ask on: use {option} FILE or set "
              "{env}").format(what=what, option=options.password_file, env=options.password_env)
        )
    pw = prompt(_("Password for {what}").format(what=what))
    if not pw:
        raise UsageError(_("no password given for {what}").format(what=what))
    return pw


def has_terminal() -> bool:
    """Can we ask the user?  Not when stdin is a file, a pipe or ``/dev/null``."""
    return bool(sys.stdin and sys.stdin.isatty())


# ---------------------------------------------------------------- TLS


def ssl_context(tls: TLSOptions, options: OptionNames = SOURCE_OPTIONS) -> ssl.SSLContext:
    """A verifying client context (system CAs, or ``cafile``); ``insecure`` turns it off."""
    if tls.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if tls.cafile is not None:
        if not Path(tls.cafile).is_file():
            raise UsageError(_("CA file {file} not found: check the path given to "
                               "{option}").format(file=tls.cafile, option=options.cafile))
        try:
            return ssl.create_default_context(cafile=str(tls.cafile))
        except ssl.SSLError as exc:
            raise UsageError(_("CA file {file} is not a PEM certificate ({reason}); give "
                               "{option} a PEM file").format(file=tls.cafile, reason=exc.reason,
                                                             option=options.cafile)) from None
    return ssl.create_default_context()
