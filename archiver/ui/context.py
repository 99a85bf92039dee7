"""What every page of the web app needs: templates, the archives, the request's language.

:class:`UIContext` is handed to every route (browse, backup, export), so it
lives apart from :mod:`archiver.ui.app`, which imports those route modules:
the modules then import each other one way.
"""

from __future__ import annotations

import gettext
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Optional

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from archiver import __version__
from archiver.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, language_from_env, normalise
from archiver.ui.archives import Registry
from archiver.units import human_size

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "archiver_lang"


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language`` (English: the msgids themselves)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[language],
                               fallback=True)


def accepted_language(header: str) -> Optional[str]:
    """The first shipped language of an Accept-Language header, by quality."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = normalise(tag.strip()) if tag.strip() and tag.strip() != "*" else None
        if lang and q > 0:
            choices.append((-q, i, lang))
    return min(choices)[2] if choices else None


@dataclass
class UIContext:
    """What every route needs: the archives, the templates, the chosen language."""

    dest: Optional[Path]  # the DEST given to ``archiver ui`` (None: the start page)
    home: Path  # the default folder: new archives go here, the start page lists it
    language: Optional[str]  # ``--lang`` (None: per request)
    registry: Registry = field(default_factory=Registry)
    env: jinja2.Environment = field(init=False)
    new_backup_path: Optional[str] = None  # from backup_routes: the start page links it

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["size"] = human_size

    def language_of(self, request: Request) -> str:
        picked = normalise(request.cookies.get(LANG_COOKIE, ""))
        if picked:
            return picked
        if self.language:
            return self.language
        accepted = accepted_language(request.headers.get("accept-language", ""))
        return accepted or language_from_env(os.environ)

    def render(self, request: Request, template: str, status_code: int = 200,
               **values: Any) -> HTMLResponse:
        """``template`` with ``values``, ``_``/``ngettext`` in the request's language."""
        lang = self.language_of(request)
        tr = translations(lang)
        html = self.env.get_template(template).render(
            request=request, lang=lang, _=tr.gettext, ngettext=tr.ngettext,
            version=__version__, languages=LANGUAGES, ctx=self, here=_here(request),
            **values)
        return HTMLResponse(html, status_code=status_code)

    def typed_path(self, typed: str) -> Optional[Path]:
        """A folder typed into a page (``~`` expanded; a relative name is under the
        archives folder, ``home``); None when nothing was typed."""
        typed = typed.strip()
        if not typed:
            return None
        path = Path(typed).expanduser()
        return path if path.is_absolute() else self.home / path

    def gettext(self, request: Request) -> gettext.NullTranslations:
        """For texts made in Python for one request (``.gettext``/``.ngettext``)."""
        return translations(self.language_of(request))


def _here(request: Request) -> str:
    """This page's path and query (where the language links come back to)."""
    query = request.url.query
    return request.url.path + ("?" + query if query else "")
