"""What several commands share: option sets, logging, and opening a source or a target.

One place for the source/target/password setup, so ``backup``, ``migrate``,
``restore`` and ``verify --repair`` cannot drift apart (``migrate`` once
lacked ``--plaintext`` and read POP3 without ``--allow-seen``).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import click

PASSWORD_ENV = "ARCHIVER_PASSWORD"
TARGET_PASSWORD_ENV = "ARCHIVER_TARGET_PASSWORD"

Decorator = Callable[[Any], Any]


def err(text: str) -> None:
    """One line on stderr (stdout is kept for --json and listings)."""
    click.echo(text, err=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def apply_options(options: list[Decorator]) -> Decorator:
    """One decorator that adds ``options`` in the order given (as they appear in --help)."""

    def decorate(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


class Logging:
    """Attach log handlers for one command and remove them afterwards (no global leftovers)."""

    def __init__(self, verbose: bool, log_file: Optional[Path]) -> None:
        self.handlers: list[logging.Handler] = []
        if log_file is not None:
            try:
                handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(f"cannot write {log_file}: {exc.strerror}",
                                         param_hint="--log") from None
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            self.handlers.append(handler)
        if verbose:
            self.handlers.append(logging.StreamHandler(sys.stderr))
        self._level = logging.getLogger().level

    @property
    def trace(self) -> bool:
        """Is anyone listening to the protocol trace?"""
        return bool(self.handlers)

    def __enter__(self) -> Logging:
        root = logging.getLogger()
        if self.handlers:
            root.setLevel(logging.DEBUG)
        for h in self.handlers:
            root.addHandler(h)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(self._level)


# ---------------------------------------------------------------- option sets

source_options = apply_options([
    click.option("--user", "-u", help="Login name (overrides the one in SOURCE)."),
    click.option("--password-file", type=click.Path(path_type=Path),
                 help=f"Read the password from the first line of FILE (else ${PASSWORD_ENV},"
                      " else a prompt)."),
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
        raise click.BadParameter(f"{value!r} is not a number from 1 to 8 or 'auto'")
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
                 help=f"Target password from the first line of FILE (else "
                      f"${TARGET_PASSWORD_ENV}, else a prompt)."),
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

namespace_option = click.option(
    "--all-namespaces", is_flag=True,
    help="Also archive folders of other users' and shared namespaces (under #other/ and "
         "#shared/); by default only your own folders.")

output_options = apply_options([
    click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
    click.option("--verbose", "-v", is_flag=True,
                 help="Log what happens (protocol trace without passwords) on stderr."),
    click.option("--log", "log_file", type=click.Path(path_type=Path),
                 help="Write the log (protocol trace without passwords) to FILE."),
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

    @classmethod
    def from_params(cls, spec: str, params: dict[str, Any]) -> SourceArgs:
        return cls(spec, params["user"], params["password_file"], params["cafile"],
                   params["insecure"], params["plaintext"], params["allow_seen"],
                   params["timeout"], params.get("compress", "auto"),
                   params.get("connections", 0))


def shout(line: str) -> None:
    """Show a server's [ALERT] at once (RFC 3501 7.1: it MUST reach the user), even --quiet."""
    err(f"archiver: {line}")


def show_alerts(progress: Any, *sessions: Any) -> None:
    """From now on, show the sessions' alerts above the progress bar."""
    for session in sessions:
        watch = getattr(session, "alert_watch", None)
        if watch is not None:
            watch.on_alert = lambda line: progress.say(f"archiver: {line}")


def print_notes(notes: list[str], prefix: str = "note", *sessions: Any) -> None:
    """A summary's notes on stderr, less the alerts already shown when they came."""
    shown = {n for s in sessions if hasattr(s, "alert_notes") for n in s.alert_notes()}
    for note in notes:
        if note not in shown:
            err(f"{prefix}: {note}")


