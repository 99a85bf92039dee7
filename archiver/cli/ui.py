"""``archiver ui``: the local web page (optional extra ``mailbox-archiver[ui]``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import click

from archiver.cli.common import err
from archiver.cli.translated import TranslatedCommand
from archiver.errors import UsageError
from archiver.i18n import LANGUAGES, _, current_language, set_language

REDIRECT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="0;url={url}">
<title>archiver ui</title></head>
<body><p><a href="{url}">{url}</a></p>
<script>window.location.replace({url_js});</script></body></html>
"""


@click.command(cls=TranslatedCommand)
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=False,
              help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True,
              help="Do not open a browser; just print the address (for a server).")
@click.option("--lang", "page_lang", type=click.Choice(LANGUAGES),
              help="Language of the page: en or ja (default: the browser's).")
def ui(dest: Optional[Path], port: int, no_browser: bool, page_lang: Optional[str]) -> None:
    """Open the archive in a web page on this computer (back up, browse, search, read).

    \b
    Serves on 127.0.0.1 only and prints one line, the address with its
    access token:  http://127.0.0.1:PORT/?token=...
    Without DEST the page lists the archives in Documents/MailArchive.
    Needs the ui extra:  pipx install --force '.[ui]' in the repository.  Stop with Ctrl+C.
    """
    from archiver.ui import install_hint, missing_extra

    if missing_extra() is not None:
        raise UsageError(_("the web page needs the 'ui' extra: in the archiver folder (the "
                           "repository) run {command}").format(command=install_hint()))
    page_lang = page_lang or _group_lang()
    if page_lang:
        set_language(page_lang)
    if dest is not None:
        from archiver.reading import open_archive

        dest = dest.expanduser().resolve()
        open_archive(dest)  # not an archive: the one-line error, exit 6
    serve(dest, port, browser=not no_browser, language=page_lang)


def _group_lang() -> Optional[str]:
    """``archiver --lang ja ui``: the group's --lang fixes the page's language too."""
    parent = click.get_current_context().parent
    if parent is None:
        return None
    source = parent.get_parameter_source("lang")
    return current_language() if source == click.core.ParameterSource.COMMANDLINE else None


def bind(port: int) -> socket.socket:
    """The listening socket on 127.0.0.1 (port 0: the OS picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":  # on Windows SO_REUSEADDR would let a second server share the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise UsageError(_("cannot listen on 127.0.0.1:{port} ({reason}): choose another "
                           "--port or leave it out").format(
                               port=port, reason=exc.strerror or exc)) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(dest: Optional[Path], port: int, *, browser: bool, language: Optional[str]) -> None:
    import uvicorn

    from archiver.ui.app import create_app
    from archiver.ui.security import new_token

    sock = bind(port)
    real_port = sock.getsockname()[1]
    token = new_token()
    app = create_app(dest, token, language, port=real_port)
    url = f"http://127.0.0.1:{real_port}/?token={token}"
    click.echo(url)
    sys.stdout.flush()
    err(_("archiver ui: serving on http://127.0.0.1:{port}/ -- open the address above; "
          "stop with Ctrl+C").format(port=real_port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    with _browser_file(url) as opener:
        if browser:
            opener()
        server.run(sockets=[sock])
    sock.close()


@contextlib.contextmanager
def _browser_file(url: str) -> Iterator[Callable[[], None]]:
    """A 0600 page that redirects to ``url``, in a private directory (as Jupyter does).

    The browser is started with the file's name, not the URL: a command line
    is visible to every local user (``ps``), the token must not be.
    """
    import json
    import webbrowser

    folder = tempfile.mkdtemp(prefix="archiver-ui-")
    page = Path(folder) / "open.html"

    def opener() -> None:
        fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(REDIRECT_PAGE.format(url=url, url_js=json.dumps(url)))
        try:
            opened = webbrowser.open(page.as_uri())
        except Exception:  # noqa: BLE001 - no browser is no reason to stop serving
            opened = False
        if not opened:
            err(_("archiver ui: no browser could be started: open the address above in one"))

    try:
        yield opener
    finally:
        shutil.rmtree(folder, ignore_errors=True)
