"""Staff archive a mailbox with an administrator (Dovecot master user) login.

The test Dovecot has master user ``admin`` (tests/dovecot.py: a ``passdb``
with ``master = yes``, ``auth_master_user_separator = *``).  The archive
belongs to the mailbox user whichever login reached it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer, MailUser
from tests.helpers import archived_files, backup, password_file, run_cli


def _admin_pw(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    pw = where / "admin.pw"
    pw.write_text(MASTER_PASSWORD + "\n")
    return pw


def _url(dovecot: DovecotServer, user: str, scheme: str = "imaps") -> str:
    port = dovecot.imaps_port if scheme == "imaps" else dovecot.pop3s_port
    return f"{scheme}://{user}@127.0.0.1:{port}"


def _master_backup(dovecot: DovecotServer, user: str, dest: Path, *extra: str,
                   scheme: str = "imaps", env: dict[str, str] | None = None
                   ) -> tuple[int, str, str]:
    return run_cli(["backup", _url(dovecot, user, scheme), str(dest),
                    "--cafile", str(dovecot.cafile), "--timeout", "20",
                    "--master-user", MASTER_USER, *extra], env=env)


def _source(dest: Path) -> dict[str, str]:
    meta = json.loads((dest / ".archiver" / "archive.json").read_text())
    return dict(meta["source"])


def _served(dovecot: DovecotServer, user: MailUser) -> list[bytes]:
    return sorted(body for msgs in dovecot.fetch_all(user).values() for _, body, _, _ in msgs)


@pytest.mark.parametrize("mode", ["separator", "authzid"])
@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_admin_login_archives_the_users_mailbox_byte_exact(
        dovecot: DovecotServer, tmp_path: Path, mode: str, scheme: str) -> None:
    user = dovecot.new_user("staff")
    for i in range(3):
        dovecot.append(user, "INBOX", f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    if scheme == "imaps":
        dovecot.create_folder(user, "Sent")
        dovecot.append(user, "Sent", b"Subject: sent\r\n\r\nsent\r\n")
    dest = tmp_path / "a"
    # the user's own password variable is set to garbage: it must not be used
    code, out, err = _master_backup(
        dovecot, user.name, dest, "--master-login", mode,
        "--master-password-file", str(_admin_pw(tmp_path / "pw")), "--json",
        scheme=scheme, env={"ARCHIVER_PASSWORD": "not-alices-password"})
    assert code == 0, err
    assert json.loads(out)["status"] == "ok"
    assert sorted(archived_files(dest).values()) == _served(dovecot, user) if scheme == "imaps" \
        else sorted(archived_files(dest).values()) == sorted(
            body for _, body, _, _ in dovecot.fetch_all(user)["INBOX"])
    assert _source(dest)["user"] == user.name
    assert MASTER_PASSWORD not in "".join(
        p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file()
        and p.suffix != ".zst")


def test_admin_password_comes_from_the_environment(dovecot: DovecotServer,
                                                   tmp_path: Path) -> None:
    user = dovecot.new_user("staffenv")
    dovecot.append(user, "INBOX", b"Subject: e\r\n\r\ne\r\n")
    code, _, err = _master_backup(dovecot, user.name, tmp_path / "a", "--quiet",
                                  env={"ARCHIVER_MASTER_PASSWORD": MASTER_PASSWORD})
    assert code == 0, err
    assert _source(tmp_path / "a")["user"] == user.name


def test_admin_login_without_its_password_and_terminal_names_the_fixes(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.new_user("staffnopw")
    code, out, err = _master_backup(dovecot, user.name, tmp_path / "a", "--json",
                                    env={"ARCHIVER_PASSWORD": user.password})
    assert code == 2
    assert "--master-password-file" in err and "ARCHIVER_MASTER_PASSWORD" in err
    assert json.loads(out)["exit"] == 2


def test_users_own_password_file_is_refused_with_an_admin_login(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.new_user("staffboth")
    code, _, err = _master_backup(dovecot, user.name, tmp_path / "a", "--password-file",
                                  str(password_file(user, tmp_path / "pw")))
    assert code == 2 and "--master-password-file" in err and "Traceback" not in err


def test_users_own_login_continues_an_archive_made_by_the_admin(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.new_user("cont")
    dovecot.append(user, "INBOX", b"Subject: 1\r\n\r\none\r\n")
    dest = tmp_path / "a"
    code, _, err = _master_backup(dovecot, user.name, dest, "--quiet",
                                  "--master-password-file", str(_admin_pw(tmp_path / "pw")))
    assert code == 0, err
    dovecot.append(user, "INBOX", b"Subject: 2\r\n\r\ntwo\r\n")
    code, _, err = backup(dovecot, user, dest, "--quiet")
    assert code == 0, err
    assert sorted(archived_files(dest).values()) == _served(dovecot, user)
    # and back: the admin continues what the user made
    dovecot.append(user, "INBOX", b"Subject: 3\r\n\r\nthree\r\n")
    code, _, err = _master_backup(dovecot, user.name, dest, "--quiet", "--master-login",
                                  "authzid", "--master-password-file",
                                  str(_admin_pw(tmp_path / "pw")))
    assert code == 0, err
    assert sorted(archived_files(dest).values()) == _served(dovecot, user)
    assert _source(dest)["user"] == user.name


def test_admin_continues_an_archive_the_user_made(dovecot: DovecotServer,
                                                  tmp_path: Path) -> None:
    user = dovecot.new_user("mine")
    dovecot.append(user, "INBOX", b"Subject: 1\r\n\r\none\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, user, dest, "--quiet")[0] == 0
    dovecot.append(user, "INBOX", b"Subject: 2\r\n\r\ntwo\r\n")
    code, _, err = _master_backup(dovecot, user.name, dest, "--quiet", "--master-password-file",
                                  str(_admin_pw(tmp_path / "pw")))
    assert code == 0, err
    assert sorted(archived_files(dest).values()) == _served(dovecot, user)


def test_written_master_login_is_the_mailbox_users_archive(dovecot: DovecotServer,
                                                           tmp_path: Path) -> None:
    """``--user 'alice*admin'`` (no --master-user): alice's archive, with a note."""
    user = dovecot.new_user("literal")
    dovecot.append(user, "INBOX", b"Subject: 1\r\n\r\none\r\n")
    dest = tmp_path / "a"
    code, _, err = run_cli(["backup", _url(dovecot, user.name), str(dest), "--cafile",
                            str(dovecot.cafile), "--user", f"{user.name}*{MASTER_USER}",
                            "--password-file", str(_admin_pw(tmp_path / "pw")), "--quiet"])
    assert code == 0, err
    assert "--master-user" in err
    assert _source(dest)["user"] == user.name
    assert backup(dovecot, user, dest, "--quiet")[0] == 0


