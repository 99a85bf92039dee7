"""Restore streams each message from the archive: the same bytes land, and a bad source never does.

A message larger than ``items.WHOLE_MAX`` is sent in ``items.STREAM_CHUNK``
pieces (mbox archives unquoted on the fly); the literal's size is announced
before its first byte.  These tests force every message through that path
(tiny chunks, so ``>From `` lines are cut everywhere), cut quoted ``From``
lines across real 1 MiB boundaries, and feed the writer files that are
missing, shorter, longer, or fail half way.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import archiver.restore.items
import archiver.restore.target
from archiver.archive import Archive
from archiver.state import MessageEntry
from archiver.stores.base import CHUNK
from archiver.stores.maildir import MaildirStore
from archiver.stores.mbox import quote
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli
from tests.integration.restore.test_restore import MINIMAL_CAPS

Served = dict[str, Counter[tuple[bytes, frozenset[str], float]]]


@pytest.fixture(scope="module")
def dovecot_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """No LITERAL+, MULTIAPPEND or UIDPLUS: every literal waits for the server's '+'."""
    extra = f"protocol imap {{\n  imap_capability = {MINIMAL_CAPS}\n}}\n"
    server = DovecotServer(tmp_path_factory.mktemp("dovecot-plain"), extra_config=extra).start()
    try:
        yield server
    finally:
        server.stop()


def restore(dest: Path, server: DovecotServer, user: MailUser, *extra: str
            ) -> tuple[int, str, str]:
    pw = password_file(user, dest.parent / f".pw-{user.name}")
    return run_cli(["restore", str(dest), f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
                    "--target-cafile", str(server.cafile), "--target-password-file", str(pw),
                    "--timeout", "20", "--include-deleted", "--json", *extra])


