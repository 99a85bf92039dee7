"""The archive page's "Open in Thunderbird" button, over HTTP and once in chromium.

HOME points at a temporary Thunderbird directory (``~/.thunderbird/profiles.ini``
and a default profile, as Thunderbird writes them), so the button installs
where ``archiver export DEST --to thunderbird`` would: the test compares the
two trees, then checks a second click adds nothing, a held profile lock gives
the CLI's own one-line refusal in the page's language, and a POST from
another origin is refused before anything is written.
"""

from __future__ import annotations

import mailbox
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from markupsafe import escape

from archiver.archive import Archive
from archiver.export.install import RECORD, default_name
from tests.dovecot import DovecotServer
from tests.helpers import build_archive, index_records, run_cli
from tests.integration.ui.conftest import Browser, UIServer, shot

pytestmark = pytest.mark.timeout(180)

PORT = 8766
BASE = f"http://127.0.0.1:{PORT}"
PROFILE = "abcd1234.default-release"


@pytest.fixture(scope="module")
def archive_dir(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(dovecot, tmp_path_factory.mktemp("uiexport"))


def thunderbird_home(home: Path) -> Path:
    """``home/.thunderbird`` with one default profile; returns the profile directory."""
    root = home / ".thunderbird"
    profile = root / PROFILE
    profile.mkdir(parents=True)
    (root / "profiles.ini").write_text(textwrap.dedent(f"""\
        [Profile0]
        Name=default-release
        IsRelative=1
        Path={PROFILE}
        Default=1

        [General]
        StartWithLastProfile=1
        Version=2
        """), encoding="utf-8")
    (profile / "prefs.js").write_text(textwrap.dedent("""\
        // Mozilla User Preferences
        user_pref("mail.accountmanager.accounts", "account1,account2");
        user_pref("mail.accountmanager.localfoldersserver", "server2");
        user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders");
        user_pref("mail.server.server2.hostname", "Local Folders");
        user_pref("mail.server.server2.type", "none");
        """), encoding="utf-8")
    return profile


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME (where export/profile.py looks for profiles.ini) is a temporary directory."""
    where = tmp_path / "home"
    where.mkdir()
    monkeypatch.setenv("HOME", str(where))
    monkeypatch.delenv("APPDATA", raising=False)
    return where


@pytest.fixture
def client(tmp_path: Path, archive_dir: Path, home: Path) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from archiver.ui.app import create_app

    app = create_app(archive_dir, "tok", port=PORT, home=tmp_path / "ui-home")
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/?token=tok").status_code == 200
        c.headers["Origin"] = BASE
        c.app_state = app.state
        yield c


def click_export(client: Any, **form: str) -> Any:
    """POST the archive page's form, then follow the result page until it is done."""
    r = client.post("/a/1/export", data=form or {"to": "thunderbird"})
    assert r.status_code == 200 and r.url.path == "/export", r.text
    deadline = time.monotonic() + 60
    while 'data-state="running"' in r.text:
        assert '<meta http-equiv="refresh" content="1">' in r.text  # it reloads itself
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.1)
        r = client.get("/export")
    return r


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RECORD}


def mbox_count(root: Path) -> int:
    return sum(len(mailbox.mbox(p, create=False)) for p in root.rglob("*")
               if p.is_file() and p.name != RECORD and p.stat().st_size)


def test_open_in_thunderbird_installs_what_the_cli_would_and_a_second_click_adds_nothing(
        client: Any, archive_dir: Path, home: Path, tmp_path: Path) -> None:
    profile = thunderbird_home(home)
    page = client.get("/a/1/")
    assert page.text.count('id="thunderbird"') == 1 and "--to thunderbird" not in page.text
    assert page.text.count("archiver restore ") == 2  # restore stays a command
    r = click_export(client)
    assert 'data-state="done"' in r.text, r.text
    wrapper_name = default_name(Archive.open_existing(archive_dir))
    assert wrapper_name.startswith("old-mail (offline")
    local = profile / "Mail" / "Local Folders"
    box = local / f"{wrapper_name}.sbd"
    assert (local / wrapper_name).is_file()
    out = tmp_path / "cli-out"
    code, _o, err = run_cli(["export", str(archive_dir), str(out), "--to", "thunderbird"])
    assert code == 0, err
    assert tree(box) == tree(out / f"{wrapper_name}.sbd")  # the same bytes as the CLI's
    archived = [x for x in index_records(archive_dir) if x["type"] == "msg"]
    n = mbox_count(box)
    assert n == len(archived) > 0
    assert f"exported {n} messages" in r.text and str(escape(wrapper_name)) in r.text
    assert "start Thunderbird: Local Folders" in r.text

    again = click_export(client)
    assert "exported 0 messages" in again.text, again.text
    assert f"{n} messages were exported before and not added again" in again.text
    assert tree(box) == tree(out / f"{wrapper_name}.sbd")


