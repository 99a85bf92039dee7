"""The web page's test harness: ``archiver ui`` as a real process, and a real browser.

* :func:`ui_server` starts ``python -m archiver ui DEST --no-browser --port 0``
  (the OS picks the port), reads the one line it prints -- the URL with the
  token -- and stops it after the test.
* :func:`browser` is Debian's chromium driven by selenium through Debian's
  ``/usr/bin/chromedriver`` (selenium cannot download one here), headless,
  ``--no-sandbox`` (we run as root in CI).  As root a missing chromium or
  chromedriver FAILS the test; otherwise it is skipped with the command to
  install them (``scripts/test`` installs both).  Downloads go to a fresh
  directory per test (:attr:`Browser.downloads`).
* :func:`shot` saves a screenshot of the current page to the artefact
  directory, ``$ARCHIVER_ARTIFACTS/ui`` or ``tests/artifacts/ui`` (git
  ignores it; CI keeps it).

The uibackup tests use the same fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import pytest

from tests.helpers import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT = 30.0


def artifacts_dir() -> Path:
    base = os.environ.get("ARCHIVER_ARTIFACTS")
    path = Path(base) / "ui" if base else REPO / "tests" / "artifacts" / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class UIServer:
    """A running ``archiver ui``: its printed URL, the parts of it, and the process."""

    url: str  # http://127.0.0.1:PORT/?token=TOKEN, exactly as printed
    proc: subprocess.Popen[bytes]
    home: Path

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    @property
    def token(self) -> str:
        return urlsplit(self.url).query.partition("token=")[2]


def start_ui(args: list[str], home: Path, env: Optional[dict[str, str]] = None) -> UIServer:
    """``archiver ui ARGS --no-browser --port 0`` in a process; returns once it printed its URL."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), ARCHIVER_UI_HOME=str(home),
                    **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "ui", *args, "--no-browser",
                             "--port", "0"], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].strip():
        proc.kill()
        _out, err = proc.communicate(timeout=10)
        raise AssertionError(f"archiver ui printed no URL (exit {proc.returncode}): "
                             f"{err.decode(errors='replace')}")
    return UIServer(line[0].decode().strip(), proc, home)


def stop_ui(server: UIServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[Callable[..., UIServer]]:
    """``ui_server(DEST or None, *more_args, env=...)`` -> a running UIServer (stopped after)."""
    started: list[UIServer] = []

    def start(dest: Optional[Path], *args: str, env: Optional[dict[str, str]] = None,
              home: Optional[Path] = None) -> UIServer:
        where = home or tmp_path / "ui-home"
        where.mkdir(parents=True, exist_ok=True)
        server = start_ui([*( [str(dest)] if dest is not None else []), *args], where, env)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_ui(server)


@dataclass
class Browser:
    """A selenium Chrome driver and its download directory."""

    driver: Any
    downloads: Path

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait_download(self, name_suffix: str = "", timeout: float = 20.0) -> Path:
        """The one finished file in the download directory."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [p for p in self.downloads.iterdir()
                    if not p.name.endswith(".crdownload") and p.name.endswith(name_suffix)]
            partial = [p for p in self.downloads.iterdir() if p.name.endswith(".crdownload")]
            if done and not partial:
                return done[0]
            time.sleep(0.1)
        raise AssertionError(f"no download in {self.downloads}: "
                             f"{[p.name for p in self.downloads.iterdir()]}")

    def clear_downloads(self) -> None:
        for p in self.downloads.iterdir():
            p.unlink()


def _require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not missing:
        return
    text = (f"missing {', '.join(missing)}: apt-get install chromium chromium-driver "
            "(scripts/test installs them)")
    if os.geteuid() == 0:  # CI: a missing prerequisite must not pass unseen
        pytest.fail(text)
    pytest.skip(text)


@pytest.fixture(scope="session")
def _chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-US", "--no-first-run",
                "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
        "safebrowsing.enabled": False,
        "intl.accept_languages": "en-US,en",
    })
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()


@pytest.fixture
def browser(_chrome: Browser) -> Iterator[Browser]:
    """The session's browser, with no cookies and an empty download directory."""
    _chrome.driver.delete_all_cookies()
    _chrome.clear_downloads()
    yield _chrome
    try:
        _chrome.driver.delete_all_cookies()
    except Exception:  # noqa: BLE001 - a closed window: the next test's get() reopens
        pass


def shot(browser: Browser, name: str) -> Path:
    """Save a screenshot of the page now shown as ``<artefacts>/<name>.png``."""
    path = artifacts_dir() / f"{name}.png"
    browser.driver.save_screenshot(str(path))
    return path


def remove_artifacts(prefix: str) -> None:
    for p in artifacts_dir().glob(prefix + "*"):
        if p.is_file():
            p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (the "remote" host).

    A sanitised mail must make the browser send it nothing at all.
    """

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.hits: list[bytes] = []
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(4096) or b"(connected)")
                    conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    self.hits.append(b"(connected)")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="session")
def remote_listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def ui_archive(dovecot: Any, tmp_path_factory: pytest.TempPathFactory,
               remote_listener: Listener) -> Any:
    """A real backup of tests/integration/ui/mail.py's messages (mail.UIArchive)."""
    from tests.integration.ui import mail

    return mail.build(dovecot, tmp_path_factory.mktemp("ui"), remote_listener.address)


@pytest.fixture(scope="session")
def archive_server(ui_archive: Any, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[UIServer]:
    """``archiver ui DEST --lang ja`` on :func:`ui_archive`, for the whole session."""
    running = start_ui([str(ui_archive.dest), "--lang", "ja"], tmp_path_factory.mktemp("home"))
    yield running
    stop_ui(running)
