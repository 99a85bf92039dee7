"""The guided backup's pages (a placeholder: the ``uibackup`` branch replaces this module).

Interface with :func:`archiver.ui.app.create_app`, which imports this module
if it exists:

``routes(ctx: UIContext) -> list[starlette.routing.BaseRoute]``
    The backup's routes, mounted before the browsing routes.  Everything
    behind them is already guarded (:mod:`archiver.ui.security`): token or
    cookie checked, Host checked, and every non-GET request's Origin/Referer
    checked -- plain HTML ``<form method="post">`` works without any CSRF
    field.  Useful parts of ``ctx`` (:class:`archiver.ui.app.UIContext`):

    * ``ctx.render(request, "backup.html", **values)`` -> HTMLResponse; the
      template extends ``base.html`` (blocks ``title`` and ``content``) and
      has ``_``/``ngettext`` in the request's language.  Library errors
      (``ArchiverError``) raised during a request are already in that
      language (the process language follows the page).
    * ``ctx.gettext(request)`` -> a gettext object for texts made in Python.
    * ``ctx.home`` -- the default folder for new archives (Documents/MailArchive,
      ``$ARCHIVER_UI_HOME`` in tests); ``ctx.dest`` -- the DEST given, if any.
    * ``ctx.registry.register(path) -> key``: after a backup, link to
      ``/a/{key}/`` to browse it; ``ctx.registry.forget(key)`` drops a cached
      catalogue (the cache also notices the index file changed by itself).

``NEW_BACKUP_PATH: Optional[str]``
    The URL of the first backup page; the start page and the header link to
    it when it is not None.

Static files: ``/static/...`` (archiver/ui/static/, CSP ``script-src 'self'``:
no inline scripts or ``on*`` attributes; put JS in a static file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from archiver.ui.app import UIContext

NEW_BACKUP_PATH: Optional[str] = None


def routes(ctx: UIContext) -> list[BaseRoute]:
    """No backup pages yet."""
    return []
