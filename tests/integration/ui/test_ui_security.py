"""Who may use the page: token, cookie, Host, Origin -- against a real ``archiver ui`` process.

Plain HTTP (http.client, so every header is exactly what the test says);
the browser tests cover the same rules as a browser applies them.
"""

from __future__ import annotations

import http.client
import re
import socket
import stat
import sys
from pathlib import Path
from typing import Optional

import pytest

from archiver.archive import Archive
from archiver.offline.catalog import load
from tests.helpers import run_cli
from tests.integration.ui.conftest import UIServer

pytestmark = pytest.mark.timeout(120)


def request(server: UIServer, method: str, path: str, headers: Optional[dict[str, str]] = None,
            cookie: bool = True, body: Optional[bytes] = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    sent = {"Host": f"127.0.0.1:{server.port}"}
    if cookie:
        sent["Cookie"] = f"archiver_ui_{server.port}={server.token}"
    sent.update(headers or {})
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in sent.items():
        conn.putheader(k, v)
    conn.endheaders(body)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _html_sha(dest: Path, subject: str) -> str:
    items = load(Archive.open_existing(dest)).items
    return next(i.entry.sha256 for i in items if i.text("subject") == subject)


def test_it_prints_exactly_one_line_the_url_with_a_long_random_token(
        ui_server: object, tmp_path: Path) -> None:
    server = ui_server(None)  # type: ignore[operator]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{43}", server.url)
    server.proc.terminate()
    out, _err = server.proc.communicate(timeout=20)
    assert out == b""  # nothing after the first line


PATHS = ["/", "/archives", "/static/ui.css", "/static/ui.js", "/a/1/", "/a/1/search?q=x",
         "/a/1/m/" + "0" * 64 + "/eml", "/backup", "/backup/events", "/api/folders",
         "/no-such-page"]


@pytest.mark.parametrize("path", PATHS)
def test_without_the_token_or_its_cookie_every_path_is_refused(
        archive_server: UIServer, path: str) -> None:
    assert request(archive_server, "GET", path, cookie=False).status == 403


def test_a_wrong_token_or_cookie_is_refused(archive_server: UIServer) -> None:
    token = archive_server.token
    wrong = ("A" if token[0] != "A" else "B") + token[1:]
    assert request(archive_server, "GET", f"/?token={wrong}", cookie=False).status == 403
    assert request(archive_server, "GET", "/?token=", cookie=False).status == 403
    bad_cookie = {"Cookie": f"archiver_ui_{archive_server.port}={wrong}"}
    assert request(archive_server, "GET", "/a/1/", bad_cookie, cookie=False).status == 403
    other_port = {"Cookie": f"archiver_ui_1={token}"}  # another instance's cookie name
    assert request(archive_server, "GET", "/a/1/", other_port, cookie=False).status == 403


def test_the_token_sets_an_httponly_samesite_strict_cookie_and_leaves_the_url(
        archive_server: UIServer) -> None:
    got = request(archive_server, "GET", f"/?token={archive_server.token}", cookie=False)
    assert got.status == 303
    assert got.getheader("Location") == "/"
    cookie = got.getheader("Set-Cookie") or ""
    assert cookie.startswith(f"archiver_ui_{archive_server.port}={archive_server.token};")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert request(archive_server, "GET", "/a/1/").status == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a data: page
    {"Origin": "http://127.0.0.1:1"},  # another local server
    {"Origin": "http://evil.example", "Referer": "http://127.0.0.1/"},
    {"Referer": "http://evil.example/page"},
    {},  # neither: refused too
], ids=["evil-origin", "null-origin", "other-port", "evil-origin-good-referer",
        "evil-referer", "no-origin"])
def test_a_cross_origin_post_is_refused_even_with_the_cookie(
        archive_server: UIServer, headers: dict[str, str]) -> None:
    got = request(archive_server, "POST", "/archives", headers, body=b"a=b")
    assert got.status == 403


def test_a_post_from_the_page_itself_passes_the_origin_check(archive_server: UIServer) -> None:
    own = f"http://127.0.0.1:{archive_server.port}"
    # /archives takes no POST: 405 is the router's answer, past the guard
    assert request(archive_server, "POST", "/archives", {"Origin": own}).status == 405
    assert request(archive_server, "POST", "/archives", {"Referer": own + "/a/1/"}).status == 405


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1",
                                  "127.0.0.1:1", "[::1]:{port}"])
def test_a_foreign_host_header_is_refused_dns_rebinding(archive_server: UIServer,
                                                        host: str) -> None:
    headers = {"Host": host.format(port=archive_server.port)}
    assert request(archive_server, "GET", "/a/1/", headers).status == 403


