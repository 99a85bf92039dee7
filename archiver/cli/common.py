"""What several commands share: option sets, logging, and opening a source or a target.

One place for the source/target/password setup, so ``backup``, ``migrate``,
``restore`` and ``verify --repair`` cannot drift apart (``migrate`` once
lacked ``--plaintext`` and read POP3 without ``--allow-seen``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import click

from archiver.i18n import _

Decorator = Callable[[Any], Any]


def err(text: str) -> None:
    """One line on stderr (stdout is kept for --json and listings)."""
    click.echo(text, err=True)


def apply_options(options: list[Decorator]) -> Decorator:
    """One decorator that adds ``options`` in the order given (as they appear in --help)."""

    def decorate(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


class _ConsoleHandler(logging.Handler):
    """Log records on stderr through the console, so they appear above the bar."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.line(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def _informative(record: logging.LogRecord) -> bool:
    """``-v``: archiver's own notes (INFO and up); other libraries' only from WARNING."""
    return record.name.startswith("archiver") or record.levelno >= logging.WARNING


def _not_progress(record: logging.LogRecord) -> bool:
    """The progress prints its folder lines itself (above the bar); logged for --log only."""
    return record.name != "archiver.progress"


class Logging:
    """Attach log handlers for one command and remove them afterwards (no global leftovers).

    ``-v`` shows archiver's informative notes (INFO) on stderr; the folder lines
    come from the progress (see :meth:`progress`).  ``--debug`` (the group
    option, or ``$ARCHIVER_DEBUG``) adds the protocol trace, imaplib's and
    imapclient's lines with the LOGIN password redacted by imapclient.
    ``--log FILE`` always gets everything -- the notes and the full trace --
    as it did before ``-v`` was split from the trace: a log file is for a bug
    report.
    """

    def __init__(self, verbose: bool, log_file: Optional[Path],
                 debug: Optional[bool] = None) -> None:
        from archiver.progress import Console

        self.verbose = verbose
        self.debug = _debug_asked() if debug is None else debug
        self.console = Console()
        self.handlers: list[logging.Handler] = []
        if log_file is not None:
            try:
                handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(_("cannot write {file}: {reason}").format(
                    file=log_file, reason=exc.strerror), param_hint="--log") from None
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            handler.setLevel(logging.DEBUG)
            self.handlers.append(handler)
        if verbose or self.debug:
            shown = _ConsoleHandler(self.console)
            shown.addFilter(_not_progress)
            if self.debug:
                shown.setLevel(logging.DEBUG)
            else:
                shown.setLevel(logging.INFO)
                shown.addFilter(_informative)
            self.handlers.append(shown)
        self._level = logging.getLogger().level

    @property
    def trace(self) -> bool:
        """Is anyone listening to the protocol trace (--debug, --log)?"""
        return self.debug or any(isinstance(h, logging.FileHandler) for h in self.handlers)

    def progress(self, quiet: bool) -> Any:
        """The run's progress on this console: a bar on a terminal, lines elsewhere."""
        from archiver.progress import terminal_progress

        return terminal_progress(self.console, quiet, verbose=self.verbose or self.debug)

    def __enter__(self) -> Logging:
        root = logging.getLogger()
        if self.handlers:
            root.setLevel(logging.DEBUG if self.trace else logging.INFO)
        for h in self.handlers:
            root.addHandler(h)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(self._level)


