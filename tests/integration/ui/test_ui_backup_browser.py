"""The guided backup in a real browser (Debian's chromium through selenium), real Dovecot.

A student's path: the start page, sign in to the suite's Dovecot with its own
CA file (uploaded through the page), the folder list with the Japanese
folders, Start, the progress page updating live (server-sent events, no
reload) up to 100 %, then the archive's Japanese folder in the browse pages.
The server is reached through a slowed proxy so the live updates can be seen.
Screenshots of each step go to the harness's artefact directory.
"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path
from typing import Any, Callable

from tests import corpus
from tests.dovecot import DovecotServer
from tests.helpers import index_records
from tests.integration.ui.conftest import Browser, UIServer, remove_artifacts, shot
from tests.proxy import Fault, FaultProxy, every


def _big_message(size: int) -> bytes:
    raw = random.Random(15).randbytes(size * 3 // 4)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (b"From: lab@example.jp\r\nSubject: data\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\n" + body)


def _wait(predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def test_a_student_backs_up_watches_it_live_and_opens_the_japanese_folder(
        ui_server: Callable[..., UIServer], browser: Browser, dovecot: DovecotServer,
        loaded_user: Any) -> None:
    from selenium.webdriver.common.by import By

    remove_artifacts("backup-")
    user = loaded_user.user
    dovecot.append(user, "INBOX", _big_message(3_000_000))
    served = sum(len(v) for v in dovecot.fetch_all(user).values())
    server = ui_server(None)
    d = browser.driver
    sources: list[str] = []

    def find(css: str) -> Any:
        return d.find_element(By.CSS_SELECTOR, css)

    with FaultProxy(dovecot.imaps_port, every(Fault(delay=0.01)), chunk=16384) as proxy:
        browser.open(server.url)
        d.find_element(By.LINK_TEXT, "Back up a mailbox").click()
        _wait(lambda: d.current_url.endswith("/backup"))
        find("#preset-url").click()
        find("#url").send_keys(f"imaps://127.0.0.1:{proxy.port}")
        find("#user").send_keys(user.name)
        find("#password").send_keys(user.password)
        find("details summary").click()
        find("#cafile_upload").send_keys(str(dovecot.cafile))
        shot(browser, "backup-1-signin")
        find("#signin").click()

        _wait(lambda: "/backup/where" in d.current_url)
        sources.append(d.page_source)
        names = [td.text for td in d.find_elements(By.CSS_SELECTOR, "#folders td.name")]
        assert corpus.JA_INBOX in names and corpus.JA_LAB in names, names
        assert find("#fits").text == "fits"
        dest = Path(find("#dest").get_attribute("value"))
        assert dest == server.home / f"{user.name}@127.0.0.1"
        shot(browser, "backup-2-where")
        find("#start").click()

        _wait(lambda: "/backup/progress" in d.current_url)
        d.execute_script("window.__sameLoad = true;")  # gone if the page reloads

        def midway() -> bool:
            text = find("#percent").text.rstrip(" %")
            return text.isdigit() and 0 < int(text) < 100 and bool(find("#folder").text)

        _wait(midway, timeout=60, step=0.02)
        assert d.execute_script("return window.__sameLoad === true;"), "not live: reloaded"
        shot(browser, "backup-3-progress")
        sources.append(d.page_source)
        _wait(lambda: d.find_elements(By.ID, "browse"), timeout=60)  # final: reloaded
    assert find("#percent").text == "100 %"
    assert find("#phase").get_attribute("data-phase") == "done"
    assert "new messages" in find("#summary").text
    sources.append(d.page_source)
    shot(browser, "backup-4-done")
    assert len([r for r in index_records(dest) if r["type"] == "msg"]) == served

    d.find_element(By.LINK_TEXT, "日本語").click()  # the same final state, in Japanese
    _wait(lambda: find("#phase").text == "完了しました")
    assert "通" in find("#messages").text and find("#percent").text == "100 %"
    assert "new messages" not in find("#summary").text  # the CLI's summary, in Japanese
    shot(browser, "backup-4-done-ja")
    find("#browse").click()
    _wait(lambda: "/a/" in d.current_url)
    d.find_element(By.PARTIAL_LINK_TEXT, corpus.JA_INBOX.split("/")[-1]).click()
    _wait(lambda: "/folder" in d.current_url)
    rows = d.find_elements(By.CSS_SELECTOR, "table.messages tbody tr")
    expected = len(dovecot.fetch_all(user)[corpus.JA_INBOX])
    assert len(rows) == expected > 0
    shot(browser, "backup-5-japanese-folder")
    sources.append(d.page_source)
    assert not any(user.password in s for s in sources)
