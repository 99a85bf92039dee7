"""Browsing a real backup in a real browser: a Japanese folder, a Japanese search, an
HTML mail with an inline image, its attachment and the .eml, byte for byte.

One ``archiver ui DEST`` process and one chromium for the module; a
screenshot of every page goes to the artefact directory (conftest.shot).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archiver.archive import Archive
from archiver.offline.catalog import load
from tests.integration.ui import mail
from tests.integration.ui.conftest import Browser, UIServer, shot

pytestmark = pytest.mark.timeout(300)


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def _stored(dest: Path, subject: str) -> bytes:
    archive = Archive.open_existing(dest)
    item = next(i for i in load(archive).items if i.text("subject") == subject)
    return (dest / item.entry.path).read_bytes()


def _signed_in(browser: Browser, archive_server: UIServer) -> None:
    browser.open(archive_server.url)
    assert "token=" not in browser.driver.current_url  # the redirect took it out of the URL


def test_the_printed_url_opens_the_archive_and_lists_its_japanese_folders(
        browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    assert d.current_url == f"{archive_server.base}/a/1/"
    links = [a.text for a in d.find_elements(_by("CSS_SELECTOR"), "table.folders a")]
    assert "講義" in links and "ゼミ 資料" in links and "INBOX" in links
    parents = [s.text for s in d.find_elements(_by("CSS_SELECTOR"), "table.folders td.name")]
    assert "受信箱" in parents and "研究室" in parents
    assert "フォルダー" in d.page_source  # --lang ja: the page is Japanese
    shot(browser, "01-archive-folders")


def test_a_japanese_folder_lists_its_messages_decoded_with_read_and_flagged_state(
        browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    d.find_element(_by("LINK_TEXT"), "ゼミ 資料").click()
    assert d.find_element(_by("TAG_NAME"), "h1").text == mail.SEMINAR
    rows = d.find_elements(_by("CSS_SELECTOR"), "table.messages tbody tr")
    subjects = [r.find_element(_by("CSS_SELECTOR"), "td.subject").text for r in rows]
    assert subjects == ["ゼミの日程", mail.HTML_SUBJECT]  # newest first
    html_row = rows[1]
    assert "unread" in html_row.get_attribute("class")
    assert html_row.find_elements(_by("CSS_SELECTOR"), ".flag")  # \Flagged
    assert "教授" in html_row.find_element(_by("CSS_SELECTOR"), "td.from").text
    assert "unread" not in rows[0].get_attribute("class")
    shot(browser, "02-folder-list")


def test_a_japanese_search_finds_by_substring_and_by_words_with_a_space(
        browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    box = d.find_element(_by("NAME"), "q")
    box.send_keys("議事録")
    box.submit()  # a JS form.submit(): it does not wait for the results page
    deadline = time.monotonic() + 30
    while not ("/search" in d.current_url
               and d.execute_script("return document.readyState") == "complete") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    subjects = [e.text for e in d.find_elements(_by("CSS_SELECTOR"), "td.subject")]
    assert subjects == [mail.HTML_SUBJECT]
    shot(browser, "03-search-japanese")
    browser.open(f"{archive_server.base}/a/1/search?q=講義 資料")  # a space between Japanese words
    subjects = [e.text for e in d.find_elements(_by("CSS_SELECTOR"), "td.subject")]
    assert subjects == [mail.LECTURE_SUBJECT]
    browser.open(f"{archive_server.base}/a/1/search?q=ダメ文字&body=1")  # in the Shift_JIS body
    subjects = [e.text for e in d.find_elements(_by("CSS_SELECTOR"), "td.subject")]
    assert subjects == ["ゼミの日程"]


def test_an_html_mail_renders_sanitised_with_its_inline_image_and_decoded_headers(
        browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    browser.open(f"{archive_server.base}/a/1/search?q=議事録")
    d.find_element(_by("LINK_TEXT"), mail.HTML_SUBJECT).click()
    assert d.find_element(_by("CSS_SELECTOR"), "h1.subject").text == mail.HTML_SUBJECT
    headers = d.find_element(_by("CSS_SELECTOR"), "table.headers").text
    assert "教授 <prof@example.jp>" in headers and "1999" in headers
    attachments = [a.text for a in d.find_elements(_by("CSS_SELECTOR"), "section.attachments a")]
    assert attachments == [mail.ATTACHMENT_NAME]
    frame = d.find_element(_by("CSS_SELECTOR"), "iframe.html-part")
    assert frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
    d.switch_to.frame(frame)
    try:
        assert d.find_element(_by("TAG_NAME"), "h1").text == mail.HTML_TEXT
        logo = d.find_element(_by("ID"), "logo")
        assert logo.get_attribute("src").startswith("data:image/png;base64,")
        assert d.execute_script("return arguments[0].naturalWidth", logo) == 1  # it decoded
    finally:
        d.switch_to.default_content()
    shot(browser, "04-message-html")
    d.find_element(_by("PARTIAL_LINK_TEXT"), "テキスト").click()  # "show as plain text"
    assert f"{mail.HTML_TEXT}（テキスト版）" in d.find_element(
        _by("CSS_SELECTOR"), "pre.text-part").text


def test_the_attachment_downloads_with_its_decoded_name_and_exact_bytes(
        browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    browser.open(f"{archive_server.base}/a/1/search?q=議事録")
    d.find_element(_by("LINK_TEXT"), mail.HTML_SUBJECT).click()
    d.find_element(_by("LINK_TEXT"), mail.ATTACHMENT_NAME).click()
    got = browser.wait_download(".pdf")
    assert got.name == mail.ATTACHMENT_NAME
    assert got.read_bytes() == mail.ATTACHMENT


def test_save_as_eml_gives_the_stored_message_byte_for_byte(
        browser: Browser, archive_server: UIServer, ui_archive: mail.UIArchive) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    browser.open(f"{archive_server.base}/a/1/search?q=講義資料")
    d.find_element(_by("LINK_TEXT"), mail.LECTURE_SUBJECT).click()
    shot(browser, "05-message-iso2022jp")
    assert "来週の講義の資料を送ります。" in d.find_element(
        _by("CSS_SELECTOR"), "pre.text-part").text
    assert "山田 太郎" in d.find_element(_by("CSS_SELECTOR"), "table.headers").text
    d.find_element(_by("CSS_SELECTOR"), "a[href$='/eml']").click()
    got = browser.wait_download(".eml")
    assert got.read_bytes() == _stored(ui_archive.dest, mail.LECTURE_SUBJECT)
    assert got.read_bytes() == ui_archive.messages["lecture"]


def test_the_page_speaks_english_when_asked(browser: Browser, archive_server: UIServer) -> None:
    _signed_in(browser, archive_server)
    d = browser.driver
    d.find_element(_by("LINK_TEXT"), "English").click()
    assert "Folders" in d.find_element(_by("TAG_NAME"), "main").text
    shot(browser, "06-archive-english")
    d.find_element(_by("LINK_TEXT"), "日本語").click()
    time.sleep(0.1)
    assert "フォルダー" in d.find_element(_by("TAG_NAME"), "main").text


def test_without_dest_the_start_page_lists_the_archives_and_opens_one(
        browser: Browser, ui_server: Any, tmp_path: Path) -> None:
    from tests.integration.ui.synthetic import make_archive

    home = tmp_path / "MailArchive"
    make_archive(home / "old-eccs", 3, files=True)
    server = ui_server(None, "--lang", "ja", home=home)
    browser.open(server.url)
    d = browser.driver
    assert d.find_element(_by("TAG_NAME"), "h1").text == "メールアーカイブ"
    shot(browser, "00-start-page")
    d.find_element(_by("LINK_TEXT"), "old-eccs").click()
    assert d.find_element(_by("TAG_NAME"), "h1").text == "old-eccs"
    d.find_element(_by("LINK_TEXT"), "INBOX").click()
    assert len(d.find_elements(_by("CSS_SELECTOR"), "table.messages tbody tr")) == 3
    d.find_elements(_by("CSS_SELECTOR"), "table.messages tbody td.from")[0].click()  # row click
    assert d.find_element(_by("CSS_SELECTOR"), "h1.subject").text.endswith("#3")