def _debug_asked() -> bool:
    """``archiver --debug …`` (or $ARCHIVER_DEBUG): the group keeps it in the context."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(obj.get("debug")) if isinstance(obj, dict) else False


# ---------------------------------------------------------------- option sets

source_options = apply_options([
    click.option("--user", "-u", help="Login name (overrides the one in SOURCE)."),
    click.option("--password-file", type=click.Path(path_type=Path),
                 help="Read the password from the first line of FILE (else $ARCHIVER_PASSWORD,"
                      " else a prompt)."),
    click.option("--master-user", metavar="NAME",
                 help="Log in as administrator NAME for the mailbox user of SOURCE (Dovecot "
                      "master user: USER*NAME); the user's own password is not needed, and "
                      "the archive stays the user's."),
    click.option("--master-separator", default="*", show_default=True, metavar="SEP",
                 help="What joins user and admin in the master login (the server's "
                      "auth_master_user_separator)."),
    click.option("--master-login", type=click.Choice(["separator", "authzid"]),
                 default="separator", show_default=True, metavar="MODE",
                 help="How the admin logs in: separator (as USER*NAME) or authzid (SASL PLAIN "
                      "with the user as authorization identity, RFC 4616)."),
    click.option("--master-password-file", type=click.Path(path_type=Path),
                 help="Read the admin's password from the first line of FILE (else "
                      "$ARCHIVER_MASTER_PASSWORD, else a prompt)."),
    click.option("--cafile", type=click.Path(path_type=Path),
                 help="Trust this CA certificate (PEM) for the server's TLS certificate."),
    click.option("--insecure", is_flag=True,
                 help="Do not verify the server's certificate (prints a warning)."),
    click.option("--plaintext", is_flag=True,
                 help="Allow imap:// (pop3://) without STARTTLS (STLS): the password "
                      "travels unencrypted."),
    click.option("--allow-seen", is_flag=True,
                 help="POP3 only: if the server has no TOP, read with RETR although that marks "
                      "messages read on the server."),
    click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0,
                 show_default=True, help="Seconds to wait for the server on any operation."),
    click.option("--connections", default="auto", show_default=True, metavar="N|auto",
                 callback=lambda ctx, param, value: _connections(value),
                 help="IMAP connections fetching folders side by side (1-8; migrate: also "
                      "uploading, on the target); auto: 3 over a network link with a "
                      "noticeable round trip, 1 on a LAN or loopback."),
    click.option("--compress", type=click.Choice(["auto", "on", "off"]), default="auto",
                 show_default=True,
                 help="IMAP COMPRESS=DEFLATE when the server offers it; auto: only over a "
                      "link with a noticeable round trip."),
])


def _connections(value: str) -> int:
    """``--connections``: 0 stands for auto."""
    if value.strip().lower() == "auto":
        return 0
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 1 <= n <= 8:
        raise click.BadParameter(_("{value!r} is not a number from 1 to 8 or 'auto'").format(
                                   value=value))
    return n

target_connections_option = click.option(
    "--connections", default="auto", show_default=True, metavar="N|auto",
    callback=lambda ctx, param, value: _connections(value),
    help="Target connections uploading folders side by side (1-8); auto: 3 over a network "
         "link with a noticeable round trip, 1 on a LAN or loopback.")

target_options = apply_options([
    click.option("--target-user", help="Login on the target (default: the archive's "
                                       "user; ecc-new adds @mail.ecc.u-tokyo.ac.jp)."),
    click.option("--target-password-file", type=click.Path(path_type=Path),
                 help="Target password from the first line of FILE (else "
                      "$ARCHIVER_TARGET_PASSWORD, else a prompt)."),
    click.option("--target-cafile", type=click.Path(path_type=Path),
                 help="Trust this CA certificate (PEM) for the target's certificate."),
    click.option("--target-insecure", is_flag=True,
                 help="Do not verify the target's certificate (prints a warning)."),
    click.option("--prefix", default="", metavar="FOLDER/",
                 help="Put every folder under this target folder (e.g. 'old-mail/')."),
    click.option("--map", "maps", multiple=True, metavar="OLD=NEW",
                 help="Restore folder OLD (and its children) as NEW; repeatable."),
    click.option("--special-use", is_flag=True,
                 help="Put Sent/Drafts/Trash/Junk/Archive into the target's special "
                      "folders (SPECIAL-USE)."),
    click.option("--include-deleted", is_flag=True,
                 help="Also upload messages flagged \\Deleted (with the flag)."),
])

folder_options = apply_options([
    click.option("--folder", "include", multiple=True, metavar="GLOB",
                 help="Only folders matching GLOB (decoded name, '/' between levels; children "
                      "included); repeatable."),
    click.option("--exclude", multiple=True, metavar="GLOB",
                 help="Skip folders matching GLOB; repeatable."),
])

new_archive_options = apply_options([
    click.option("--portable-names", is_flag=True,
                 help="Name message files with ';2,' instead of ':2,' even where DEST allows "
                      "':' (for an archive that will be copied to Windows or an exFAT stick); "
                      "only for a new DEST."),
    click.option("--no-space-check", is_flag=True,
                 help="Start even if the mail not yet archived seems not to fit on DEST."),
])

namespace_option = click.option(
    "--all-namespaces", is_flag=True,
    help="Also archive folders of other users' and shared namespaces (under #other/ and "
         "#shared/); by default only your own folders.")

verbose_option = click.option(
    "--verbose", "-v", is_flag=True,
    help="A line per folder and archiver's notes on stderr (the protocol trace is "
         "'archiver --debug').")

# made here, when common is imported (before a run switches click's own words to
# the chosen language), so the metavar stays PATH in every command's help
log_option = click.option(
    "--log", "log_file", type=click.Path(path_type=Path),
    help="Write the notes and the full protocol trace (passwords redacted) to FILE.")

output_options = apply_options([
    click.option("--quiet", "-q", is_flag=True,
                 help="No progress (bar or periodic lines) and no summary."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
    verbose_option,
    log_option,
])


# ---------------------------------------------------------------- sources and targets


@dataclass(frozen=True)
class SourceArgs:
    """The source options as the commands receive them."""

    spec: str
    user: Optional[str] = None
    password_file: Optional[Path] = None
    cafile: Optional[Path] = None
    insecure: bool = False
    plaintext: bool = False
    allow_seen: bool = False
    timeout: float = 60.0
    compress: str = "auto"
    connections: int = 0  # 0: auto
    master_user: Optional[str] = None
    master_separator: str = "*"
    master_login: str = "separator"
    master_password_file: Optional[Path] = None

    @classmethod
    def from_params(cls, spec: str, params: dict[str, Any]) -> SourceArgs:
        separator = params.get("master_separator")
        return cls(spec, params["user"], params["password_file"], params["cafile"],
                   params["insecure"], params["plaintext"], params["allow_seen"],
                   params["timeout"], params.get("compress", "auto"),
                   params.get("connections", 0), params.get("master_user"),
                   "*" if separator is None else separator,  # "" is refused by master()
                   params.get("master_login") or "separator",
                   params.get("master_password_file"))

    def master(self) -> Optional[Any]:
        """The admin login asked for (``--master-user``), checked; None without one."""
        from archiver.account import SOURCE_OPTIONS as opts
        from archiver.account import MasterLogin
        from archiver.errors import UsageError

        if not self.master_separator:
            raise UsageError(_("{option} is empty: give the server's master user separator "
                               "(e.g. '*')").format(option=opts.master_separator))
        if self.master_user is None:
            for given, option in ((self.master_password_file, opts.master_password_file),
                                  (self.master_login != "separator" or None, "--master-login")):
                if given is not None:
                    raise UsageError(_("{option} is for an admin login: add {master} NAME "
                                       "(the admin's name)").format(option=option,
                                                                   master=opts.master_user))
            return None
        name = self.master_user.strip()
        if not name or self.master_separator in name:
            raise UsageError(_("'{name}' is not an admin name for {option}: give the admin's "
                               "login name alone").format(name=self.master_user,
                                                          option=opts.master_user))
        if self.password_file is not None:
            raise UsageError(_("{option} is the user's own password, not needed with {master}: "
                               "give the admin's password with {master_file} (or "
                               "${master_env})").format(
                option=opts.password_file, master=opts.master_user,
                master_file=opts.master_password_file, master_env=opts.master_password_env))
        return MasterLogin(name, self.master_separator, self.master_login)


def shout(line: str) -> None:
    """Show a server's [ALERT] at once (RFC 3501 7.1: it MUST reach the user), even --quiet."""
    err(_("archiver: {line}").format(line=line))


