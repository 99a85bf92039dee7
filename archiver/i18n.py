"""The interface language: English source strings, Japanese from a gettext catalog.

Every user-facing string is written ``_("English text")`` (or
``ngettext(singular, plural, n)``) and formatted *after* translation, so the
catalog holds one template per message::

    err(_("{n} new messages").format(n=3))

The language is chosen once per run (``archiver --lang``, else
``$ARCHIVER_LANG``, else LANGUAGE/LC_ALL/LC_MESSAGES/LANG) and read from
the environment only: the ja_JP locale need not be installed, so
``setlocale`` is never used.  The catalog is ``archiver/locale/<lang>/
LC_MESSAGES/archiver.mo``; a missing catalog means English.
"""

from __future__ import annotations

import gettext as _gettext
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

DOMAIN = "archiver"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANG_ENV = "ARCHIVER_LANG"
LANGUAGES = ("en", "ja")


class _Translator:
    """The one catalog in use; a small holder so tests can switch languages."""

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
    """``$ARCHIVER_LANG``, then the POSIX variables in gettext's order; ``en`` when none fits."""
    explicit = environ.get(LANG_ENV, "").strip()
    if explicit:
        return normalise(explicit) or "en"
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var, "").strip()
        if not value:
            continue
        # LANGUAGE may list several (ja:en); the first one we ship wins
        for part in value.split(":"):
            lang = normalise(part)
            if lang:
                return lang
        if var != "LANGUAGE":
            return "en"  # LC_ALL=C or a language we do not ship: English
    return "en"


def normalise(value: str) -> Optional[str]:
    """``ja_JP.UTF-8`` -> ``ja``; ``C``/``POSIX``/unknown -> None."""
    code = value.split(".")[0].split("@")[0].replace("-", "_").lower()
    short = code.split("_")[0]
    return short if short in LANGUAGES else None


def set_language(language: Optional[str]) -> str:
    """Use ``language`` (None: from the environment); returns the one chosen."""
    chosen = normalise(language) if language else language_from_env(os.environ)
    _translator.use(chosen or "en")
    return _translator.language or "en"


def current_language() -> str:
    _translator.ensure()
    return _translator.language or "en"


def _(message: str) -> str:
    """The translation of ``message`` (itself when the catalog lacks it)."""
    return _translator.ensure().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The translation of the form for ``n`` (Japanese has one form)."""
    return _translator.ensure().ngettext(singular, plural, n)
