"""Browsing an archive offline: start page, folder tree, message lists, search, a message.

Every page reads through the library (:mod:`archiver.offline`): the
catalogue of :mod:`archiver.offline.catalog` (cached per archive in
:mod:`archiver.ui.archives`), the search engine of ``archiver search``
(:func:`archiver.offline.search.search`, Japanese substring matching), the
store's exact bytes as ``archiver show --raw`` gives them, and the decoding
of ``archiver show`` (:mod:`archiver.ui.render`).

Texts made here use :func:`archiver.i18n._`: the app sets the process
language to the request's (:mod:`archiver.ui.app`).

Endpoints are plain functions: Starlette runs them in its thread pool, so
reading a big index never blocks the event loop (and the backup's event
streams keep flowing).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from archiver.errors import ArchiverError
from archiver.i18n import _
from archiver.offline.catalog import Item
from archiver.offline.search import Query, search
from archiver.offline.show import read
from archiver.ui import render
from archiver.ui.archives import Browsable, is_archive
from archiver.ui.export_routes import FOLDER_KINDS
from archiver.units import human_size

if TYPE_CHECKING:
    from archiver.ui.context import UIContext

PAGE_SIZE = 100
_SHA = re.compile(r"[0-9a-f]{64}")


@dataclass
class Row:
    """One line of a message list."""

    sha: str
    date: str
    sender: str
    subject: str
    folder: str
    size: str
    seen: bool
    flagged: bool
    answered: bool
    gone: bool


def row(item: Item) -> Row:
    flags = item.entry.flags
    return Row(sha=item.entry.sha256, date=_short_date(item.date), sender=item.text("from"),
               subject=item.text("subject"), folder=item.folder, size=human_size(item.entry.size),
               seen="\\Seen" in flags, flagged="\\Flagged" in flags,
               answered="\\Answered" in flags, gone=item.entry.gone)


def _short_date(value: Optional[str]) -> str:
    """``1999-04-12T10:00:00+09:00`` -> ``1999-04-12 10:00`` (what fits a list column)."""
    if not value:
        return ""
    return value[:16].replace("T", " ")


@dataclass
class Pager:
    page: int
    pages: int
    total: int
    first: int  # 1-based number of the first row shown

    @classmethod
    def of(cls, total: int, request: Request) -> Pager:
        pages = max(1, -(-total // PAGE_SIZE))
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1
        page = min(max(page, 1), pages)
        return cls(page, pages, total, (page - 1) * PAGE_SIZE + 1)

    def slice(self, items: list[Item]) -> list[Item]:
        start = (self.page - 1) * PAGE_SIZE
        return items[start:start + PAGE_SIZE]

    def link(self, request: Request, page: int) -> str:
        params = dict(request.query_params)
        params["page"] = str(page)
        return f"{request.url.path}?{urlencode(params)}"


def routes(ctx: UIContext) -> list[BaseRoute]:
    def bind(view: Callable[[UIContext, Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return view(ctx, request)
        return endpoint

    async def open_endpoint(request: Request) -> Response:
        return await open_archive(ctx, request)

    return [
        Route("/open", open_endpoint, methods=["POST"]),
        Route("/a/{key}/", bind(archive_page)),
        Route("/a/{key}/folder", bind(folder_page)),
        Route("/a/{key}/search", bind(search_page)),
        Route("/a/{key}/m/{sha}", bind(message_page)),
        Route("/a/{key}/m/{sha}/html/{part:int}", bind(message_html)),
        Route("/a/{key}/m/{sha}/part/{part:int}", bind(attachment_download)),
        Route("/a/{key}/m/{sha}/eml", bind(eml_download)),
    ]


def start_page(ctx: UIContext, request: Request, problem: str = "", typed: str = "",
               status_code: int = 200) -> Response:
    """The archives the page knows (the default folder's among them) and a new backup."""
    known = ctx.registry.scan(ctx.home)
    archives = [(key, path) for key, path in known]
    return ctx.render(request, "start.html", status_code=status_code, archives=archives,
                      home=ctx.home, new_backup=ctx.new_backup_path, problem=problem,
                      typed=typed)


async def open_archive(ctx: UIContext, request: Request) -> Response:
    """The start page's "open an archive" form: a folder a backup wrote to (a USB disk...)."""
    form = await request.form()
    value = form.get("path")
    typed = value.strip() if isinstance(value, str) else ""
    path = Path(typed).expanduser() if typed else None
    if path is None or not path.is_absolute() or not is_archive(path):
        problem = _("{path} is not an archive (no .archiver/archive.json in it): give the "
                    "folder a backup wrote to").format(path=typed or "''")
        return start_page(ctx, request, problem=problem, typed=typed, status_code=400)
    key = ctx.registry.register(path)
    return RedirectResponse(f"/a/{key}/", status_code=303)


def _not_found(ctx: UIContext, request: Request, what: str) -> Response:
    return ctx.render(request, "error.html", status_code=404, message=what)


def _open(ctx: UIContext, request: Request) -> tuple[str, Optional[Browsable], Optional[Response]]:
    key = request.path_params["key"]
    try:
        browsable = ctx.registry.browsable(key)
    except ArchiverError as exc:
        return key, None, ctx.render(request, "error.html", status_code=500, message=str(exc))
    if browsable is None:
        return key, None, _not_found(ctx, request, _(
            "This archive is not known here: go back to the list of archives."))
    return key, browsable, None


def archive_page(ctx: UIContext, request: Request) -> Response:
    key, b, refusal = _open(ctx, request)
    if b is None:
        assert refusal is not None
        return refusal
    dest = b.archive.dest
    commands = {
        "restore_dry": f"archiver restore {_quoted(dest)} ecc-new --dry-run",
        "restore": f"archiver restore {_quoted(dest)} ecc-new",
        "verify": f"archiver verify {_quoted(dest)}",
    }
    total = len(b.catalog.items)
    size = human_size(b.total_bytes)
    return ctx.render(request, "archive.html", key=key, dest=dest, folders=b.folder_rows(),
                      total=total, size=size, commands=commands, folder_url=_folder_url,
                      export_kinds=FOLDER_KINDS, kind_labels={
                          "mbox": _("mbox files (one per folder)"),
                          "maildir": _("Maildir (one file per message)")})


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _folder_url(key: str, name: str) -> str:
    return f"/a/{key}/folder?{urlencode({'name': name})}"


def folder_page(ctx: UIContext, request: Request) -> Response:
    key, b, refusal = _open(ctx, request)
    if b is None:
        assert refusal is not None
        return refusal
    name = b.find_folder(request.query_params.get("name", ""))
    if name is None:
        return _not_found(ctx, request, _("There is no such folder in this archive."))
    items = b.by_folder.get(name, [])
    pager = Pager.of(len(items), request)
    return ctx.render(request, "folder.html", key=key, folder=name,
                      rows=[row(i) for i in pager.slice(items)], pager=pager,
                      show_folder=False)


def search_terms(text: str) -> list[str]:
    """The search box split as a shell splits ``archiver search`` words: quotes keep a phrase."""
    try:
        return [t for t in shlex.split(text) if t.strip()]
    except ValueError:  # an unbalanced quote
        return text.split()


def search_page(ctx: UIContext, request: Request) -> Response:
    key, b, refusal = _open(ctx, request)
    if b is None:
        assert refusal is not None
        return refusal
    params = request.query_params
    text = params.get("q", "")
    body = params.get("body") == "1"
    folder = b.find_folder(params.get("folder", ""))
    terms = search_terms(text)
    hits: list[Item] = []
    searched = bool(terms)
    if searched:
        items = b.by_folder.get(folder, []) if folder else b.catalog.items
        query = Query(terms=terms, body=body)
        hits = list(search(b.archive, query, items))
        hits.reverse()  # newest first, like the folder lists
    pager = Pager.of(len(hits), request)
    return ctx.render(request, "search.html", key=key, q=text, body=body, folder=folder,
                      folders=[r for r in b.folder_rows() if r.exists], searched=searched,
                      rows=[row(i) for i in pager.slice(hits)], pager=pager, show_folder=True)


def _message(ctx: UIContext, request: Request
             ) -> tuple[str, Optional[list[Item]], Optional[bytes], Optional[Response]]:
    """The copies of the message the URL names and its exact bytes, or the error page."""
    key, b, refusal = _open(ctx, request)
    if b is None:
        return key, None, None, refusal
    sha = request.path_params["sha"]
    items = b.by_sha.get(sha) if _SHA.fullmatch(sha) else None
    if not items:
        return key, None, None, _not_found(ctx, request, _(
            "There is no such message in this archive."))
    items = sorted(items, key=lambda i: (i.entry.gone, i.folder, i.entry.path))
    try:
        data = read(b.archive, items[0])
    except ArchiverError as exc:
        return key, None, None, ctx.render(request, "error.html", status_code=500,
                                           message=str(exc))
    return key, items, data, None


def message_page(ctx: UIContext, request: Request) -> Response:
    key, items, data, refusal = _message(ctx, request)
    if items is None or data is None:
        assert refusal is not None
        return refusal
    prefer_text = request.query_params.get("text") == "1"
    shown = render.view(data, prefer_text=prefer_text)
    sha = items[0].entry.sha256
    return ctx.render(request, "message.html", key=key, sha=sha, view=shown,
                      copies=[row(i) for i in items], prefer_text=prefer_text,
                      subject=items[0].text("subject"), size=human_size(len(data)),
                      folder_url=_folder_url)


def message_html(ctx: UIContext, request: Request) -> Response:
    """One HTML part, sanitised, as the document of the message page's sandboxed iframe."""
    _key, items, data, refusal = _message(ctx, request)
    if items is None or data is None:
        assert refusal is not None
        return refusal
    document = render.html_document(data, request.path_params["part"])
    if document is None:
        return Response(status_code=404)
    return Response(document, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": render.BODY_CSP})


def attachment_download(ctx: UIContext, request: Request) -> Response:
    """The attachment's exact decoded bytes, always as a download (never shown inline)."""
    _key, items, data, refusal = _message(ctx, request)
    if items is None or data is None:
        assert refusal is not None
        return refusal
    found = render.attachment(data, request.path_params["part"])
    if found is None:
        return Response(status_code=404)
    name, payload = found
    return _download(payload, name)


def eml_download(ctx: UIContext, request: Request) -> Response:
    """The message byte for byte as archived (what ``archiver show --raw`` writes)."""
    _key, items, data, refusal = _message(ctx, request)
    if items is None or data is None:
        assert refusal is not None
        return refusal
    subject = items[0].text("subject").strip() or items[0].id
    return _download(data, f"{subject[:80]}.eml", media_type="message/rfc822")


def download_name(name: str) -> str:
    """A file name any OS accepts: no path separators, control or reserved characters."""
    cleaned = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]', "_", name).strip(" .")
    return cleaned or "attachment"


def _download(payload: bytes, name: str,
              media_type: str = "application/octet-stream") -> Response:
    safe = download_name(name)
    ascii_name = safe.encode("ascii", "replace").decode("ascii").replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(safe)}"
    return Response(payload, media_type=media_type,
                    headers={"Content-Disposition": disposition,
                             "Content-Security-Policy": "default-src 'none'; sandbox"})