def test_localhost_is_our_host_too(archive_server: UIServer) -> None:
    headers = {"Host": f"localhost:{archive_server.port}"}
    assert request(archive_server, "GET", "/a/1/", headers).status == 200


def test_every_page_carries_a_strict_content_security_policy(archive_server: UIServer) -> None:
    got = request(archive_server, "GET", "/a/1/")
    csp = got.getheader("Content-Security-Policy") or ""
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'",
                      "object-src 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert got.getheader("X-Content-Type-Options") == "nosniff"
    assert got.getheader("Referrer-Policy") == "same-origin"
    assert got.getheader("Cache-Control") == "no-store"
    refused = request(archive_server, "GET", "/a/1/", cookie=False)
    assert "frame-ancestors 'none'" in (refused.getheader("Content-Security-Policy") or "")


def test_an_html_part_is_served_sandboxed_with_only_data_images(
        archive_server: UIServer, ui_archive: object) -> None:
    from tests.integration.ui import mail

    sha = _html_sha(ui_archive.dest, mail.HOSTILE_SUBJECT)  # type: ignore[attr-defined]
    got = request(archive_server, "GET", f"/a/1/m/{sha}/html/0")
    assert got.status == 200
    csp = got.getheader("Content-Security-Policy") or ""
    assert "sandbox" in csp and "img-src data:" in csp and "default-src 'none'" in csp
    assert "allow-scripts" not in csp and "allow-same-origin" not in csp


def test_an_attachment_is_always_a_download(archive_server: UIServer,
                                            ui_archive: object) -> None:
    from archiver.ui.render import view
    from tests.integration.ui import mail

    sha = _html_sha(ui_archive.dest, mail.HTML_SUBJECT)  # type: ignore[attr-defined]
    part = view(mail.html_message()).attachments[0].index
    conn = http.client.HTTPConnection("127.0.0.1", archive_server.port, timeout=20)
    conn.request("GET", f"/a/1/m/{sha}/part/{part}", headers={
        "Cookie": f"archiver_ui_{archive_server.port}={archive_server.token}"})
    got = conn.getresponse()
    data = got.read()
    conn.close()
    assert got.status == 200
    assert data == mail.ATTACHMENT
    assert got.getheader("Content-Type") == "application/octet-stream"
    assert got.getheader("Content-Disposition") == (
        "attachment; filename=\"____ 2003.pdf\"; "
        "filename*=UTF-8''%E3%82%BC%E3%83%9F%E8%B3%87%E6%96%99%202003.pdf")


# ---------------------------------------------------------------- the command


def test_without_the_ui_extra_the_command_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.ui

    monkeypatch.setattr(archiver.ui, "EXTRA_MODULES", ("starlette", "no_such_module_x"))
    code, out, err = run_cli(["ui", "--no-browser"])
    assert code == 2
    assert out == ""
    assert err == ("archiver: error: the web page needs the 'ui' extra: in the archiver folder "
                   f"(the repository) run {sys.executable} -m pip install '.[ui]'\n")


def test_a_dest_that_is_not_an_archive_is_one_line_exit_6(tmp_path: Path) -> None:
    code, out, err = run_cli(["ui", str(tmp_path), "--no-browser"])
    assert code == 6
    assert out == "" and err.count("\n") == 1 and "is not an archive" in err


def test_a_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        code, out, err = run_cli(["ui", "--no-browser", "--port", str(port)])
    finally:
        busy.close()
    assert code == 2
    assert out == "" and err.count("\n") == 1 and f"127.0.0.1:{port}" in err


def test_the_browser_gets_a_private_redirect_file_not_the_token(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    from archiver.cli.ui import _browser_file

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda target: opened.append(target) or True)
    url = "http://127.0.0.1:5/?token=SECRET"
    with _browser_file(url) as opener:
        opener()
        assert len(opened) == 1 and opened[0].startswith("file://")
        assert "SECRET" not in opened[0]
        page = Path(opened[0][len("file://"):])
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
        assert url in page.read_text()
    assert not page.parent.exists()  # removed when the server stops


def test_signing_in_keeps_the_page_but_never_leaves_the_site(archive_server: UIServer) -> None:
    token = archive_server.token
    got = request(archive_server, "GET", f"/a/1/search?q=x&token={token}", cookie=False)
    assert got.status == 303 and got.getheader("Location") == "/a/1/search?q=x"
    got = request(archive_server, "GET", f"//evil.example/?token={token}", cookie=False)
    assert got.status == 303 and got.getheader("Location") == "/"