def served(server: DovecotServer, user: MailUser) -> Served:
    """Per folder, the multiset of (exact bytes, flags, INTERNALDATE) the server holds."""
    return {folder: Counter((d, frozenset(f), idate.timestamp()) for _, d, f, idate in msgs)
            for folder, msgs in server.fetch_all(user).items()}


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message streamed, 7 bytes at a time."""
    monkeypatch.setattr(archiver.restore.items, "WHOLE_MAX", 0)
    monkeypatch.setattr(archiver.restore.items, "STREAM_CHUNK", 7)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize("which", ["new", "plain"])
def test_streamed_restore_lands_the_same_bytes_as_whole_reads(
        dovecot: DovecotServer, dovecot_new: DovecotServer, dovecot_plain: DovecotServer,
        loaded_user, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str,
        which: str) -> None:
    """The nasty corpus (``From `` lines, NUL, bare CR/LF, no final newline) in 7-byte pieces."""
    target = dovecot_new if which == "new" else dovecot_plain
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest, "--format", fmt)[0] == 0
    whole, pieces = target.new_user(), target.new_user()
    code, out, err = restore(dest, target, whole)
    assert code == 3 and len(json.loads(out)["refused"]) == 1, err  # the zero-byte message
    monkeypatch.setattr(archiver.restore.items, "WHOLE_MAX", 0)
    monkeypatch.setattr(archiver.restore.items, "STREAM_CHUNK", 7)
    code, out, err = restore(dest, target, pieces)
    summary = json.loads(out)
    assert code == 3 and len(summary["refused"]) == 1 and not summary["problems"], err
    assert summary["uploaded"] == sum(len(m) for m in target.fetch_all(whole).values())
    assert served(target, pieces) == served(target, whole)


def _straddling_message() -> tuple[bytes, list[tuple[int, bytes]]]:
    """~4.1 MiB of CRLF lines whose quoted ``From`` lines cross the 1 MiB read boundaries.

    Returns the message and, per boundary, (bytes of the quoted line before the
    boundary, the quoted line), so the test can check the archive really cuts there:
    after a line's first ``>``, inside ``From``, before and after its space.
    """
    msg = (b"From: straddle@example.org\r\nMessage-ID: <straddle@example.org>\r\n"
           b"Subject: From lines across chunk boundaries\r\n\r\n")
    wanted = [(1, b">From one\r\n"), (3, b"From two\r\n"), (7, b">>From three\r\n"),
              (6, b"From four\r\n")]
    cuts: list[tuple[int, bytes]] = []
    parts = [msg]
    quoted = len(quote(msg))
    for k, (before, line) in enumerate(wanted, start=1):
        gap = k * CHUNK - before - quoted  # filler up to where the quoted line must start
        filler = b"x" * 76 + b"\r\n"
        parts.append(filler * (gap // len(filler) - 1))
        rest = gap - len(parts[-1])
        parts.append(b"y" * (rest - 2) + b"\r\n")
        parts.append(line)
        quoted += gap + len(quote(line))
        cuts.append((before, quote(line)))
    parts.append(b"the end\r\n")
    return b"".join(parts), cuts


def test_quoted_from_lines_across_1mib_read_boundaries_restore_exactly(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    message, cuts = _straddling_message()
    old = dovecot.new_user()
    dovecot.write_maildir_file(old, "INBOX", message)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest, "--format", "mbox")[0] == 0
    entry = next(Archive.open_existing(dest).state().messages())
    assert entry.offset is not None
    assert entry.size == len(message) > archiver.restore.items.WHOLE_MAX  # it is streamed
    raw = (dest / "Inbox").read_bytes()[entry.offset:]
    for k, (before, line) in enumerate(cuts, start=1):  # the archive's reads cut these lines
        assert raw[k * CHUNK - before:k * CHUNK - before + len(line)] == line
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new, "--verify")
    assert code == 0, err
    assert [d for _, d, _, _ in dovecot_new.fetch_all(new)["INBOX"]] == [message]


def _archive(dovecot: DovecotServer, tmp_path: Path, fmt: str = "maildir"
             ) -> tuple[MailUser, Path]:
    old = dovecot.new_user()
    with dovecot.session(old) as c:
        for i in range(12):
            body = (f"Subject: m{i}\r\nMessage-ID: <m{i}@t>\r\n\r\n" + f"From line {i}\r\n" * 40
                    + "z" * (i * 997 % 5000) + "\r\n").encode()
            dovecot.append(old, "INBOX", body, ("\\Seen",) if i % 2 else (), client=c)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest, "--format", fmt)[0] == 0
    return old, dest


def _entries(dest: Path) -> list[MessageEntry]:
    return sorted(Archive.open_existing(dest).state().messages(), key=lambda m: m.uid)


def _without(want: Served, dropped: list[bytes]) -> Served:
    inbox = Counter({k: v for k, v in want["INBOX"].items() if k[0] not in dropped})
    return {**want, "INBOX": inbox}


def test_a_missing_or_short_archived_file_is_reported_and_never_sent(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old, dest = _archive(dovecot, tmp_path)
    entries = _entries(dest)
    short, gone, streamed_short = entries[2], entries[5], entries[8]
    dropped = [(dest / m.path).read_bytes() for m in (short, gone, streamed_short)]
    (dest / short.path).write_bytes(dropped[0][:-10])
    (dest / gone.path).unlink()
    (dest / streamed_short.path).write_bytes(dropped[2][:-1])
    monkeypatch.setattr(archiver.restore.items, "WHOLE_MAX", streamed_short.size - 1)
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new)
    summary = json.loads(out)
    assert code == 3, err
    assert sorted(p.split("UID ")[1].split(" ")[0] for p in summary["problems"]) == \
        sorted(str(m.uid) for m in (short, gone, streamed_short)), summary["problems"]
    assert summary["uploaded"] == 9
    assert served(dovecot_new, new) == _without(served(dovecot, old), dropped)


@pytest.mark.parametrize("fault", ["error", "short", "long"])
@pytest.mark.parametrize("which", ["new", "plain"])
def test_a_source_that_breaks_mid_literal_drops_the_line_and_lands_nothing_wrong(
        dovecot: DovecotServer, dovecot_new: DovecotServer, dovecot_plain: DovecotServer,
        tmp_path: Path, streamed: None, monkeypatch: pytest.MonkeyPatch, fault: str,
        which: str) -> None:
    """The file changes between the size check and the send: the APPEND is abandoned.

    Earlier messages of the same window are answered and journalled; the line is
    dropped (never a byte more into the literal), the folder redone without the
    broken message, and a rerun with the file whole again sends only that one.
    """
    target = dovecot_new if which == "new" else dovecot_plain
    old, dest = _archive(dovecot, tmp_path)
    broken = _entries(dest)[6]
    real = MaildirStore.message_chunks

    def flaky(self: MaildirStore, entry: MessageEntry, chunk: int = CHUNK) -> Iterator[bytes]:
        if entry.uid != broken.uid:
            yield from real(self, entry, chunk)
            return
        data = b"".join(real(self, entry, chunk))
        yield data[:len(data) // 2]
        if fault == "error":
            raise OSError(5, "Input/output error")
        if fault == "long":  # the whole message, then more: the last piece must wait
            yield data[len(data) // 2:]
            yield b"extra\r\n"

    monkeypatch.setattr(MaildirStore, "message_chunks", flaky)
    new = target.new_user()
    code, out, err = restore(dest, target, new)
    summary = json.loads(out)
    assert code == 3, err
    assert len(summary["problems"]) == 1 and f"UID {broken.uid} " in summary["problems"][0]
    assert summary["uploaded"] == 11 and not summary["refused"], summary
    want = served(dovecot, old)
    assert served(target, new) == _without(want, [(dest / broken.path).read_bytes()])
    monkeypatch.setattr(MaildirStore, "message_chunks", real)
    code, out, err = restore(dest, target, new)
    again = json.loads(out)
    assert code == 0 and again["uploaded"] == 1 and again["already"] == 11, err
    assert served(target, new) == want


def test_dedup_listing_in_small_pieces_finds_every_message(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The target folder is listed a few messages at a time: the journal-less rerun finds all."""
    monkeypatch.setattr(archiver.restore.target, "SCAN_EVERY", 5)
    old, dest = _archive(dovecot, tmp_path, "mbox")
    new = dovecot_new.new_user()
    assert restore(dest, dovecot_new, new)[0] == 0
    for journal in (dest / ".archiver").glob("restore-*.jsonl.zst"):
        journal.unlink()
    code, out, err = restore(dest, dovecot_new, new, "--verify")
    summary = json.loads(out)
    assert code == 0, err
    assert summary["found"] == 12 and summary["uploaded"] == 0, summary
    assert summary["verify"]["present"] == 12 and summary["verify"]["extra"] == 0
    assert served(dovecot_new, new) == served(dovecot, old)
