"""`archiver restore` against real Dovecots: old -> archive -> new, exact, idempotent, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import REPO, backup, password_file, run_cli

# Dovecot's default capability list (2.3) without UIDPLUS, LITERAL+ and MULTIAPPEND:
# the restore must fall back to synchronizing literals and dedup without APPENDUID.
MINIMAL_CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
                "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT URL-PARTIAL CATENATE "
                "UNSELECT CHILDREN NAMESPACE LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
                "ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY "
                "PREVIEW=FUZZY STATUS=SIZE SAVEDATE SPECIAL-USE")
LIMIT = 200_000  # bytes: the minimal server refuses bigger messages (quota plugin)


@pytest.fixture(scope="module")
def dovecot_min(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    extra = f"""
protocol imap {{
  imap_capability = {MINIMAL_CAPS}
  mail_plugins = $mail_plugins quota imap_quota
}}
mail_plugins = $mail_plugins quota
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=1G
  quota_max_mail_size = {LIMIT}
}}
namespace inbox {{
  mailbox 送信済み {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
"""
    server = DovecotServer(tmp_path_factory.mktemp("dovecot-min"), extra_config=extra).start()
    try:
        yield server
    finally:
        server.stop()


def target_args(server: DovecotServer, user: MailUser, where: Path) -> list[str]:
    pw = password_file(user, where / ".pw-target")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
            "--target-cafile", str(server.cafile), "--target-password-file", str(pw),
            "--timeout", "20"]


def restore(dest: Path, server: DovecotServer, user: MailUser, *extra: str,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_cli(["restore", str(dest), *target_args(server, user, dest.parent), *extra],
                   env=env)


def norm(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").rstrip(b"\r")


def contents(server: DovecotServer, user: MailUser, *, deleted: bool = True
             ) -> dict[str, Counter[tuple[bytes, frozenset[str], object]]]:
    """Per folder: multiset of (normalised bytes, flags, INTERNALDATE)."""
    out: dict[str, Counter[tuple[bytes, frozenset[str], object]]] = {}
    for folder, msgs in server.fetch_all(user).items():
        out[folder] = Counter((norm(d), frozenset(f), idate.timestamp())
                              for _, d, f, idate in msgs if deleted or "\\Deleted" not in f)
    return out


def test_round_trip_is_exact_and_rerun_uploads_nothing(
        dovecot: DovecotServer, dovecot_new: DovecotServer, loaded_user, tmp_path: Path) -> None:
    old = loaded_user.user
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new, "--json", "--include-deleted", "--verify")
    summary = json.loads(out)
    # the zero-byte message cannot be APPENDed to Dovecot: reported, not a crash
    assert code == 3, err
    assert len(summary["refused"]) == 1 and "0 bytes" in summary["refused"][0], summary
    assert "Bob's stuff" in err and "refused" in err
    want = contents(dovecot, old)
    got = contents(dovecot_new, new)
    assert sorted(got) == sorted(want)  # every folder, Japanese names included
    for folder in want:
        expect = want[folder]
        if folder == corpus.APOS:
            expect = Counter({k: v for k, v in expect.items() if k[0] != b""})
        assert got[folder] == expect, folder
    assert summary["verify"]["missing"] and len(summary["verify"]["missing"]) == 1
    # rerun: nothing uploaded, no duplicates
    before = dovecot_new.fingerprint(new)
    code, out, err = restore(dest, dovecot_new, new, "--json", "--include-deleted")
    again = json.loads(out)
    assert again["uploaded"] == 0 and again["found"] == 0, again
    assert dovecot_new.fingerprint(new) == before


def _fill(server: DovecotServer, user: MailUser, count: int) -> None:
    with server.session(user) as c:
        for i in range(count):
            folder = ("INBOX", "Sent", "受信箱/講義")[i % 3]
            body = (f"Subject: message {i}\r\nMessage-ID: <{i % 50}@t>\r\n\r\n"
                    + "x" * (i * 37 % 3000) + "\r\n").encode()
            flags = ("\\Seen", "$label1") if i % 4 == 0 else ()
            server.append(user, folder, body, flags, corpus._date(i), client=c)
        # identical twins without Message-ID: two archived, two on the target
        for _ in range(2):
            server.append(user, "INBOX", b"No-ID: twin\r\n\r\nsame\r\n", client=c)


def restore_process(dest: Path, server: DovecotServer, user: MailUser, *extra: str,
                    env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.Popen([sys.executable, "-m", "archiver", "restore", str(dest),
                             *target_args(server, user, dest.parent), *extra],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("crash_after", [1, 23])
@pytest.mark.parametrize("which", ["new", "minimal"])
def test_kill_mid_restore_then_rerun_has_no_duplicates(
        dovecot: DovecotServer, dovecot_new: DovecotServer, dovecot_min: DovecotServer,
        tmp_path: Path, crash_after: int, which: str) -> None:
    """Killed after an APPEND landed but before its journal record: the rerun finds it."""
    target = dovecot_new if which == "new" else dovecot_min
    old = dovecot.new_user()
    _fill(dovecot, old, 60)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    new = target.new_user()
    proc = restore_process(dest, target, new,
                           env={"ARCHIVER_TEST_RESTORE_CRASH_AFTER": str(crash_after)})
    assert proc.wait(60) == 137, proc.stderr.read() if proc.stderr else ""
    landed = sum(len(v) for v in target.fetch_all(new).values())
    assert landed >= crash_after
    code, out, err = restore(dest, target, new, "--json", "--verify")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["found"] + summary["already"] >= crash_after
    assert summary["verify"]["ok"] and summary["verify"]["extra"] == 0, summary
    got = contents(target, new)
    got.pop("送信済み", None)  # the minimal server's auto-created \\Sent folder
    assert got == contents(dovecot, old)
    again = json.loads(restore(dest, target, new, "--json")[1])
    assert again["uploaded"] == 0 and again["found"] == 0


def test_minimal_target_refuses_big_message_keeps_the_rest_and_hand_copies(
        dovecot: DovecotServer, dovecot_min: DovecotServer, loaded_user,
        tmp_path: Path) -> None:
    """No UIDPLUS/LITERAL+/MULTIAPPEND, a size limit, and mail already dragged across."""
    old = loaded_user.user
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    new = dovecot_min.new_user()
    served = dovecot.fetch_all(old)
    by_hand = [(corpus.BRACKETS, served[corpus.BRACKETS][0]),  # one of two exact twins
               (corpus.SENT, served[corpus.SENT][0]),
               ("INBOX", served["INBOX"][1])]  # a message without headers
    for folder, (_, data, flags, idate) in by_hand:
        dovecot_min.append(new, folder, data, sorted(flags), idate)
    code, out, err = restore(dest, dovecot_min, new, "--json")
    assert code == 3, err
    summary = json.loads(out)
    assert summary["found"] == 3, summary
    big = [r for r in summary["refused"] if corpus.DEEP in r]
    assert len(big) == 1 and "refused" in big[0], summary["refused"]
    assert len(summary["refused"]) == 2  # the big one and the zero-byte one
    got = contents(dovecot_min, new)
    want = contents(dovecot, old, deleted=False)
    for folder, expect in want.items():
        if folder == corpus.DEEP:
            expect = Counter({k: v for k, v in expect.items() if len(k[0]) < LIMIT})
        if folder == corpus.APOS:
            expect = Counter({k: v for k, v in expect.items() if k[0]})
        assert got[folder] == expect, folder


def test_dry_run_writes_nothing(dovecot: DovecotServer, dovecot_new: DovecotServer,
                                loaded_user, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    new = dovecot_new.new_user()
    dovecot_new.append(new, "Sent", b"Subject: already there\r\n\r\nx\r\n")
    before = dovecot_new.fingerprint(new)
    meta = sorted(p.name for p in (dest / ".archiver").iterdir())
    code, out, err = restore(dest, dovecot_new, new, "--dry-run", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dry_run"] and summary["uploaded"] == 25 and summary["uploaded_bytes"] > 1e6
    assert "受信箱/講義" in summary["created"] and "Sent" not in summary["created"]
    assert dovecot_new.fingerprint(new) == before
    assert sorted(p.name for p in (dest / ".archiver").iterdir()) == meta


def test_prefix_map_and_keywords(dovecot: DovecotServer, dovecot_new: DovecotServer,
                                 loaded_user, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    new = dovecot_new.new_user()
    code, _, err = restore(dest, dovecot_new, new, "--prefix", "old-mail/",
                           "--map", "Sent=送信済み", "--folder", "Sent", "--folder", "INBOX",
                           "--folder", corpus.EMOJI)
    assert code == 0, err
    folders = set(dovecot_new.list_folders(new))
    assert {"INBOX", "送信済み", "old-mail/INBOX", f"old-mail/{corpus.EMOJI}"} <= folders
    emoji = dovecot_new.fetch_all(new)[f"old-mail/{corpus.EMOJI}"]
    assert any({"$Junk", "$label1", "$Forwarded"} <= flags for _, _, flags, _ in emoji)


def test_mbox_archive_restores_the_same(dovecot: DovecotServer, dovecot_new: DovecotServer,
                                        tmp_path: Path) -> None:
    old = dovecot.new_user()
    _fill(dovecot, old, 30)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest, "--format", "mbox")[0] == 0
    new = dovecot_new.new_user()
    code, _, err = restore(dest, dovecot_new, new, "--include-deleted", "--verify")
    assert code == 0, err
    assert contents(dovecot_new, new) == contents(dovecot, old)


def test_special_use_puts_sent_into_the_targets_sent_folder(
        dovecot: DovecotServer, dovecot_min: DovecotServer, tmp_path: Path) -> None:
    old = dovecot.new_user()
    _fill(dovecot, old, 12)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    new = dovecot_min.new_user()
    code, _, err = restore(dest, dovecot_min, new, "--special-use", "--verify")
    assert code == 0, err
    got = contents(dovecot_min, new)
    assert "Sent" not in got and got["送信済み"] == contents(dovecot, old)["Sent"]
