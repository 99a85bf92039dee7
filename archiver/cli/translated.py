"""click's help and messages in the chosen language.

Help texts are plain literals in the code (``help="..."``, command
docstrings): click evaluates them at import time, before ``--lang`` is
parsed.  :class:`TranslatedHelp` passes them through :func:`archiver.i18n._`
when help is *rendered*, which is after the group's ``--lang`` has been
handled (``archiver --lang ja backup --help``).  ``scripts/i18n`` extracts
the same cleaned texts (``inspect.cleandoc``, cut at ``\\f``, as click does),
so the msgids match.

click's own words ("Usage:", "Options", "Missing argument", ...) come from
module-level ``from gettext import gettext as _`` bindings in click's
modules, which read the process-wide default gettext domain.  Rather than
binding that global domain (it would change every other library's
translations and needs the C locale machinery we avoid), :func:`click_speaks`
points those bindings at our catalog for the duration of one
:func:`archiver.cli.run` and puts gettext's back afterwards; our catalog
carries click's msgids (``scripts/i18n`` extracts them from the installed
click).  In English our ``_`` returns the msgid unchanged, exactly what
click's own call returns without a catalog.
"""

from __future__ import annotations

import contextlib
import copy
import gettext
import inspect
import sys
from collections.abc import Iterator
from typing import Any, Callable

import click

from archiver.cli.widetext import WideContext
from archiver.i18n import _, ngettext


def translate_help(text: str) -> str:
    """A help text as click shows it (cleaned, cut at form feed), translated."""
    return _(inspect.cleandoc(text).partition("\f")[0])


def _translated(param: click.Parameter) -> click.Parameter:
    """A copy of ``param`` whose help is translated (click renders the rest)."""
    help_text = getattr(param, "help", None)
    if not help_text:
        return param
    twin = copy.copy(param)
    twin.help = translate_help(help_text)
    return twin


def short_help(text: str) -> str:
    """The first sentence of a translated help text, for the command list.

    click's own shortening counts words and looks for ``.``; a Japanese
    sentence has no spaces and ends with ``。``.  The list wraps it.
    """
    first = " ".join(text.split("\n\n")[0].replace("\b", "").split())
    cut = first.find("。")
    return first[:cut] if cut != -1 else first


HELP_OPTION_TEXT = "Show this message and exit."  # click's msgid, translated when shown


class TranslatedHelp(click.Command):
    """Help text, option help, short help and epilog shown in the chosen language."""

    context_class = WideContext  # wraps Japanese by terminal columns

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        # click makes (and caches) --help with its text translated at that moment;
        # keep the English msgid, so a later run in another language shows its own
        option = super().get_help_option(ctx)
        if option is not None:
            option.help = HELP_OPTION_TEXT
        return option

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not self.help:
            super().format_help_text(ctx, formatter)
            return
        original = self.help
        self.help = translate_help(original)
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = original

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help:
            return translate_help(self.short_help)
        if self.help and translate_help(self.help) != inspect.cleandoc(self.help):
            return short_help(translate_help(self.help))
        return super().get_short_help_str(limit)  # English: click's own shortening

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue
            record = _translated(param).get_help_record(ctx)
            if record is not None:
                rows.append(record)
        if rows:
            with formatter.section(_("Options")):
                formatter.write_dl(rows)
        if isinstance(self, click.Group):
            self.format_commands(ctx, formatter)

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        args = [p for p in self.get_params(ctx) if isinstance(p, click.Argument)]
        if any(getattr(a, "help", None) is not None for a in args):
            with formatter.section(_("Positional arguments")):
                formatter.write_dl([r for a in args
                                    if (r := _translated(a).get_help_record(ctx)) is not None])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(translate_help(self.epilog))


class TranslatedCommand(TranslatedHelp):
    """``@click.command(cls=TranslatedCommand)``: every archiver command uses it."""


@contextlib.contextmanager
def click_speaks() -> Iterator[None]:
    """For one run, click's own strings come from archiver's catalog (see the module doc)."""
    ours: dict[str, Callable[..., str]] = {"_": _, "ngettext": ngettext}
    theirs: dict[str, Callable[..., str]] = {"_": gettext.gettext, "ngettext": gettext.ngettext}
    swapped: list[tuple[Any, str, Any]] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "click" or name.startswith("click.")):
            continue
        for attr, original in theirs.items():
            if getattr(module, attr, None) is original:
                setattr(module, attr, ours[attr])
                swapped.append((module, attr, original))
    try:
        yield
    finally:
        for module, attr, original in swapped:
            setattr(module, attr, original)