def _cli_refusal(archive_dir: Path, profile: Path, lang: str) -> str:
    code, _o, err = run_cli(["--lang", lang, "export", str(archive_dir), "--to", "thunderbird"])
    assert code == 2 and err.count("\n") == 1, err
    return err.strip().split(": ", 2)[2]  # "archiver: error: MESSAGE" -> MESSAGE


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_running_thunderbird_gives_the_cli_refusal_in_the_page_language(
        client: Any, archive_dir: Path, home: Path, lang: str) -> None:
    profile = thunderbird_home(home)
    (profile / ".parentlock").write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_WRONLY)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("held", flush=True)
        time.sleep(60)
        """), str(profile / ".parentlock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        expected = _cli_refusal(archive_dir, profile, lang)
        client.cookies.set("archiver_lang", lang)
        r = click_export(client)
    finally:
        holder.kill()
        holder.wait()
    assert 'data-state="failed"' in r.text
    assert str(escape(expected)) in r.text, (expected, r.text)
    assert ("Thunderbird" in expected and "quit" in expected) if lang == "en" \
        else "終了" in expected, expected
    assert 'id="hint"' in r.text and "Traceback" not in r.text
    assert not (profile / "Mail").exists()


def test_without_a_thunderbird_profile_the_page_says_what_to_do(
        client: Any, archive_dir: Path, home: Path) -> None:
    r = click_export(client)
    assert 'data-state="failed"' in r.text
    assert "no default Thunderbird profile found" in r.text and 'id="hint"' in r.text
    assert "started once" in r.text


def test_a_post_from_another_origin_exports_nothing(client: Any, home: Path) -> None:
    profile = thunderbird_home(home)
    r = client.post("/a/1/export", data={"to": "thunderbird"},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.app_state.ctx.export_pages.job is None
    assert not (profile / "Mail").exists()


def test_export_to_a_folder_writes_maildir_and_refuses_a_full_folder_like_the_cli(
        client: Any, archive_dir: Path, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    r = click_export(client, to="maildir", out=str(out))
    assert 'data-state="done"' in r.text, r.text
    archived = [x for x in index_records(archive_dir) if x["type"] == "msg"]
    files = [p for p in out.rglob("*") if p.is_file() and p.parent.name in ("cur", "new")]
    assert len(files) == len(archived)
    assert f"exported {len(archived)} messages" in r.text
    code, _o, err = run_cli(["export", str(archive_dir), str(out), "--to", "maildir"])
    assert code != 0
    r = click_export(client, to="maildir", out=str(out))
    assert 'data-state="failed"' in r.text
    assert str(escape(err.strip().split(": ", 2)[2])) in r.text, (err, r.text)


def test_the_button_in_chromium(archive_dir: Path, tmp_path: Path, browser: Browser,
                                ui_server: Callable[..., UIServer]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home = tmp_path / "home"
    profile = thunderbird_home(home)
    server = ui_server(archive_dir, "--lang", "ja", env={"HOME": str(home)})
    browser.open(server.url)
    button = browser.driver.find_element(By.ID, "thunderbird")
    browser.driver.execute_script("arguments[0].scrollIntoView()", button)
    shot(browser, "export-1-archive")
    button.click()
    WebDriverWait(browser.driver, 60).until(
        lambda d: d.find_element(By.ID, "export-result").get_attribute("data-state") != "running")
    shot(browser, "export-2-done")
    assert browser.driver.find_element(By.ID, "export-result").get_attribute(
        "data-state") == "done"
    assert "Thunderbird" in browser.driver.find_element(By.ID, "summary").text
    assert mbox_count(profile / "Mail" / "Local Folders") == len(
        [x for x in index_records(archive_dir) if x["type"] == "msg"])


def test_one_export_at_a_time_and_the_working_page_reloads_itself(
        client: Any, archive_dir: Path, home: Path) -> None:
    from archiver.ui.export_routes import ExportJob

    profile = thunderbird_home(home)
    pages = client.app_state.ctx.export_pages
    running = ExportJob(key="1", dest=archive_dir, kind="thunderbird")  # never started
    pages.job = running
    r = client.post("/a/1/export", data={"to": "thunderbird"})
    assert r.url.path == "/export" and pages.job is running
    assert 'data-state="running"' in r.text and 'id="working"' in r.text
    assert '<meta http-equiv="refresh" content="1">' in r.text
    assert not (profile / "Mail").exists()
    running.ended = running.started  # it ended: the next click starts a new export
    r = click_export(client)
    assert pages.job is not running and 'data-state="done"' in r.text
    assert '<meta http-equiv="refresh"' not in r.text