def open_source(args: SourceArgs, trace: bool, connect: bool = True,
                before_password: Optional[Callable[[Any], None]] = None) -> Any:
    """Parse SOURCE, read its password and build (and connect) an IMAP or POP3 source.

    Connecting happens before DEST is touched: a typo in the password creates
    no directory.  ``before_password`` gets the parsed endpoint first (backup
    checks DEST and its lock there, so nobody types a password for a run that
    cannot start).
    """
    from archiver.account import TLSOptions, parse_endpoint, read_password

    tls = TLSOptions(cafile=args.cafile, insecure=args.insecure, plaintext=args.plaintext)
    endpoint = parse_endpoint(args.spec, user=args.user, tls=tls,
                              ask_user=lambda: click.prompt("User name", err=True))
    for note in endpoint.notes:
        err(f"note: {note}")
    if args.insecure:
        err("WARNING: --insecure: the server's certificate is NOT checked; anyone on the "
            "network path could read your mail and password")
    if before_password is not None:
        before_password(endpoint)
    password = read_password(args.password_file, PASSWORD_ENV,
                             lambda p: click.prompt(p, hide_input=True, err=True),
                             endpoint.display())
    src: Any
    if endpoint.protocol == "pop3":
        from archiver.sources.pop3 import Pop3Source

        src = Pop3Source(endpoint, password, timeout=args.timeout, allow_seen=args.allow_seen)
    else:
        from archiver.sources.imap import ImapSource

        src = ImapSource(endpoint, password, timeout=args.timeout, trace=trace,
                         compress=args.compress)
        src.alert_watch.on_alert = shout
    if connect:
        src.connect()
    return src


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
            raise UsageError(f"--map '{item}' is not OLD=NEW (e.g. --map Sent=送信済み)")
        out.append((old, new))
    return tuple(out)


def open_target(target: str, default_user: Optional[str], target_user: Optional[str],
                password_file: Optional[Path], cafile: Optional[Path], insecure: bool,
                timeout: float, trace: bool) -> Any:
    """Parse TARGET, read its password, connect and log in; returns an ImapTarget."""
    from archiver.account import PRESETS, TLSOptions, parse_endpoint, read_password
    from archiver.errors import UsageError
    from archiver.restore.target import ImapTarget

    user = target_user
    if user is None and target in PRESETS:
        user = default_user
    endpoint = parse_endpoint(target, user=user, tls=TLSOptions(cafile=cafile, insecure=insecure),
                              ask_user=lambda: default_user or click.prompt(
                                  "Target user name", err=True))
    if endpoint.protocol != "imap":
        raise UsageError(f"'{target}' is not an IMAP server: a restore target is "
                         "imaps://USER@HOST, imap://USER@HOST (STARTTLS) or ecc-new")
    for note in endpoint.notes:
        err(f"note: {note}")
    if insecure:
        err("WARNING: --target-insecure: the target's certificate is NOT checked")
    password = read_password(password_file, TARGET_PASSWORD_ENV,
                             lambda p: click.prompt(p, hide_input=True, err=True),
                             endpoint.display())
    sink = ImapTarget(endpoint, password, timeout=timeout, trace=trace)
    sink.alert_watch.on_alert = shout
    sink.connect()
    return sink


def require_index(archive: Any, dest: Path) -> None:
    """A missing index makes an archive look empty: say so, and how to rebuild it."""
    from archiver.errors import UsageError

    if not archive.index_path.exists():
        raise UsageError(f"{dest} has no index ({archive.index_path} is missing): "
                         f"'archiver reindex {dest}' rebuilds it from the message files")


def warn_skipped(archive: Any) -> None:
    """Say once (stderr) that the index held records that made no sense, and the fix."""
    note = archive.skipped_note()
    if note:
        err(f"warning: {note}")


def state_dir() -> Path:
    """The user's state directory for archiver (restore journals of read-only archives)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("archiver"))


def progress_for(quiet: bool, as_json: bool) -> Any:
    """The progress bar when a person watches stderr; notes only otherwise."""
    from archiver.progress import TerminalProgress

    return TerminalProgress(not quiet and not as_json and sys.stderr.isatty(), quiet=quiet)