def test_archive_recorded_under_the_admin_login_is_accepted_and_corrected(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    """What the old code wrote ("alice*admin") is alice's: her login continues it."""
    user = dovecot.new_user("old")
    dovecot.append(user, "INBOX", b"Subject: 1\r\n\r\none\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, user, dest, "--quiet")[0] == 0
    meta_path = dest / ".archiver" / "archive.json"
    meta = json.loads(meta_path.read_text())
    meta["source"]["user"] = f"{user.name}*{MASTER_USER}"
    meta_path.write_text(json.dumps(meta))
    dovecot.append(user, "INBOX", b"Subject: 2\r\n\r\ntwo\r\n")
    code, _, err = backup(dovecot, user, dest, "--quiet")
    assert code == 0, err
    assert _source(dest)["user"] == user.name
    assert sorted(archived_files(dest).values()) == _served(dovecot, user)


def test_another_users_login_is_still_refused_for_that_archive(dovecot: DovecotServer,
                                                               tmp_path: Path) -> None:
    alice, bob = dovecot.new_user("alice"), dovecot.new_user("bob")
    dest = tmp_path / "a"
    code, _, err = _master_backup(dovecot, alice.name, dest, "--quiet",
                                  "--master-password-file", str(_admin_pw(tmp_path / "pw")))
    assert code == 0, err
    for run in (lambda: backup(dovecot, bob, dest, "--quiet", "--json"),
                lambda: _master_backup(dovecot, bob.name, dest, "--quiet", "--json",
                                       "--master-password-file",
                                       str(_admin_pw(tmp_path / "pw")))):
        code, out, err = run()
        assert code == 6, err
        assert alice.name in err and "Traceback" not in err
        assert json.loads(out) == {"status": "error", "exit": 6, "reason": "other-account",
                                   "error": err.strip().removeprefix("archiver: error: ")}


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
@pytest.mark.parametrize("mode", ["separator", "authzid"])
def test_admin_refusals_say_which_login_failed(dovecot: DovecotServer, tmp_path: Path,
                                              scheme: str, mode: str) -> None:
    """Dovecot tells a wrong admin password (and an unknown admin) from an unknown user."""
    user = dovecot.new_user("who")
    good = _admin_pw(tmp_path / "good")
    bad = tmp_path / "bad.pw"
    bad.write_text("not-the-admin-password\n")
    cases = [
        (user.name, MASTER_USER, bad, "admin-refused"),
        (user.name, "nobody-admin", good, "admin-refused"),
        ("no-such-user", MASTER_USER, good, "user-unknown"),
    ]
    messages = set()
    for mailbox, admin, pw, reason in cases:
        dest = tmp_path / f"d-{reason}-{admin}"
        code, out, err = run_cli(["backup", _url(dovecot, mailbox, scheme), str(dest),
                                  "--cafile", str(dovecot.cafile), "--master-user", admin,
                                  "--master-login", mode, "--master-password-file", str(pw),
                                  "--json"])
        assert code == 4, err
        got = json.loads(out)
        assert got["status"] == "error" and got["exit"] == 4
        assert got["reason"] == reason, (mailbox, admin, err)
        assert got["error"] in err and "Traceback" not in err
        assert "not-the-admin-password" not in err + out
        assert not dest.exists()
        messages.add(got["error"].split(":")[0])
        if reason == "admin-refused":
            assert f"admin login '{admin}'" in err and "--master-password-file" in err
        else:
            assert "no-such-user" in err and "admin login worked" in err


def test_users_own_wrong_password_is_a_plain_refusal(dovecot: DovecotServer,
                                                     tmp_path: Path) -> None:
    user = dovecot.new_user("own")
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong\n")
    code, out, err = run_cli(["backup", _url(dovecot, user.name), str(tmp_path / "a"),
                              "--cafile", str(dovecot.cafile), "--password-file", str(bad),
                              "--json"])
    assert code == 4
    assert json.loads(out)["reason"] == "refused"


def test_admin_password_never_reaches_the_trace_or_log(dovecot: DovecotServer,
                                                       tmp_path: Path) -> None:
    user = dovecot.new_user("trace")
    dovecot.append(user, "INBOX", b"Subject: t\r\n\r\nt\r\n")
    log = tmp_path / "trace.log"
    secrets = [MASTER_PASSWORD]
    import base64
    for mode in ("separator", "authzid"):
        blob = f"{user.name}\0{MASTER_USER}\0{MASTER_PASSWORD}".encode()
        secrets.append(base64.b64encode(blob).decode())
        code, out, err = run_cli(["--debug", "backup", _url(dovecot, user.name),
                                  str(tmp_path / f"a-{mode}"), "--cafile", str(dovecot.cafile),
                                  "--master-user", MASTER_USER, "--master-login", mode,
                                  "--master-password-file", str(_admin_pw(tmp_path / "pw")),
                                  "--log", str(log)])
        assert code == 0, err
        assert "AUTHENTICATE" in err or "LOGIN" in err  # the trace is there
        text = err + out + log.read_text()
        for secret in secrets:
            assert secret not in text, mode


def test_migrate_reads_the_source_through_the_admin_login(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    old = dovecot.new_user("mig")
    dovecot.append(old, "INBOX", b"Subject: m\r\nMessage-ID: <m@t>\r\n\r\nm\r\n")
    new = dovecot_new.new_user("mig")
    via = tmp_path / "via"
    code, out, err = run_cli([
        "migrate", _url(dovecot, old.name), f"imaps://{new.name}@127.0.0.1:{dovecot_new.imaps_port}",
        "--via", str(via), "--cafile", str(dovecot.cafile), "--master-user", MASTER_USER,
        "--master-password-file", str(_admin_pw(tmp_path / "pw")),
        "--target-cafile", str(dovecot_new.cafile),
        "--target-password-file", str(password_file(new, tmp_path / "pw-new")), "--json"])
    assert code == 0, err
    assert json.loads(out)["status"] == "ok"
    assert _source(via)["user"] == old.name
    assert _served(dovecot_new, new) == _served(dovecot, old)


def test_admin_password_is_asked_on_a_terminal_and_the_users_never(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    """On a terminal the only question is the admin's password ("Password for admin admin")."""
    import os
    import select
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    user = dovecot.new_user("tty")
    dovecot.append(user, "INBOX", b"Subject: t\r\n\r\nt\r\n")
    master_fd, slave_fd = os.openpty()
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARCHIVER_PASSWORD", "ARCHIVER_MASTER_PASSWORD")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "backup", _url(dovecot, user.name),
         str(tmp_path / "a"), "--cafile", str(dovecot.cafile), "--master-user", MASTER_USER,
         "--quiet"], stdin=slave_fd, stdout=slave_fd, stderr=slave_fd,
        env=dict(env, PYTHONPATH=str(REPO)), start_new_session=True)
    os.close(slave_fd)
    seen = b""
    asked = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master_fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master_fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                if seen.count(b"Password for") > asked:
                    asked += 1
                    os.write(master_fd, MASTER_PASSWORD.encode() + b"\n")
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(master_fd)
        if proc.poll() is None:
            proc.kill()
    text = seen.decode(errors="replace")
    assert code == 0, text
    assert asked == 1 and f"Password for admin {MASTER_USER}" in text, text
    assert MASTER_PASSWORD not in text
    assert _source(tmp_path / "a")["user"] == user.name


def test_admin_options_are_checked_before_anything_else(tmp_path: Path) -> None:
    url = "imaps://alice@127.0.0.1:1"
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    cases = [
        (["--master-password-file", str(pw)], "--master-user"),
        (["--master-login", "authzid"], "--master-user"),
        (["--master-user", "ad*min"], "admin name"),
        (["--master-user", "admin", "--master-separator", ""], "--master-separator"),
        (["--user", "alice*admin", "--master-user", "admin"], "already names an admin"),
    ]
    for extra, words in cases:
        code, out, err = run_cli(["backup", url, str(tmp_path / "a"), *extra, "--json"])
        assert code == 2 and words in err and "Traceback" not in err, (extra, err)
        assert json.loads(out)["exit"] == 2
        assert not (tmp_path / "a").exists()
