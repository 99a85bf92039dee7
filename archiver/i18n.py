"""The interface language: English source strings, Japanese from a gettext catalog.

Every user-facing string is written ``_("English text")`` (or
``ngettext(singular, plural, n)``) and formatted *after* translation, so the
catalog holds one template per message::

    err(_("{n} new messages").format(n=3))

click ``help=`` texts and command docstrings stay plain literals: they are
evaluated at import time, before ``--lang`` is known, so
:mod:`archiver.cli.translated` passes them through :func:`_` when help is
*shown*.  ``scripts/i18n`` collects all of them into the catalog
(docs/TRANSLATING.md).

The language is chosen once per run (``archiver --lang``, else
``$ARCHIVER_LANG``, else LANGUAGE/LC_ALL/LC_MESSAGES/LANG) and read from the
environment only: students' PCs rarely have the ja_JP locale generated, and
``setlocale`` would fail or fall back to C there, so it is never used.  The
catalog is ``archiver/locale/<lang>/LC_MESSAGES/archiver.mo``, shipped in the
package; a missing catalog means English.
"""

from __future__ import annotations

import contextlib
import gettext as _gettext
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

# ``_`` is gettext's own name for "translate this" (xgettext and every
# translator know it), so it is public here despite the underscore.
__all__ = ["_", "ngettext", "set_language", "current_language", "language_from_env",
           "normalise", "speaking"]

DOMAIN = "archiver"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANG_ENV = "ARCHIVER_LANG"
LANGUAGES = ("en", "ja")
_LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")  # POSIX precedence for LC_MESSAGES


class _Translator:
    """The one catalog in use.

    One per process, switched by :func:`set_language` at the start of every
    CLI run (so in-process test runs with different environments each get
    theirs); library code only reads it through :func:`_`.
    """

    def __init__(self) -> None:
        self.language: Optional[str] = None
        self.catalog: _gettext.NullTranslations = _gettext.NullTranslations()

    def use(self, language: str) -> None:
        self.language = language
        if language == "en":
            self.catalog = _gettext.NullTranslations()
            return
        self.catalog = _gettext.translation(DOMAIN, localedir=str(LOCALE_DIR),
                                            languages=[language], fallback=True)

    def ensure(self) -> _gettext.NullTranslations:
        if self.language is None:
            self.use(language_from_env(os.environ))
        return self.catalog


_translator = _Translator()


def language_from_env(environ: Mapping[str, str]) -> str:
    """The language the environment asks for: ``ja`` or ``en`` (the default).

    ``$ARCHIVER_LANG`` wins.  Otherwise GNU gettext's rules, without asking
    the C library: the locale for messages is the first set of LC_ALL,
    LC_MESSAGES, LANG; if that is ``C``/``POSIX`` the answer is English (so
    ``LC_ALL=C`` gives English whatever LANGUAGE says); else LANGUAGE's
    colon-separated list is tried first (``fr:ja`` -> ja), then the locale's
    own language (``ja_JP.UTF-8`` -> ja).  A language we do not ship is
    English.
    """
    explicit = environ.get(LANG_ENV, "").strip()
    if explicit:
        return normalise(explicit) or "en"
    locale = next((environ[v].strip() for v in _LOCALE_VARS if environ.get(v, "").strip()), "")
    if _is_c_locale(locale):
        return "en"
    for part in environ.get("LANGUAGE", "").split(":"):
        lang = normalise(part.strip()) if part.strip() else None
        if lang:
            return lang
    return (normalise(locale) if locale else None) or "en"


def _is_c_locale(value: str) -> bool:
    """``C``, ``C.UTF-8``, ``POSIX``: the untranslated locale.  Unset is not C here."""
    return value.split(".")[0].split("@")[0].upper() in ("C", "POSIX")


def normalise(value: str) -> Optional[str]:
    """``ja_JP.UTF-8``/``ja-JP``/``JA`` -> ``ja``; ``C``/``POSIX``/not shipped -> None."""
    code = value.strip().split(".")[0].split("@")[0].replace("-", "_").lower()
    short = code.split("_")[0]
    return short if short in LANGUAGES else None


def set_language(language: Optional[str]) -> str:
    """Use ``language`` (None: from the environment); returns the one chosen."""
    chosen = normalise(language) if language else language_from_env(os.environ)
    _translator.use(chosen or "en")
    return _translator.language or "en"


@contextlib.contextmanager
def speaking(language: Optional[str]) -> Iterator[str]:
    """:func:`set_language` for one CLI run; the language before it is back afterwards.

    So a run with ``--lang ja`` leaves nothing behind in the process (a test suite
    calling the library after an in-process run gets its own language).
    """
    saved = (_translator.language, _translator.catalog)
    try:
        yield set_language(language)
    finally:
        _translator.language, _translator.catalog = saved


def current_language() -> str:
    """``en`` or ``ja``: the language messages are given in now."""
    _translator.ensure()
    return _translator.language or "en"


def _(message: str) -> str:
    """The translation of ``message`` (itself when the catalog lacks it)."""
    return _translator.ensure().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The translation of the form for ``n`` (Japanese has one form)."""
    return _translator.ensure().ngettext(singular, plural, n)