def show_alerts(progress: Any, *sessions: Any) -> None:
    """From now on, show the sessions' alerts above the progress bar."""
    for session in sessions:
        watch = getattr(session, "alert_watch", None)
        if watch is not None:
            watch.on_alert = lambda line: progress.say(f"archiver: {line}")


def print_notes(notes: list[str], prefix: Optional[str] = None, *sessions: Any) -> None:
    """A summary's notes on stderr, less the alerts already shown when they came;
    ``prefix`` is already translated (default: "note")."""
    shown = {n for s in sessions if hasattr(s, "alert_notes") for n in s.alert_notes()}
    label = _("note") if prefix is None else prefix
    for note in notes:
        if note not in shown:
            err(_("{prefix}: {note}").format(prefix=label, note=note))


def ask_user(spec: str, option: str, prompt: Optional[str] = None) -> str:
    """Prompt for the login name -- on a terminal only.

    Without one (cron, a pipe, ``</dev/null``) click's prompt would read end of
    file and end as "interrupted" (exit 130); instead say which option gives it.
    """
    from archiver.account import has_terminal
    from archiver.errors import UsageError

    if not has_terminal():
        raise UsageError(_("no user name for {spec} and no terminal to ask on: add {option} "
                           "USER").format(spec=spec, option=option))
    answer: str = click.prompt(prompt or _("User name"), err=True)
    return answer


