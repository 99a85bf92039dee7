"""The HTML sanitiser and the choice of parts, without a browser (nh3 from the ui extra)."""

from __future__ import annotations

import re

# nh3 comes with the test extra (it includes the ui extra): missing, this module fails
from archiver.ui.render import attachment, html_document, sanitise, view
from tests.integration.ui import mail


def test_sanitise_drops_scripts_handlers_javascript_links_and_remote_images() -> None:
    clean = sanitise(mail.hostile_message("198.51.100.7:80").decode().split("\r\n\r\n", 1)[1])
    low = clean.lower()
    assert "<script" not in low and "document.title" not in low
    assert not re.search(r"\son\w+\s*=", low)
    assert "javascript:" not in low and "data:text" not in low
    assert "198.51.100.7" not in clean  # no remote URL survives anywhere
    for tag in ("<iframe", "<object", "<form", "<meta", "<link", "<style", "<base", "<svg"):
        assert tag not in low
    assert "hostile body text" in clean


def test_cid_images_become_data_uris_and_other_images_vanish() -> None:
    images = {"logo@x": "data:image/png;base64,AAAA"}
    clean = sanitise('<img src="cid:logo@x"><img src="cid:missing"><img src="https://t.example/p">'
                     '<img src="data:image/gif;base64,R0lG">', images)
    assert clean.count("<img") == 4
    assert clean.count("src=") == 2
    assert 'src="data:image/png;base64,AAAA"' in clean
    assert 'src="data:image/gif;base64,R0lG"' in clean


def test_links_keep_http_and_mailto_with_noopener() -> None:
    clean = sanitise('<a href="https://example.jp/">a</a><a href="mailto:x@example.jp">m</a>')
    assert 'href="https://example.jp/"' in clean and 'href="mailto:x@example.jp"' in clean
    assert clean.count('rel="noopener noreferrer nofollow"') == 2


def test_style_keeps_looks_but_not_urls_or_positioning() -> None:
    clean = sanitise('<p style="color: red; position: fixed; background-image: url(http://x/)">'
                     "t</p>")
    assert 'style="color:red"' in clean


def test_the_message_view_prefers_html_and_lists_the_attachment_with_its_decoded_name() -> None:
    shown = view(mail.html_message())
    assert [p.kind for p in shown.parts] == ["html"]
    assert shown.has_text_alternative
    assert [a.name for a in shown.attachments] == [mail.ATTACHMENT_NAME]
    as_text = view(mail.html_message(), prefer_text=True)
    assert as_text.parts[0].kind == "text" and mail.HTML_TEXT in as_text.parts[0].text
    assert attachment(mail.html_message(), shown.attachments[0].index) == (
        mail.ATTACHMENT_NAME, mail.ATTACHMENT)
    document = html_document(mail.html_message(), shown.parts[0].index)
    assert document is not None and "data:image/png;base64," in document


def test_headers_in_iso_2022_jp_and_bodies_in_shift_jis_are_decoded() -> None:
    lecture = view(mail.lecture_message())
    assert ("From", "山田 太郎 <yamada@example.jp>") in lecture.headers
    assert ("Subject", mail.LECTURE_SUBJECT) in lecture.headers
    sjis = view(mail.seminar_sjis_message())
    assert "表・ソ・能" in sjis.parts[0].text


def test_a_message_that_is_not_mime_at_all_still_shows_its_text() -> None:
    shown = view(b"no headers at all\r\njust \x1b[31mtext\r\n")
    assert shown.parts and "just" in shown.parts[0].text and "\x1b" not in shown.parts[0].text
