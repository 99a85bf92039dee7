"""Where to connect and as whom: source URLs, presets, passwords, TLS settings.

Shared by every protocol (IMAP now, POP3 and restore targets later) so the
rules (TLS verified by default, passwords never on the command line) live in
one place.
"""

from __future__ import annotations

import os
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
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


SOURCE_OPTIONS = OptionNames()
TARGET_OPTIONS = OptionNames(user="--target-user", password_file="--target-password-file",
                             password_env="ARCHIVER_TARGET_PASSWORD",
                             cafile="--target-cafile", insecure="--target-insecure",
                             plaintext=None)


@dataclass(frozen=True)
class Endpoint:
    """A parsed SOURCE/TARGET: protocol, host, port and login name."""

    scheme: str  # imaps | imap | pop3s | pop3
    host: str
    port: int
    user: str
    tls: TLSOptions = field(default_factory=TLSOptions)
    notes: tuple[str, ...] = ()
    options: OptionNames = SOURCE_OPTIONS  # what this end's errors tell the user to add

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
) -> Endpoint:
    """Parse ``imaps://USER@HOST[:PORT]`` (or imap/pop3s/pop3) or a preset name.

    ``user`` (``--user``) overrides or supplies the login; with a preset and
    no user, ``ask_user`` is called (a prompt).  A preset's login rule is
    applied and any correction is returned in ``notes`` for the CLI to print.
    ``options`` are the option names this end's errors suggest.
    """
    tls = tls or TLSOptions()
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