@contextlib.contextmanager
def naming_the_server(role: str, spec: str) -> Iterator[None]:
    """Put "source SPEC" or "target SPEC" in front of an error while opening that end.

    Migrate talks to two servers: a bare "refused the login" or "certificate
    could not be verified" would leave the user guessing which one.
    """
    from archiver.errors import ArchiverError

    try:
        yield
    except ArchiverError as exc:
        where = (_("source server {spec}") if role == "source"
                 else _("target server {spec}")).format(spec=spec)
        exc.message = _("{where}: {error}").format(where=where, error=exc.message)
        exc.args = (exc.message,)
        raise


def open_source(args: SourceArgs, trace: bool, connect: bool = True,
                before_password: Optional[Callable[[Any], None]] = None) -> Any:
    """Parse SOURCE, read its password and build (and connect) an IMAP or POP3 source.

    Connecting happens before DEST is touched: a typo in the password creates
    no directory.  ``before_password`` gets the parsed endpoint first (backup
    checks DEST and its lock there, so nobody types a password for a run that
    cannot start).
    """
    endpoint = source_endpoint(args)
    for note in endpoint.notes:
        err(_("note: {note}").format(note=note))
    if args.insecure:
        err(_("WARNING: --insecure: the server's certificate is NOT checked; anyone on the "
              "network path could read your mail and password"))
    if before_password is not None:
        before_password(endpoint)
    password = source_password(args, endpoint)
    from archiver.sources import make_source

    src = make_source(endpoint, password, timeout=args.timeout, trace=trace,
                      compress=args.compress, allow_seen=args.allow_seen, on_alert=shout)
    if connect:
        src.connect()
    return src


def source_endpoint(args: SourceArgs) -> Any:
    """SOURCE parsed with its options (user, TLS, admin login), not yet connected."""
    from archiver.account import SOURCE_OPTIONS, TLSOptions, parse_endpoint

    tls = TLSOptions(cafile=args.cafile, insecure=args.insecure, plaintext=args.plaintext)
    master = args.master()
    return parse_endpoint(args.spec, user=args.user, tls=tls,
                          ask_user=lambda: ask_user(args.spec, SOURCE_OPTIONS.user),
                          master=master)


