"""`archiver verify DEST --repair SOURCE`: damaged messages fetched again, nothing lost."""

from __future__ import annotations

import functools
import json
import mailbox
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import archiver.engine
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.engine import BackupOptions
from archiver.repair import repair_archive
from archiver.sources.imap import ImapSource
from archiver.stores import open_store
from archiver.stores.mbox import MboxStore
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import (
    archived_files,
    backup,
    index_records,
    password_file,
    run_cli,
    source_args,
)
from tests.proxy import Fault, FaultProxy, every, first

MESSAGES = [
    b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nfirst body\r\n",
    b"Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\r\n\r\nFrom the middle\r\n" + b"x" * 3000
    + b"\r\n",
    b"Subject: three\r\n\r\nno final newline",
]


@dataclass
class Via:
    """Stands in for the server in ``source_args``: Dovecot's CA, the proxy's port."""

    imaps_port: int
    cafile: Path


def _repair(server: Any, user: MailUser, dest: Path, *extra: str,
            pop3: bool = False) -> tuple[int, str, str]:
    if pop3:
        pw = password_file(user, dest.parent / ".pw")
        src = [f"pop3s://{user.name}@127.0.0.1:{server.pop3s_port}", "--cafile",
               str(server.cafile), "--password-file", str(pw), "--timeout", "20"]
    else:
        url, _dest, *opts = source_args(server, user, dest)
        src = [url, *opts]
    return run_cli(["verify", str(dest), "--repair", *src, *extra])


def _load(server: DovecotServer, user: MailUser, folder: str = "INBOX") -> list[int]:
    return [server.append(user, folder, data, ["\\Seen"] if i == 0 else [])
            for i, data in enumerate(MESSAGES)]


def _path_of(dest: Path, folder: str, uid: int) -> str:
    entry = Archive.open_existing(dest).state().folders[folder].messages
    return next(m.path for (_, u), m in entry.items() if u == uid)


