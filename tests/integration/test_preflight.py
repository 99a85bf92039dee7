"""`archiver folders`, `archiver check` and the start of a backup against a real Dovecot:
folder listing, space check, patterns that match nothing, DEST checked before the password."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from archiver.fsutil import hold_lock
from archiver.space import METADATA_FIXED, METADATA_PER_MESSAGE
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli, source_args

SENT_JA = "送信済み"
DRAFTS_JA = "草稿"  # a name archiver does not know: only its SPECIAL-USE says \Drafts


def server_args(server: DovecotServer, user: MailUser, where: Path) -> list[str]:
    pw = password_file(user, where / ".pw")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}", "--cafile",
            str(server.cafile), "--password-file", str(pw), "--timeout", "20"]


def check(server: DovecotServer, user: MailUser, dest: Path, *extra: str,
          pw_dir: Path | None = None) -> tuple[int, str, str]:
    if pw_dir is None:
        return run_cli(["check", *source_args(server, user, dest), *extra])
    src = server_args(server, user, pw_dir)
    return run_cli(["check", src[0], str(dest), *src[1:], *extra])


@pytest.fixture(scope="module")
def dovecot_ja(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot whose Sent folder is 送信済み, marked \\Sent (SPECIAL-USE), and whose
    Drafts folder is 草稿, marked \\Drafts."""
    extra = f"""
namespace inbox {{
  mailbox {SENT_JA} {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox {DRAFTS_JA} {{
    special_use = \\Drafts
    auto = subscribe
  }}
}}
"""
    server = DovecotServer(tmp_path_factory.mktemp("dovecot-ja"), extra_config=extra).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root): too small for any archive's metadata allowance."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False)  # a file still open


def few_messages(server: DovecotServer, n: int = 3) -> MailUser:
    user = server.new_user("few")
    for i in range(n):
        server.append(user, "INBOX", corpus._simple(900 + i, f"small {i}"))
    return user


# ---------------------------------------------------------------- folders