def source_password(args: SourceArgs, endpoint: Any) -> str:
    """The password for SOURCE's login: the admin's with ``--master-user``
    (``--master-password-file``, ``$ARCHIVER_MASTER_PASSWORD``, a prompt; the
    user's own ``$ARCHIVER_PASSWORD`` is not looked at), else the user's."""
    from dataclasses import replace

    from archiver.account import SOURCE_OPTIONS, read_password

    prompt = lambda p: click.prompt(p, hide_input=True, err=True)  # noqa: E731
    master = endpoint.master
    if master is not None and not master.from_user:
        admin = replace(SOURCE_OPTIONS, password_file=SOURCE_OPTIONS.master_password_file,
                        password_env=SOURCE_OPTIONS.master_password_env)
        return read_password(args.master_password_file, admin, prompt,
                             _("admin {name}").format(name=master.name))
    what = endpoint.display()
    if master is not None:  # alice*admin written as the user: the admin's password
        what = _("admin {name} ({where})").format(name=master.name, where=what)
    return read_password(args.password_file, SOURCE_OPTIONS, prompt, what)


def source_identity(src: Any) -> dict[str, str]:
    """What ``archive.json`` records as the account an archive belongs to."""
    return endpoint_identity(src.endpoint)


def endpoint_identity(ep: Any) -> dict[str, str]:
    """:func:`source_identity` before connecting (from the parsed endpoint)."""
    return {"protocol": ep.protocol, "host": ep.host, "user": ep.user}


def parse_maps(maps: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from archiver.errors import UsageError

    out = []
    for item in maps:
        old, sep, new = item.partition("=")
        if not sep or not old.strip("/") or not new.strip("/"):
            raise UsageError(_("--map '{item}' is not OLD=NEW (e.g. --map Sent=送信済み)").format(
                               item=item))
        out.append((old, new))
    return tuple(out)


def open_target(target: str, default_user: Optional[str], target_user: Optional[str],
                password_file: Optional[Path], cafile: Optional[Path], insecure: bool,
                timeout: float, trace: bool) -> Any:
    """Parse TARGET, read its password, connect and log in; returns an ImapTarget."""
    from archiver.account import (
        PRESETS,
        TARGET_OPTIONS,
        TLSOptions,
        parse_endpoint,
        read_password,
    )
    from archiver.errors import UsageError
    from archiver.restore.target import ImapTarget

    user = target_user
    if user is None and target in PRESETS:
        user = default_user
    endpoint = parse_endpoint(target, user=user, tls=TLSOptions(cafile=cafile, insecure=insecure),
                              ask_user=lambda: default_user or ask_user(
                                  target, TARGET_OPTIONS.user, _("Target user name")),
                              options=TARGET_OPTIONS)
    if endpoint.protocol != "imap":
        raise UsageError(_("'{target}' is not an IMAP server: a restore target is "
                           "imaps://USER@HOST, imap://USER@HOST (STARTTLS) or ecc-new").format(
                           target=target))
    for note in endpoint.notes:
        err(_("note: {note}").format(note=note))
    if insecure:
        err(_("WARNING: --target-insecure: the target's certificate is NOT checked"))
    password = read_password(password_file, TARGET_OPTIONS,
                             lambda p: click.prompt(p, hide_input=True, err=True),
                             endpoint.display())
    sink = ImapTarget(endpoint, password, timeout=timeout, trace=trace)
    sink.alert_watch.on_alert = shout
    sink.connect()
    return sink


def require_index(archive: Any, dest: Path) -> None:
    """A missing index makes an archive look empty: say so, and how to rebuild it."""
    from archiver.errors import UsageError

    if not archive.has_index():
        raise UsageError(_("{dest} has no index ({index_path} is missing): 'archiver reindex "
                           "{dest}' rebuilds it from the message files").format(
                           dest=dest, index_path=archive.index_path))


def warn_skipped(archive: Any) -> None:
    """Say once (stderr) that the index held records that made no sense, and the fix."""
    note = archive.skipped_note()
    if note:
        err(_("warning: {note}").format(note=note))


def state_dir() -> Path:
    """The user's state directory for archiver (restore journals of read-only archives)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("archiver"))


def progress_for(quiet: bool, as_json: bool = False) -> Any:
    """The progress on stderr (a bar on a terminal, a line every few seconds elsewhere);
    ``--json`` changes nothing here, it keeps stdout to itself."""
    from archiver.progress import Console, terminal_progress

    return terminal_progress(Console(), quiet)
