"""Command line: a thin click layer over the library, one module per command.

Commands are loaded lazily (:class:`LazyGroup`): ``import archiver.cli``
imports no offline or restore module, so ``archiver backup`` starts fast and
a rerun that has nothing to do stays well under a second.

:func:`run` is the one place that turns errors into what a user reads: an
:class:`~archiver.errors.ArchiverError` becomes one line and its documented
exit code (README.md, "Exit codes"); anything else -- a bug -- becomes a
short report with exit 70, its traceback saved to a crash file (and shown
with ``--debug``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Optional

import click

from archiver import __version__
from archiver.cli.common import err
from archiver.cli.translated import TranslatedHelp, click_speaks
from archiver.errors import EXIT_INTERRUPTED, EXIT_USAGE, ArchiverError
from archiver.i18n import LANGUAGES, _, set_language, speaking

DEBUG_ENV = "ARCHIVER_DEBUG"

# name -> "module:attribute", in the order --help lists them
COMMANDS = {
    "backup": "archiver.cli.backup:backup",
    "folders": "archiver.cli.folders:folders",
    "check": "archiver.cli.check:check",
    "verify": "archiver.cli.verify:verify",
    "ls": "archiver.cli.ls:ls_command",
    "search": "archiver.cli.search:search",
    "show": "archiver.cli.show:show",
    "export": "archiver.cli.export:export",
    "reindex": "archiver.cli.reindex:reindex",
    "restore": "archiver.cli.restore:restore",
    "migrate": "archiver.cli.migrate:migrate",
    "ui": "archiver.cli.ui:ui",
}


class LazyGroup(TranslatedHelp, click.Group):
    """A group whose commands are imported only when one is run (or --help lists them)."""

    def __init__(self, *args: Any, lazy: Optional[dict[str, str]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy) + [c for c in super().list_commands(ctx) if c not in self.lazy]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in self.lazy:
            module, _, attr = self.lazy[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="archiver",
                      help="Show the version and exit.")
@click.option("--lang", type=click.Choice(LANGUAGES), is_eager=True, expose_value=False,
              callback=lambda ctx, param, value: _use_language(value),
              help="Language of messages and help: en or ja (default: $ARCHIVER_LANG, "
                   "else the locale's language from LANGUAGE, LC_ALL, LC_MESSAGES or LANG).")
@click.option("--debug", is_flag=True,
              help="Show the protocol trace on stderr (passwords redacted) and, on an "
                   "unexpected error, the full traceback (also $ARCHIVER_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Back up a whole IMAP or POP3 mailbox into local files, safely and resumably.

    \b
    Quick start (the old ECCS server, before it is switched off):
      archiver backup ecc-old ~/mail-archive --user YOUR_ID
    """
    if debug and isinstance(ctx.obj, dict):
        ctx.obj["debug"] = True


def _use_language(value: Optional[str]) -> None:
    """``--lang``: eager, so it is in force before any help or error is rendered."""
    if value:
        set_language(value)


def _lang_in(argv: list[str]) -> Optional[str]:
    """The group's ``--lang X`` seen before the command name, for errors click raises
    before it reaches the option (``archiver --lang ja --bogus``)."""
    for i, arg in enumerate(argv):
        if arg in COMMANDS or arg == "--":
            return None
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
    return None


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI and return its exit code: every error becomes a short text on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    with speaking(_lang_in(args)), click_speaks():
        return _run(argv)


def _run(argv: Optional[list[str]]) -> int:
    state: dict[str, Any] = {"debug": bool(os.environ.get(DEBUG_ENV))}
    try:
        cli.main(args=argv, prog_name="archiver", standalone_mode=False, obj=state)
    except click.exceptions.Abort:
        err(_("archiver: interrupted"))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if exc.exit_code == 2 else int(exc.exit_code)
    except ArchiverError as exc:
        template = (_("archiver: stopped: {message}") if exc.exit_code == EXIT_INTERRUPTED
                    else _("archiver: error: {message}"))
        err(template.format(message=exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err(_("archiver: interrupted; run the same command to go on"))
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug report
        from archiver.crash import report_crash

        return report_crash(exc, argv if argv is not None else sys.argv[1:],
                            debug=bool(state.get("debug")), echo=err)
    return 0


def _silence_stdout() -> None:
    """After a closed pipe (``archiver ls | head``), keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))