def test_maildir_repair_restores_a_deleted_and_a_corrupted_message_byte_exact(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    uids = _load(dovecot, u)
    dovecot.append(u, "Lists", b"Subject: elsewhere\r\n\r\nkept\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    good = archived_files(dest)
    gone_rel = _path_of(dest, "INBOX", uids[0])
    bad_rel = _path_of(dest, "INBOX", uids[1])
    (dest / gone_rel).unlink()
    corrupted = (dest / bad_rel).read_bytes().replace(b"middle", b"MIDDLE")
    (dest / bad_rel).write_bytes(corrupted)
    # The server's flags changed since the backup: the re-fetched file carries the new ones.
    dovecot.set_flags(u, "INBOX", uids[0], ["\\Seen", "\\Flagged"])
    before = dovecot.fingerprint(u)
    assert run_cli(["verify", str(dest)])[0] == 1

    code, out, err = _repair(dovecot, u, dest, "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] and sorted(report["repair"]["repaired"]) == sorted([gone_rel, bad_rel])
    assert report["repair"]["cannot_repair"] == []
    assert dovecot.fingerprint(u) == before, "repair changed the server"

    now = archived_files(dest)
    flagged = gone_rel.replace(":2,S", ":2,FS")
    assert now[flagged] == good[gone_rel] and gone_rel not in now
    assert now[bad_rel] == good[bad_rel]
    assert {k: v for k, v in now.items() if k != flagged} == \
        {k: v for k, v in good.items() if k != gone_rel}
    kept = list((dest / ".archiver" / "damaged").rglob("*"))
    kept_files = [p for p in kept if p.is_file()]
    assert [p.read_bytes() for p in kept_files] == [corrupted]
    assert kept_files[0].as_posix().endswith("/" + bad_rel)
    assert report["repair"]["damaged_copies"] == [
        kept_files[0].relative_to(dest).as_posix()]
    notes = [r for r in index_records(dest) if r["type"] == "damaged"]
    assert sorted((r["uid"], r["problem"]) for r in notes) == [(uids[0], "missing"),
                                                               (uids[1], "changed")]
    assert run_cli(["verify", str(dest)])[0] == 0

    code, out, err = backup(dovecot, u, dest, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert (again["new"], again["flags_updated"], again["gone"]) == (0, 0, 0)
    assert archived_files(dest) == now
    assert run_cli(["verify", str(dest)])[0] == 0
    assert dovecot.fingerprint(u) == before


def test_mbox_repair_appends_a_good_copy_and_a_later_backup_neither_cuts_nor_duplicates(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    uids = _load(dovecot, u)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest, "--format", "mbox")[0] == 0
    served = {m[0]: m[1] for m in dovecot.fetch_all(u)["INBOX"]}
    mbox_file = dest / "Inbox"
    data = mbox_file.read_bytes()
    at = data.index(b"From the middle")  # quoted as ">From the middle" inside the file
    damaged = data[:at] + b"From THE middle" + data[at + 15:]
    mbox_file.write_bytes(damaged)
    before = dovecot.fingerprint(u)
    assert run_cli(["verify", str(dest)])[0] == 1

    code, out, err = _repair(dovecot, u, dest, "--json")
    assert code == 0, (out, err)
    assert len(json.loads(out)["repair"]["repaired"]) == 1
    assert dovecot.fingerprint(u) == before
    grown = mbox_file.read_bytes()
    assert grown.startswith(damaged) and len(grown) > len(damaged)  # old bytes stay
    state = Archive.open_existing(dest).state().folders["INBOX"]
    store = MboxStore(dest)
    got = {uid: store.read_message(m) for (_, uid), m in state.messages.items()}
    assert got == served
    assert state.messages[next(k for k in state.messages if k[1] == uids[1])].offset \
        > len(damaged)
    assert run_cli(["verify", str(dest)])[0] == 0

    code, out, err = backup(dovecot, u, dest, "--format", "mbox", "--json")
    assert code == 0, err
    assert json.loads(out)["new"] == 0
    assert mbox_file.read_bytes() == grown  # neither cut nor appended to
    msgs = Counter((r["folder"], r["uid"]) for r in index_records(dest) if r["type"] == "msg")
    assert msgs[("INBOX", uids[1])] == 2 and msgs[("INBOX", uids[0])] == 1
    assert run_cli(["verify", str(dest)])[0] == 0
    # Other readers see the damaged copy too (it is never deleted) and the good one.
    assert len(mailbox.mbox(str(mbox_file), create=False)) == len(MESSAGES) + 1


def test_mbox_file_cut_inside_its_last_message_is_repaired_and_readable(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    _load(dovecot, u)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest, "--format", "mbox")[0] == 0
    mbox_file = dest / "Inbox"
    size = mbox_file.stat().st_size
    with open(mbox_file, "r+b") as fh:
        fh.truncate(size - 10)  # inside the last message ("no final newline")
    code, out, err = _repair(dovecot, u, dest, "--json")
    assert code == 0, (out, err)
    assert run_cli(["verify", str(dest)])[0] == 0
    served = Counter(m[1] for m in dovecot.fetch_all(u)["INBOX"])
    state = Archive.open_existing(dest).state().folders["INBOX"]
    assert Counter(MboxStore(dest).read_message(m) for m in state.messages.values()) == served
    # The good copy starts a message of its own for other readers too.
    subjects = [m["subject"] for m in mailbox.mbox(str(mbox_file), create=False)]
    assert subjects.count("three") == 2
    assert backup(dovecot, u, dest, "--format", "mbox")[0] == 0
    assert run_cli(["verify", str(dest)])[0] == 0


def test_pop3_archive_missing_message_is_fetched_again_by_uidl(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    _load(dovecot, u)
    dest = tmp_path / "a"
    pw = password_file(u, tmp_path / ".pw")
    pop = ["backup", f"pop3s://{u.name}@127.0.0.1:{dovecot.pop3s_port}", str(dest),
           "--cafile", str(dovecot.cafile), "--password-file", str(pw), "--timeout", "20"]
    assert run_cli(pop)[0] == 0
    good = archived_files(dest)
    victim = sorted(good)[1]
    (dest / victim).unlink()
    before = dovecot.fingerprint(u)
    code, out, err = _repair(dovecot, u, dest, "--json", pop3=True)
    assert code == 0, (out, err)
    assert archived_files(dest) == good
    assert dovecot.fingerprint(u) == before, "POP3 repair changed the server's flags"
    recs = [r for r in index_records(dest) if r["type"] == "msg"]
    assert len(recs) == len(MESSAGES) + 1 and all("uidl" in r for r in recs)
    assert run_cli(["verify", str(dest)])[0] == 0


def test_messages_the_server_no_longer_has_stay_reported_and_exit_1(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    uids = _load(dovecot, u)
    dovecot.append(u, "Lists", b"Subject: moved\r\n\r\nlist mail\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    good = archived_files(dest)
    expunged_rel = _path_of(dest, "INBOX", uids[0])
    listed_rel = next(p for p in good if p.startswith("Lists/"))
    damaged_rel = _path_of(dest, "INBOX", uids[2])
    (dest / expunged_rel).unlink()
    (dest / listed_rel).write_bytes(b"garbage")
    (dest / damaged_rel).write_bytes(b"garbage too")
    dovecot.expunge(u, "INBOX", uids[0])
    dovecot.bump_uidvalidity(u, "Lists")
    before = dovecot.fingerprint(u)

    code, out, err = _repair(dovecot, u, dest, "--json")
    assert code == 1, (out, err)
    report = json.loads(out)
    assert report["repair"]["repaired"] == [damaged_rel]
    reasons = {c["message"]: c["reason"] for c in report["repair"]["cannot_repair"]}
    assert set(reasons) == {expunged_rel, listed_rel}
    assert "not on the server any more" in reasons[expunged_rel]
    assert "UIDVALIDITY" in reasons[listed_rel]
    assert report["missing"] == [expunged_rel] and report["changed"] == [listed_rel]
    # The unrepairable damaged file is the only copy left: it stays where it was.
    assert (dest / listed_rel).read_bytes() == b"garbage"
    assert (dest / damaged_rel).read_bytes() == good[damaged_rel]
    assert dovecot.fingerprint(u) == before

    code, out, _ = run_cli(["verify", str(dest)])
    assert code == 1 and f"missing: {expunged_rel}" in out and f"changed: {listed_rel}" in out
    code, out, _ = _repair(dovecot, u, dest)  # text output names the reason
    assert code == 1
    assert f"cannot repair: {expunged_rel}: not on the server any more" in out


def test_another_account_as_source_is_refused_before_connecting(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _load(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    victim = next(iter(archived_files(dest)))
    (dest / victim).unlink()
    pw = password_file(mail_user, tmp_path / ".pw")
    # Port 1: nothing listens, so a connection attempt would be exit 5, not 6.
    code, out, err = run_cli(["verify", str(dest), "--repair", "imaps://someone@127.0.0.1:1",
                              "--password-file", str(pw)])
    assert code == 6, (out, err)
    assert err.count("\n") == 1 and f"{mail_user.name}@127.0.0.1" in err and "someone" in err
    assert "give that account as SOURCE" in err  # the fix for a repair, not a backup's
    assert "Traceback" not in err and not (dest / ".archiver" / "damaged").exists()


def test_repair_of_a_clean_archive_does_not_connect_and_options_need_repair(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _load(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    pw = password_file(mail_user, tmp_path / ".pw")
    code, out, err = run_cli(["verify", str(dest), "--repair",
                              f"imaps://{mail_user.name}@127.0.0.1:1", "--password-file",
                              str(pw), "--quiet"])
    assert (code, out) == (0, ""), err
    code, _, err = run_cli(["verify", str(dest), "--user", mail_user.name])
    assert code == 2 and "--repair" in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_large_messages_are_repaired_by_streaming_as_in_a_backup(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path, fmt: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The library entry point, with the backup's streaming threshold lowered."""
    u = mail_user
    big = b"Subject: big\r\n\r\n" + b"From line\r\n>From quoted\r\n" * 8_000 + b"end"
    uid = dovecot.append(u, "INBOX", big)
    dovecot.append(u, "INBOX", b"Subject: small\r\n\r\nsmall\r\n")
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest, "--format", fmt)[0] == 0
    rel = _path_of(dest, "INBOX", uid)
    if fmt == "maildir":
        (dest / rel).unlink()
    else:
        data = bytearray((dest / rel).read_bytes())
        data[len(data) // 2] ^= 0x20
        (dest / rel).write_bytes(bytes(data))
    streamed: list[int] = []
    real = ImapSource.fetch_stream

    def spy(self: ImapSource, uid: int, *args: Any, **kw: Any) -> int:
        streamed.append(uid)
        return real(self, uid, *args, **kw)

    monkeypatch.setattr(ImapSource, "fetch_stream", spy)
    ep = parse_endpoint(f"imaps://{u.name}@127.0.0.1:{dovecot.imaps_port}",
                        tls=TLSOptions(cafile=dovecot.cafile))
    archive = Archive.create_or_open(dest, fmt, {"protocol": "imap", "host": "127.0.0.1",
                                                 "user": u.name})
    try:
        report = repair_archive(ImapSource(ep, u.password), archive, open_store(dest, fmt),
                                BackupOptions(stream_threshold=50_000, stream_chunk=30_000))
    finally:
        archive.close()
    assert report.ok and len(report.repaired) == 1 and streamed == [uid]
    state = Archive.open_existing(dest).state().folders["INBOX"]
    store = open_store(dest, fmt)
    assert Counter(store.read_message(m) for m in state.messages.values()) == \
        Counter(m[1] for m in dovecot.fetch_all(u)["INBOX"])
    assert run_cli(["verify", str(dest)])[0] == 0


def _damaged_copy_of(dovecot: DovecotServer, u: MailUser, base: Path) -> tuple[Path, dict]:
    """An archive of 10 messages of 20-40 KB in two folders, 3 deleted and 3 corrupted."""
    rng = random.Random(7)
    with dovecot.session(u) as c:
        for i in range(10):
            body = b"".join(rng.choice([b"abc ", b"xyz\r\n", b"From x\r\n"])
                            for _ in range(rng.randint(4000, 8000)))
            dovecot.append(u, ("INBOX", "Sent")[i % 2],
                           f"Subject: m{i}\r\n\r\n".encode() + body, client=c)
    dest = base / "a"
    assert backup(dovecot, u, dest)[0] == 0
    good = archived_files(dest)
    for i, rel in enumerate(sorted(good)[:6]):
        if i % 2:
            (dest / rel).unlink()
        else:
            (dest / rel).write_bytes(b"damaged " + good[rel][8:])
    return dest, good


def test_a_connection_cut_during_a_repair_is_resumed_without_losing_a_damaged_copy(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One message per batch, so a cut lands between messages already recorded and
    # messages moved aside but not fetched yet, in the same folder.
    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.05,
                                          batch_count=1))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.05)
    u = mail_user
    dest, good = _damaged_copy_of(dovecot, u, tmp_path)
    corrupted = sorted(p.read_bytes() for p in dest.rglob("*")
                       if p.is_file() and p.read_bytes().startswith(b"damaged "))
    assert len(corrupted) == 3
    fingerprint = dovecot.fingerprint(u)
    copies = {name: tmp_path / name / "a" for name in ("profile", "once", "every")}
    for copy in copies.values():
        shutil.copytree(dest, copy)
    with FaultProxy(dovecot.imaps_port) as proxy:
        ep = parse_endpoint(f"imaps://{u.name}@127.0.0.1:{proxy.port}",
                            tls=TLSOptions(cafile=dovecot.cafile))
        src = ImapSource(ep, u.password, timeout=10)
        src.connect()
        src.close()
        code, out, err = _repair(Via(proxy.port, dovecot.cafile), u, copies["profile"])
        assert code == 0, (out, err)
        deadline = time.monotonic() + 5
        while proxy.connections[1].ended == "" and time.monotonic() < deadline:
            time.sleep(0.01)
        setup, total = proxy.down_bytes(1), proxy.down_bytes(2)
    assert setup < total // 10
    cut = total * 2 // 3  # inside the fetches (about 180 KB of the total)

    with FaultProxy(dovecot.imaps_port, first(Fault(cut_after=cut))) as proxy:
        code, out, err = _repair(Via(proxy.port, dovecot.cafile), u, copies["once"], "--json")
        assert proxy.connections[0].ended == "cut" and len(proxy.connections) == 2
    assert code == 0, (out, err)
    assert archived_files(copies["once"]) == good
    kept = copies["once"] / ".archiver" / "damaged"
    assert sorted(p.read_bytes() for p in kept.rglob("*") if p.is_file()) == corrupted
    keys = Counter((r["folder"], r["uid"]) for r in index_records(copies["once"])
                   if r["type"] == "msg")
    assert sorted(keys.values()) == [1] * 4 + [2] * 6, "a message was recorded twice"

    # Every connection cut before a first message is through: no progress, the run gives up.
    with FaultProxy(dovecot.imaps_port, every(Fault(cut_after=setup + 3000))) as proxy:
        code, out, err = _repair(Via(proxy.port, dovecot.cafile), u, copies["every"], "--json")
    assert code == 1, (out, err)
    assert "Traceback" not in err and json.loads(out)["repair"]["problems"]
    kept = copies["every"] / ".archiver" / "damaged"
    code, out, err = _repair(dovecot, u, copies["every"])
    assert code == 0, (out, err)
    assert archived_files(copies["every"]) == good
    assert sorted(p.read_bytes() for p in kept.rglob("*") if p.is_file()) == corrupted
    assert dovecot.fingerprint(u) == fingerprint


def test_an_index_that_cannot_be_appended_to_is_refused_before_anything_moves(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    dest = tmp_path / "a"
    index = dest / ".archiver" / "index.jsonl.zst"
    sizes = []
    for folder in ("INBOX", "Sent", "Drafts"):
        dovecot.append(u, folder, f"Subject: {folder}\r\n\r\n{'x' * 2000}\r\n".encode())
        assert backup(dovecot, u, dest)[0] == 0
        sizes.append(index.stat().st_size)
    victim = next(p for p in archived_files(dest) if p.startswith("INBOX/"))
    (dest / victim).write_bytes(b"damaged")
    data = bytearray(index.read_bytes())
    data[(sizes[0] + sizes[1]) // 2] ^= 0xFF  # inside the second backup's frame
    index.write_bytes(bytes(data))
    code, out, err = _repair(dovecot, u, dest)
    assert code == 6, (out, err)
    assert err.count("\n") == 1 and "reindex" in err and "Traceback" not in err
    assert (dest / victim).read_bytes() == b"damaged"
    assert not (dest / ".archiver" / "damaged").exists()


def test_a_deleted_maildir_folder_is_rebuilt_from_the_server(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    _load(dovecot, mail_user)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest)[0] == 0
    good = archived_files(dest)
    shutil.rmtree(dest / "INBOX")
    code, out, err = _repair(dovecot, mail_user, dest)
    assert code == 0, (out, err)
    assert archived_files(dest) == good


def test_a_deleted_mbox_file_is_rebuilt_and_an_expunged_message_stays_reported(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    u = mail_user
    uids = _load(dovecot, u)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest, "--format", "mbox")[0] == 0
    (dest / "Inbox").unlink()
    dovecot.expunge(u, "INBOX", uids[0])
    code, out, err = _repair(dovecot, u, dest, "--json")
    assert code == 1, (out, err)
    report = json.loads(out)
    assert len(report["repair"]["repaired"]) == 2 and len(report["changed"]) == 1
    assert "expunged" in report["repair"]["cannot_repair"][0]["reason"]
    size = (dest / "Inbox").stat().st_size
    state = Archive.open_existing(dest).state().folders["INBOX"]
    served = {m[0]: m[1] for m in dovecot.fetch_all(u)["INBOX"]}
    assert {uid: MboxStore(dest).read_message(state.messages[(uv, uid)])
            for (uv, uid) in state.messages if uid in served} == served
    assert backup(dovecot, u, dest, "--format", "mbox")[0] == 0
    assert (dest / "Inbox").stat().st_size == size
    assert len(mailbox.mbox(str(dest / "Inbox"), create=False)) == 2
