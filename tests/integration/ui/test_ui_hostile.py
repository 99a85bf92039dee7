"""A hostile HTML mail renders inert in a real browser: no script runs, nothing calls home.

The mail (tests/integration/ui/mail.py, hostile_message) tries a script
element, onload/onerror handlers, javascript: and data: links, a meta
refresh, a stylesheet, CSS background images, an iframe, an object, an SVG
image, a form and a video poster -- every remote URL pointing at a local
listener that records any connection.  After the page loaded and the links
were clicked, the DOM must hold none of it and the listener must have seen
nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.ui import mail
from tests.integration.ui.conftest import Browser, Listener, UIServer, shot

pytestmark = pytest.mark.timeout(180)


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


# in the mail's part of the document (the head is the page's own wrapper: charset,
# referrer policy, base target, a style for images) -- and any script anywhere
DANGEROUS = ", ".join(["script"] + ["body " + s for s in (
    "iframe", "object", "embed", "form", "base", "meta", "link", "style", "svg", "video",
    "[onload]", "[onerror]", "[onclick]", "[onmouseover]", "[srcdoc]",
    "a[href^='javascript' i]", "a[href^=' javascript' i]", "a[href^='data' i]",
    "img[src^='http' i]", "[style*='url' i]", "[poster]")] + ["body[onload]"])


def test_a_hostile_html_mail_renders_inert_and_calls_nobody(
        browser: Browser, archive_server: UIServer, remote_listener: Listener) -> None:
    d = browser.driver
    browser.open(archive_server.url)
    browser.open(f"{archive_server.base}/a/1/search?q={mail.HOSTILE_SUBJECT}")
    d.find_element(_by("LINK_TEXT"), mail.HOSTILE_SUBJECT).click()
    title = d.title
    frame = d.find_element(_by("CSS_SELECTOR"), "iframe.html-part")
    d.switch_to.frame(frame)
    try:
        assert d.find_element(_by("ID"), "hostile-text").text == "hostile body text"
        found = d.find_elements(_by("CSS_SELECTOR"), DANGEROUS)
        assert [e.tag_name for e in found] == []
        titles = [t.get_attribute("textContent") for t in
                  d.find_elements(_by("TAG_NAME"), "title")]
        assert "PWNED" not in titles  # no script set document.title in the frame
        for link in ("jslink", "jslink2", "datalink"):
            element = d.find_element(_by("ID"), link)
            assert element.get_attribute("href") is None
            element.click()
    finally:
        d.switch_to.default_content()
    time.sleep(1.5)  # time for anything that was going to load or navigate
    assert d.title == title and "PWNED" not in d.title
    assert len(d.window_handles) == 1
    shot(browser, "07-message-hostile-html")
    assert remote_listener.hits == []
