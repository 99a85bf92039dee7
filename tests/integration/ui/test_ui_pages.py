"""The pages over HTTP, without a browser: paging, the cache, the start page, languages.

A synthetic archive (tests/integration/ui/synthetic.py) stands in for a big
folder; a real ``archiver ui`` process serves it.
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from archiver.archive import Archive
from archiver.index import message_key, msg_record
from tests.integration.ui.conftest import UIServer
from tests.integration.ui.synthetic import make_archive

pytestmark = pytest.mark.timeout(120)


def get(server: UIServer, path: str, headers: Optional[dict[str, str]] = None
        ) -> tuple[int, str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers={
        "Cookie": f"archiver_ui_{server.port}={server.token}", **(headers or {})})
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    conn.close()
    return response.status, body, response


def subjects(page: str) -> list[str]:
    return re.findall(r'<td class="subject"><a href="[^"]+">([^<]*)</a>', page)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "big", 250, files=True)


def test_a_big_folder_is_paged_a_hundred_at_a_time_newest_first(
        big: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(big)
    status, first, _r = get(server, "/a/1/folder?name=INBOX")
    assert status == 200
    shown = subjects(first)
    assert len(shown) == 100 and shown[0].endswith("#250") and shown[-1].endswith("#151")
    assert "Page 1 of 3" in first and 'rel="next"' in first and 'rel="prev"' not in first
    _s, last, _r = get(server, "/a/1/folder?name=INBOX&page=3")
    assert len(subjects(last)) == 50 and subjects(last)[-1].endswith("#1")
    _s, beyond, _r = get(server, "/a/1/folder?name=INBOX&page=999")
    assert subjects(beyond) == subjects(last)  # clamped, not an error


def test_a_message_the_backup_appended_shows_up_without_a_restart(
        big: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(big)
    assert "250 messages" in get(server, "/a/1/folder?name=INBOX")[1]
    with Archive.create_or_open(big, None, {"protocol": "imap", "host": "synthetic.example",
                                             "user": "bench"}) as archive:
        archive.record([msg_record("INBOX", message_key(1, 999), path="INBOX/cur/999.x:2,",
                                   size=10, sha256="ab" * 32, internaldate=None, flags=[],
                                   keywords=[], subject="appended later",
                                   date="2099-01-01T00:00:00+00:00")])
    page = get(server, "/a/1/folder?name=INBOX")[1]
    assert "251 messages" in page and subjects(page)[0] == "appended later"


def test_unknown_archives_folders_and_messages_are_404_not_errors(
        big: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(big)
    for path in ("/a/2/", "/a/..%2F..%2Fetc/", "/a/1/folder?name=Nope",
                 "/a/1/m/" + "f" * 64, "/a/1/m/not-a-hash", "/a/1/m/" + "f" * 64 + "/eml"):
        assert get(server, path)[0] == 404, path


def test_without_dest_the_start_page_lists_the_archives_of_the_default_folder(
        tmp_path: Path, ui_server: Callable[..., UIServer]) -> None:
    home = tmp_path / "MailArchive"
    make_archive(home / "old-eccs", 3)
    make_archive(home / "lab", 2)
    (home / "not-an-archive").mkdir()
    server = ui_server(None, home=home)
    status, page, _r = get(server, "/")
    assert status == 200
    names = re.findall(r'<li><a href="(/a/\d+/)">([^<]+)</a>', page)
    assert sorted(n for _href, n in names) == ["lab", "old-eccs"]
    for href, _name in names:
        assert get(server, href)[0] == 200


def test_the_language_follows_accept_language_unless_lang_is_given(
        big: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(big, env={"ARCHIVER_LANG": "", "LANG": "C"})
    ja = get(server, "/a/1/", {"Accept-Language": "fr-FR, ja;q=0.9, en;q=0.8"})[1]
    assert '<html lang="ja">' in ja and "フォルダー" in ja
    en = get(server, "/a/1/", {"Accept-Language": "en-US,en;q=0.9,ja;q=0.8"})[1]
    assert '<html lang="en">' in en and "Folders" in en
    assert '<html lang="en">' in get(server, "/a/1/")[1]  # LANG=C: English
    fixed = ui_server(big, "--lang", "ja", env={"ARCHIVER_LANG": "", "LANG": "C"})
    assert '<html lang="ja">' in get(fixed, "/a/1/", {"Accept-Language": "en"})[1]


def test_the_language_links_set_a_cookie_and_come_back(
        big: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(big)
    status, _body, response = get(server, "/lang/ja?next=/a/1/folder%3Fname%3DINBOX")
    assert status == 303 and response.getheader("Location") == "/a/1/folder?name=INBOX"
    assert "archiver_lang=ja" in response.getheader("Set-Cookie")
    status, _body, response = get(server, "/lang/ja?next=//evil.example/")
    assert response.getheader("Location") == "/"  # never off the site
    page = get(server, "/a/1/", {"Cookie": f"archiver_ui_{server.port}={server.token}; "
                                           "archiver_lang=ja"})[1]
    assert '<html lang="ja">' in page


def test_an_mbox_archive_gives_the_same_bytes_for_eml_and_attachment(
        dovecot: Any, tmp_path: Path, ui_server: Callable[..., UIServer]) -> None:
    from archiver.offline.catalog import load
    from archiver.ui.render import view
    from tests.integration.ui import mail

    built = mail.build(dovecot, tmp_path, "127.0.0.1:9", "--format", "mbox")
    server = ui_server(built.dest)
    items = {i.text("subject"): i.entry.sha256
             for i in load(Archive.open_existing(built.dest)).items}
    sha = items[mail.HTML_SUBJECT]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    cookie = {"Cookie": f"archiver_ui_{server.port}={server.token}"}
    conn.request("GET", f"/a/1/m/{sha}/eml", headers=cookie)
    assert conn.getresponse().read() == built.messages["html"]
    part = view(built.messages["html"]).attachments[0].index
    conn.request("GET", f"/a/1/m/{sha}/part/{part}", headers=cookie)
    assert conn.getresponse().read() == mail.ATTACHMENT
    conn.request("GET", f"/a/1/m/{items[mail.LECTURE_SUBJECT]}", headers=cookie)
    assert "来週の講義の資料を送ります。" in conn.getresponse().read().decode()
    conn.close()


def post_form(server: UIServer, path: str, fields: dict[str, str]) -> tuple[int, str, Any]:
    from urllib.parse import urlencode

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", path, body=urlencode(fields), headers={
        "Cookie": f"archiver_ui_{server.port}={server.token}",
        "Origin": f"http://127.0.0.1:{server.port}",
        "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    conn.close()
    return response.status, body, response


def test_the_start_page_opens_an_archive_anywhere_by_its_folder(
        big: Path, tmp_path: Path, ui_server: Callable[..., UIServer]) -> None:
    server = ui_server(None, home=tmp_path / "empty-home")
    status, _body, response = post_form(server, "/open", {"path": str(big)})
    assert status == 303
    assert get(server, response.getheader("Location"))[0] == 200
    assert str(big) in get(server, "/")[1]  # listed from now on
    status, body, _r = post_form(server, "/open", {"path": str(tmp_path)})
    assert status == 400 and "is not an archive" in body
    status, body, _r = post_form(server, "/open", {"path": "relative/dir"})
    assert status == 400