def test_folders_lists_decoded_names_counts_sizes_as_json(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    code, out, err = run_cli(["folders", *server_args(dovecot, loaded_user.user, tmp_path),
                              "--json"])
    assert code == 0, err
    listed = {f["name"]: f for f in json.loads(out)}
    served = dovecot.fetch_all(loaded_user.user)
    for name, messages in served.items():
        entry = listed[name]
        assert set(entry) >= {"name", "server_name", "messages", "bytes", "noselect",
                              "special_use"}
        assert entry["messages"] == len(messages), name
        assert entry["bytes"] == sum(len(m[1]) for m in messages), name
        assert entry["noselect"] is False
    assert corpus.JA_INBOX in listed and listed[corpus.JA_INBOX]["messages"] > 0
    text = run_cli(["folders", *server_args(dovecot, loaded_user.user, tmp_path)])
    assert text[0] == 0
    line = next(ln for ln in text[1].splitlines() if ln.startswith(corpus.JA_INBOX + " "))
    n = len(served[corpus.JA_INBOX])
    assert line.split()[1:3] == [str(n), "message" if n == 1 else "messages"], line


def test_folders_sizes_without_status_size_come_from_the_listing(
        dovecot: DovecotServer, loaded_user, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.sources.imap import ImapSource

    monkeypatch.setattr(ImapSource, "_status_items",
                        lambda self: [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"])
    code, out, err = run_cli(["folders", *server_args(dovecot, loaded_user.user, tmp_path),
                              "--json"])
    assert code == 0, err
    listed = {f["name"]: f for f in json.loads(out)}
    for name, messages in dovecot.fetch_all(loaded_user.user).items():
        assert listed[name]["bytes"] == sum(len(m[1]) for m in messages), name


def test_folders_shows_special_use_and_pop3_has_one_inbox(
        dovecot_ja: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot_ja)
    code, out, err = run_cli(["folders", *server_args(dovecot_ja, user, tmp_path), "--json"])
    assert code == 0, err
    listed = {f["name"]: f for f in json.loads(out)}
    assert listed[SENT_JA]["special_use"] == "\\Sent"
    pw = password_file(user, tmp_path / ".pw")
    code, out, err = run_cli(["folders", f"pop3s://{user.name}@127.0.0.1:{dovecot_ja.pop3s_port}",
                              "--cafile", str(dovecot_ja.cafile), "--password-file", str(pw),
                              "--json"])
    assert code == 0, err
    (inbox,) = json.loads(out)
    served = dovecot_ja.fetch_all(user)["INBOX"]
    assert inbox["name"] == "INBOX" and inbox["messages"] == 3
    assert inbox["bytes"] == sum(len(m[1]) for m in served)


# ---------------------------------------------------------------- patterns


def test_unmatched_folder_pattern_exits_2_with_suggestions_before_dest_exists(
        dovecot_ja: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot_ja)
    dest = tmp_path / "archive"
    code, out, err = backup(dovecot_ja, user, dest, "--folder", "Sent")
    assert code == 2, err
    assert f"{SENT_JA} (\\Sent)" in err and "archiver folders" in err
    assert not dest.exists()
    code, _, err = backup(dovecot_ja, user, dest, "--folder", "Drafts")
    assert code == 2 and f"nearest: {DRAFTS_JA} (\\Drafts)" in err, err
    code, _, err = backup(dovecot_ja, user, dest, "--folder", "INBX")
    assert code == 2 and "nearest: INBOX" in err
    assert not dest.exists()


def test_unmatched_map_exits_2_in_migrate_and_restore(
        dovecot_ja: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot_ja)
    target = dovecot_ja.new_user("target")
    via = tmp_path / "via"
    pw_t = password_file(target, tmp_path / ".pwt")
    target_args = [f"imaps://{target.name}@127.0.0.1:{dovecot_ja.imaps_port}",
                   "--target-cafile", str(dovecot_ja.cafile),
                   "--target-password-file", str(pw_t)]
    src = server_args(dovecot_ja, user, tmp_path)
    code, _, err = run_cli(["migrate", src[0], *target_args, *src[1:], "--via", str(via),
                            "--map", "Sent=送信"])
    assert code == 2, err
    assert f"{SENT_JA} (\\Sent)" in err and not via.exists()
    dest = tmp_path / "archive"
    assert backup(dovecot_ja, user, dest)[0] == 0
    code, _, err = run_cli(["restore", str(dest), *target_args, "--map", "Sent=送信"])
    assert code == 2 and "on the archive" in err and SENT_JA in err, err
    assert sorted(dovecot_ja.list_folders(target)) == sorted(["INBOX", SENT_JA, DRAFTS_JA])


def test_unmatched_exclude_is_a_note(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot)
    code, out, err = backup(dovecot, user, tmp_path / "a", "--exclude", "Nowhere*", "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert any("--exclude 'Nowhere*' matches no folder" in n for n in notes), notes


# ---------------------------------------------------------------- space


def test_check_fits_with_rounded_sizes_and_writes_nothing(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "archive"
    code, out, err = check(dovecot, loaded_user.user, dest, "--json", pw_dir=tmp_path)
    assert code == 0, err
    res = json.loads(out)
    served = dovecot.fetch_all(loaded_user.user)
    sizes = [len(m[1]) for msgs in served.values() for m in msgs]
    cluster = os.statvfs(tmp_path).f_frsize
    assert res["fits"] is True and res["messages"] == len(sizes)
    folders = sum(1 for msgs in served.values() if msgs)
    # README "check": each file rounded up to the cluster, 4 clusters per new Maildir
    # folder, 1 MiB + 512 bytes a message for the index
    assert res["needed_bytes"] == sum(-(-n // cluster) * cluster for n in sizes) \
        + 4 * cluster * folders \
        + -(-(METADATA_FIXED + METADATA_PER_MESSAGE * len(sizes)) // cluster) * cluster
    assert res["free_bytes"] > res["needed_bytes"]
    assert res["estimated_seconds"] is not None and res["estimated_seconds"] > 0
    assert not (tmp_path / "new").exists()
    code, out, _ = check(dovecot, loaded_user.user, dest, pw_dir=tmp_path)
    assert code == 0 and out.startswith("fits: ")


def test_check_counts_only_what_the_archive_lacks(
        dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.sources.imap import ImapSource

    user = few_messages(dovecot)
    dest = tmp_path / "archive"
    assert backup(dovecot, user, dest)[0] == 0
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    res = json.loads(check(dovecot, user, dest, "--json")[1])
    assert res["messages"] == 0 and res["estimated_seconds"] == 0
    assert res["needed_bytes"] == 0  # no index allowance when nothing is new
    dovecot.append(user, "INBOX", corpus._simple(950, "one more"))
    lows: list[int] = []
    real = ImapSource.message_sizes
    monkeypatch.setattr(ImapSource, "message_sizes",
                        lambda self, f, low=1: (lows.append(low), real(self, f, low))[1])
    res = json.loads(check(dovecot, user, dest, "--json")[1])
    assert res["messages"] == 1
    assert lows == [4]  # only the UIDs since the last complete pass are listed
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    (dest / ".archiver" / "folders.json").unlink()  # no counters: the index decides
    res = json.loads(check(dovecot, user, dest, "--json")[1])
    assert res["messages"] == 1 and lows[-1] == 1


def test_check_does_not_fit_on_a_small_file_system(
        dovecot: DovecotServer, loaded_user, small_fs: Path) -> None:
    dest = small_fs / "archive"
    code, out, err = check(dovecot, loaded_user.user, dest, "--json")
    assert code == 6, err
    res = json.loads(out)
    assert res["fits"] is False and res["needed_bytes"] > res["free_bytes"]
    assert not dest.exists()
    code, out, _ = check(dovecot, loaded_user.user, dest)
    assert code == 6 and out.startswith("does not fit: ")


def test_backup_refuses_what_does_not_fit_before_creating_dest(
        dovecot: DovecotServer, loaded_user, small_fs: Path) -> None:
    dest = small_fs / "archive"
    code, _, err = backup(dovecot, loaded_user.user, dest)
    assert code == 6, err
    line = err.strip().splitlines()[-1]
    assert "needs" in line and "free" in line and "--no-space-check" in line
    assert not dest.exists()


def test_no_space_check_lets_a_small_backup_start(
        dovecot: DovecotServer, small_fs: Path) -> None:
    user = few_messages(dovecot)
    dest = small_fs / "archive"
    assert backup(dovecot, user, dest)[0] == 6
    code, out, err = backup(dovecot, user, dest, "--no-space-check", "--json")
    assert code == 0, err
    assert json.loads(out)["new"] == 3


# ---------------------------------------------------------------- order at the start


def test_password_not_asked_when_dest_is_locked(
        dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = few_messages(dovecot)
    dest = tmp_path / "archive"
    assert backup(dovecot, user, dest)[0] == 0
    asked: list[str] = []

    def prompt(text: str, **kw: object) -> str:
        asked.append(text)
        return user.password

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(click, "prompt", prompt)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.delenv("ARCHIVER_PASSWORD", raising=False)
    url = f"imaps://{user.name}@127.0.0.1:{dovecot.imaps_port}"
    with hold_lock(dest / ".archiver" / "lock", "busy"):
        code, _, err = run_cli(["backup", url, str(dest), "--cafile", str(dovecot.cafile)])
    assert code == 6 and "another archiver" in err, err
    assert asked == []
    code, _, err = run_cli(["backup", url, str(dest), "--cafile", str(dovecot.cafile)])
    assert code == 0, err
    assert len(asked) == 1  # unlocked, the same command asks and runs


def test_another_accounts_archive_is_refused_before_the_login(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot)
    other = few_messages(dovecot)
    dest = tmp_path / "archive"
    assert backup(dovecot, user, dest)[0] == 0
    url = f"imaps://{other.name}@127.0.0.1:{dovecot.imaps_port}"
    code, _, err = run_cli(["backup", url, str(dest), "--cafile", str(dovecot.cafile)],
                           env={"ARCHIVER_PASSWORD": "wrong"})
    assert code == 6 and "is the archive of" in err, err  # not a login failure (exit 4)


def test_rerun_repairs_a_half_made_archive(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot)
    dest = tmp_path / "archive"
    (dest / ".archiver").mkdir(parents=True)  # cut before archive.json was written
    code, out, err = backup(dovecot, user, dest, "--json")
    assert code == 0, err
    assert json.loads(out)["new"] == 3
    assert (dest / ".archiver" / "archive.json").is_file()


def test_noop_rerun_asks_the_server_nothing_extra(
        dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The space check reuses the backup's LIST and STATUS: one of each, no size listing."""
    from archiver.sources.imap import ImapSource

    user = few_messages(dovecot)
    dest = tmp_path / "archive"
    assert backup(dovecot, user, dest)[0] == 0
    calls: list[str] = []
    for name in ("folders", "status_many", "message_sizes", "open_folder", "open_and_list"):
        real = getattr(ImapSource, name)
        monkeypatch.setattr(ImapSource, name, lambda self, *a, _n=name, _r=real, **k: (
            calls.append(_n), _r(self, *a, **k))[1])
    code, out, err = backup(dovecot, user, dest, "--json")
    assert code == 0 and json.loads(out)["new"] == 0, err
    assert calls == ["folders", "status_many"]


def test_first_backup_with_room_lists_no_sizes_before_the_backup(
        dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STATUS=SIZE bounds a first backup's need: when even the worst case fits, the
    space check does not list every message's size ahead of the backup's own listing."""
    from archiver.sources.imap import ImapSource

    user = few_messages(dovecot)
    calls: list[str] = []
    real = ImapSource.message_sizes
    monkeypatch.setattr(ImapSource, "message_sizes", lambda self, *a, **k: (
        calls.append("message_sizes"), real(self, *a, **k))[1])
    code, out, err = backup(dovecot, user, tmp_path / "archive", "--json")
    assert code == 0 and json.loads(out)["new"] > 0, err
    assert calls == []


def test_check_over_pop3_counts_and_times_the_inbox(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = few_messages(dovecot)
    pw = password_file(user, tmp_path / ".pw")
    url = f"pop3s://{user.name}@127.0.0.1:{dovecot.pop3s_port}"
    common = ["--cafile", str(dovecot.cafile), "--password-file", str(pw), "--json"]
    dest = tmp_path / "archive"
    code, out, err = run_cli(["check", url, str(dest), *common])
    assert code == 0, err
    res = json.loads(out)
    assert res["messages"] == 3 and res["fits"] and res["estimated_seconds"] > 0
    assert run_cli(["backup", url, str(dest), *common])[0] == 0
    dovecot.append(user, "INBOX", corpus._simple(960, "after"))
    res = json.loads(run_cli(["check", url, str(dest), *common])[1])
    assert res["messages"] == 1


def test_line_dropped_during_the_start_of_run_questions_is_reconnected(
        dovecot: DovecotServer, loaded_user, tmp_path: Path) -> None:
    """A cut inside the LIST/STATUS answers before DEST exists: reconnect, as the backup
    itself would, and finish (exit 0), not "connection lost" (exit 5)."""
    from archiver.account import TLSOptions, parse_endpoint
    from archiver.sources.imap import ImapSource
    from tests.proxy import Fault, FaultProxy, first

    user = loaded_user.user
    with FaultProxy(dovecot.imaps_port) as proxy:  # bytes of TLS, greeting, login, NAMESPACE
        src = ImapSource(parse_endpoint(f"imaps://{user.name}@127.0.0.1:{proxy.port}",
                                        tls=TLSOptions(cafile=dovecot.cafile)), user.password)
        src.connect()
        src.close()
        deadline = time.monotonic() + 5
        while proxy.connections[0].ended == "" and time.monotonic() < deadline:
            time.sleep(0.01)
        setup = proxy.down_bytes(1)
    pw = password_file(user, tmp_path / ".pw")
    dest = tmp_path / "archive"
    with FaultProxy(dovecot.imaps_port, first(Fault(cut_after=setup + 60))) as proxy:
        code, out, err = run_cli(["backup", f"imaps://{user.name}@127.0.0.1:{proxy.port}",
                                  str(dest), "--cafile", str(dovecot.cafile),
                                  "--password-file", str(pw), "--json"])
        assert proxy.connections[0].ended == "cut"
    assert code == 0, err
    assert json.loads(out)["new"] == sum(len(m) for m in dovecot.fetch_all(user).values())
