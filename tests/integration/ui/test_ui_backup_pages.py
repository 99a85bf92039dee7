"""The guided backup's pages over HTTP (Starlette's test client, no browser), real Dovecot.

Steps 1 to 3 as a browser would post them, the event stream the progress
page reads, errors in the CLI's words and in the page's language, the
one-job rule, and the Origin check in front of every POST.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.ui.backup_job import BackupJob, Request, SignIn
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import index_records, run_cli

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def client(tmp_path: Path) -> Any:
    from starlette.testclient import TestClient

    from archiver.ui.app import create_app

    app = create_app(None, "tok", port=PORT, home=tmp_path / "home")
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/?token=tok").status_code == 200
        c.headers["Origin"] = BASE
        c.app_state = app.state  # the hub, for the tests' look behind the page
        yield c


def _form(dovecot: DovecotServer, user: MailUser, password: str) -> dict[str, str]:
    return {"preset": "url", "url": f"imaps://127.0.0.1:{dovecot.imaps_port}",
            "user": user.name, "password": password, "cafile": str(dovecot.cafile)}


def _events(client: Any) -> list[dict[str, Any]]:
    out = []
    with client.stream("GET", "/backup/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
                if out[-1]["final"]:
                    break
    return out


def test_sign_in_choose_back_up_watch_and_browse(client: Any, dovecot: DovecotServer,
                                                 loaded_user: Any, tmp_path: Path) -> None:
    user = loaded_user.user
    pages: list[str] = []
    r = client.get("/backup")
    pages.append(r.text)
    assert r.status_code == 200 and 'name="password"' in r.text
    r = client.post("/backup/signin", data=_form(dovecot, user, user.password),
                    files={"cafile_upload": ("", b"")})
    pages.append(r.text)
    assert r.status_code == 200 and r.url.path == "/backup/where", r.text
    assert corpus.JA_INBOX in r.text and corpus.JA_LAB in r.text
    assert str(tmp_path / "home" / f"{user.name}@127.0.0.1") in r.text
    assert 'id="fits"' in r.text and ">fits<" in r.text
    dest = tmp_path / "archive"
    r = client.post("/backup/where", data={"dest": str(dest), "format": "maildir",
                                           "action": "start"})
    pages.append(r.text)
    assert r.url.path == "/backup/progress"
    events = _events(client)
    final = events[-1]
    assert final["phase"] == "done" and final["percent"] == 100
    assert final["bytes_done"] == final["bytes_total"] > 0
    r = client.get("/backup/progress")  # a reload shows the final state
    pages.append(r.text)
    assert final["summary"] in r.text and 'id="browse"' in r.text
    link = r.text.split('id="browse" href="')[1].split('"')[0]
    r = client.get(link)
    pages.append(r.text)
    assert r.status_code == 200 and "講義" in r.text
    served = sum(len(v) for v in dovecot.fetch_all(user).values())
    assert len([x for x in index_records(dest) if x["type"] == "msg"]) == served
    everything = "".join(pages) + json.dumps(events)
    assert user.password not in everything


def _cli_error(dovecot: DovecotServer, user: MailUser, password: str, tmp_path: Path,
               lang: str) -> str:
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    code, _out, err = run_cli(["--lang", lang, "backup",
                               f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}",
                               str(tmp_path / "d"), "--cafile", str(dovecot.cafile),
                               "--password-file", str(pw)])
    assert code == 4, err
    return err.strip().splitlines()[-1].split(": ", 2)[-1]


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_wrong_password_is_the_cli_message_in_the_page_language_and_never_echoed(
        client: Any, dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        lang: str) -> None:
    wrong = "Wrong-" + mail_user.password
    expected = _cli_error(dovecot, mail_user, wrong, tmp_path, lang)
    client.cookies.set("archiver_lang", lang)
    r = client.post("/backup/signin", data=_form(dovecot, mail_user, wrong))
    assert r.status_code == 400
    from markupsafe import escape

    assert str(escape(expected)) in r.text, (expected, r.text)
    if lang == "ja":
        assert "ログイン" in expected or "パスワード" in expected, expected
    assert wrong not in r.text and "Traceback" not in r.text
    assert mail_user.name in r.text  # the user name is kept for the next try


def test_a_post_from_another_origin_is_refused_before_any_login(
        client: Any, dovecot: DovecotServer, mail_user: MailUser) -> None:
    r = client.post("/backup/signin", data=_form(dovecot, mail_user, mail_user.password),
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.app_state.ctx.backup_pages.hub.last is None


def test_one_backup_at_a_time_every_step_leads_to_the_running_one(
        client: Any, dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    hub = client.app_state.ctx.backup_pages.hub
    running = BackupJob(Request(SignIn("ecc-new", "x"), tmp_path / "x"), "pw")  # not final
    hub.job = running
    for r in (client.get("/backup"), client.get("/backup/where"),
              client.post("/backup/signin", data=_form(dovecot, mail_user, mail_user.password)),
              client.post("/backup/where", data={"action": "start"})):
        assert r.url.path == "/backup/progress"
    assert hub.job is running and hub.last is None


def _big(size: int) -> bytes:
    import base64
    import random

    body = base64.encodebytes(random.Random(7).randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return b"Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body


def test_cancel_on_the_page_and_ctrl_c_on_the_server_save_what_came_and_a_rerun_goes_on(
        ui_server: Any, dovecot: DovecotServer, loaded_user: Any, tmp_path: Path) -> None:
    """Through a slowed line: Cancel mid-run, then again to the end; then a run stopped
    by Ctrl+C on ``archiver ui`` itself still saves its batch in flight."""
    import signal

    import httpx

    from tests.proxy import Fault, FaultProxy, every

    user = loaded_user.user
    dovecot.append(user, "INBOX", _big(1_200_000))
    served = sum(len(v) for v in dovecot.fetch_all(user).values())

    def session(server: Any) -> httpx.Client:
        c = httpx.Client(base_url=server.base, follow_redirects=True,
                         headers={"Origin": server.base}, timeout=60)
        assert c.get(server.url).status_code == 200
        return c

    def start(c: httpx.Client, port: int, dest: Path) -> None:
        form = {"preset": "url", "url": f"imaps://127.0.0.1:{port}", "user": user.name,
                "password": user.password, "cafile": str(dovecot.cafile)}
        assert c.post("/backup/signin", data=form).url.path == "/backup/where"
        r = c.post("/backup/where", data={"dest": str(dest), "action": "start"})
        assert r.url.path == "/backup/progress"

    def follow(c: httpx.Client, until: Any) -> dict[str, Any]:
        with c.stream("GET", "/backup/events") as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    snap = json.loads(line[6:])
                    if until(snap) or snap["final"]:
                        return snap
        raise AssertionError("the event stream ended without a final event")

    def records(dest: Path) -> list[tuple[str, int]]:
        return [(r["folder"], r["uid"]) for r in index_records(dest) if r["type"] == "msg"]

    dest = tmp_path / "a"
    with FaultProxy(dovecot.imaps_port, every(Fault(delay=0.01)), chunk=16384) as proxy:
        server = ui_server(None)
        c = session(server)
        start(c, proxy.port, dest)
        assert not follow(c, lambda s: s["bytes_done"] > 0)["final"]
        assert c.post("/backup/cancel").url.path == "/backup/progress"
        final = follow(c, lambda s: False)
        assert final["phase"] == "cancelled", final
        first = records(dest)
        assert 0 < len(first) < served
        start(c, proxy.port, dest)
        assert follow(c, lambda s: False)["phase"] == "done"
        assert sorted(records(dest)) == sorted(set(records(dest))) and len(records(dest)) == served

        other = tmp_path / "b"
        start(c, proxy.port, other)
        assert not follow(c, lambda s: s["bytes_done"] > 0)["final"]
        c.close()
        server.proc.send_signal(signal.SIGINT)  # Ctrl+C on `archiver ui`
        assert server.proc.wait(timeout=60) == 130
    saved = records(other)
    assert saved, ("the batch in flight was not saved when the server stopped",
                   server.proc.stderr.read().decode(errors="replace"))
    code, _out, err = run_cli(["backup", f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}",
                               str(other), "--cafile", str(dovecot.cafile),
                               "--password-file", str(_pwfile(tmp_path, user))])
    assert code == 0, err
    assert sorted(records(other)) == sorted(set(records(other))) and len(records(other)) == served


def _pwfile(tmp_path: Path, user: MailUser) -> Path:
    path = tmp_path / "pw"
    path.write_text(user.password + "\n")
    return path


def test_step_two_checks_another_folder_and_sign_out_forgets_the_password(
        client: Any, dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    from markupsafe import escape

    other = dovecot.new_user("other")
    taken = tmp_path / "taken"
    code, _out, _err = run_cli(["backup", f"imaps://{other.name}@127.0.0.1:{dovecot.imaps_port}",
                                str(taken), "--cafile", str(dovecot.cafile),
                                "--password-file", str(_pwfile(tmp_path, other))])
    assert code == 0
    expected = _cli_error_for(dovecot, mail_user, taken, tmp_path)
    r = client.post("/backup/signin", data=_form(dovecot, mail_user, mail_user.password))
    assert r.url.path == "/backup/where"
    r = client.post("/backup/where", data={"dest": str(taken), "format": "maildir",
                                           "action": "check"})
    assert r.url.path == "/backup/where"
    assert 'id="dest-problem"' in r.text and str(escape(expected)) in r.text
    assert 'id="start" disabled' in r.text
    hub = client.app_state.ctx.backup_pages.hub
    assert hub.pending() is not None
    r = client.post("/backup/where", data={"action": "forget"})
    assert r.url.path == "/backup" and hub.pending() is None
    assert client.get("/backup/where").url.path == "/backup"


def _cli_error_for(dovecot: DovecotServer, user: MailUser, dest: Path, tmp_path: Path) -> str:
    code, _out, err = run_cli(["backup", f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}",
                               str(dest), "--cafile", str(dovecot.cafile),
                               "--password-file", str(_pwfile(tmp_path, user))])
    assert code == 6, err
    return err.strip().splitlines()[-1].split(": ", 2)[-1]
