"""Restore onto a target that rewrote the messages it holds: found, not uploaded twice; verified.

Dovecot stores APPENDed mail with LF and serves CRLF (so ``CR CR LF`` loses
a CR and a final CR is dropped), serves NUL as 0x80, and a mail program
that copied mail across by hand may have made every line end CRLF.  The
archives here hold such bytes: from an old server that served them raw
(tests/fakeimap.py: Dovecot never serves a bare LF or a NUL over IMAP) and
from files in the old Dovecot's Maildir (served with their bare CRs).  The
target is the real Dovecot, except for Courier's final CRLF, which only a
scripted server (below) adds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from archiver.account import Endpoint, TLSOptions
from archiver.archive import Archive
from archiver.restore.check import verify_target
from archiver.restore.journal import RestoreJournal
from archiver.restore.target import ImapTarget
from archiver.restore.upload import Restore, RestoreOptions
from archiver.stores import open_store
from tests import corpus
from tests.dovecot import DovecotServer, MailUser, served_form
from tests.fakeimap import FakeImap
from tests.helpers import archived_files, backup, run_cli
from tests.integration.restore.test_restore import restore

# Rewritten by servers: bare CRs (one before CRLF, one at the very end), bare LFs, a NUL,
# no final newline, a Message-ID that only bare CRs separate (Dovecot does not see it),
# identical twins with and without Message-ID.
REWRITTEN = [
    ("INBOX", b"Subject: bare CR headers\rMessage-ID: <barecr@x>\r\rline one\rline two\r"),
    ("INBOX", b"Subject: cr cr lf\r\nMessage-ID: <crcrlf@x>\r\n\r\nbroken\r\r\nmailer\r\r\n"),
    ("INBOX", b"Subject: nul\r\nMessage-ID: <nul@x>\r\n\r\nraw\0nul\r\n"),
    ("INBOX", b"Subject: no newline\r\nMessage-ID: <nonl@x>\r\n\r\nlast line"),
    ("INBOX", b"Subject: final cr\r\nMessage-ID: <fcr@x>\r\n\r\ntext\r"),
    ("Lists", b"Subject: twin\nMessage-ID: <twin@x>\n\nlf twin\n"),
    ("Lists", b"Subject: twin\nMessage-ID: <twin@x>\n\nlf twin\n"),
    ("Lists", b"No-ID: twin\rsame\r"),
    ("Lists", b"No-ID: twin\rsame\r"),
    ("Lists", b"no header\nno Message-ID\r\r\nat all\r"),
]


def ascii_folder(folder: str) -> str:
    return folder if folder.isascii() and "'" not in folder else "Other"


def nasty() -> list[tuple[str, bytes]]:
    """REWRITTEN and the corpus's nasty messages (but the empty one Dovecot refuses)."""
    return REWRITTEN + [(ascii_folder(m.folder), m.data) for m in corpus.nasty_messages()
                        if m.data]


def archive_from_raw_server(tmp_path: Path, messages: list[tuple[str, bytes]]) -> Path:
    """Back up an old server that serves the bytes exactly as given (bare LF, NUL, ...)."""
    box: dict[bytes, dict[int, bytes]] = {}
    for i, (folder, data) in enumerate(messages):
        box.setdefault(folder.encode(), {})[i + 1] = data
    pw = tmp_path / "old.pw"
    pw.write_text("x\n")
    dest = tmp_path / "a"
    with FakeImap(box) as old:
        code, _, err = run_cli(["backup", f"imap://u@127.0.0.1:{old.port}", str(dest),
                                "--plaintext", "--password-file", str(pw), "--quiet"])
    assert code == 0, err
    return dest


def archive_from_dovecot_files(dovecot: DovecotServer, tmp_path: Path,
                               messages: list[tuple[str, bytes]]) -> Path:
    """Back up an old Dovecot whose Maildir files hold the bytes (served with bare CRs kept)."""
    old = dovecot.new_user()
    for i, (folder, data) in enumerate(messages):
        dovecot.write_maildir_file(old, folder, data, "S" if i % 2 else "",
                                   corpus._date(i))
    dest = tmp_path / "a"
    code, _, err = backup(dovecot, old, dest)
    assert code == 0, err
    return dest


@pytest.fixture(params=["raw-server", "dovecot-files"])
def archive(request: pytest.FixtureRequest, dovecot: DovecotServer, tmp_path: Path) -> Path:
    if request.param == "raw-server":
        return archive_from_raw_server(tmp_path, nasty())
    return archive_from_dovecot_files(dovecot, tmp_path, nasty())


def altered_on_dovecot(dest: Path) -> int:
    """How many archived messages Dovecot serves differently from their archived bytes."""
    return sum(served_form(data) != data for data in archived_files(dest).values())


def drop_journal(dest: Path) -> None:
    journals = list((dest / ".archiver").glob("restore-*.jsonl.zst"))
    assert journals
    for j in journals:
        j.unlink()


def bodies(server: DovecotServer, user: MailUser) -> Counter[tuple[str, bytes]]:
    return Counter((folder, data) for folder, msgs in server.fetch_all(user).items()
                   for _, data, _, _ in msgs)


def test_restore_again_without_the_journal_finds_what_the_server_rewrote(
        archive: Path, dovecot_new: DovecotServer) -> None:
    dest = archive
    count = len(archived_files(dest))
    altered = altered_on_dovecot(dest)
    assert altered >= 8  # the archive really holds what Dovecot rewrites
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new, "--json", "--verify")
    assert code == 0, err
    first = json.loads(out)
    assert first["uploaded"] == count, first
    assert first["verify"]["ok"] and first["verify"]["present"] == count, first["verify"]
    assert first["verify"]["altered"] == altered, first["verify"]
    assert len(first["verify"]["altered_messages"]) == altered
    on_target = bodies(dovecot_new, new)
    drop_journal(dest)  # as if restored from another PC, or the journal was deleted
    code, out, err = restore(dest, dovecot_new, new, "--json", "--verify")
    assert code == 0, err
    again = json.loads(out)
    assert again["uploaded"] == 0 and again["found"] == count, again
    assert bodies(dovecot_new, new) == on_target  # no duplicates
    assert again["verify"]["ok"] and again["verify"]["altered"] == altered, again["verify"]
    assert again["verify"]["extra"] == 0
    code, _, err = restore(dest, dovecot_new, new, "--verify")
    assert code == 0, err
    assert f"({altered} present, altered by the server" in err
    assert err.count("altered: ") == altered and "missing" not in err


def every_line_end_crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def test_mail_a_program_copied_across_with_crlf_line_ends_is_found(
        dovecot_new: DovecotServer, tmp_path: Path) -> None:
    """A mail program that made every bare CR and LF a CRLF before uploading by hand."""
    messages = [(f, d) for f, d in nasty() if b"\r\r\n" not in d]  # see restore/normal.py
    dest = archive_from_raw_server(tmp_path, messages)
    new = dovecot_new.new_user()
    when = dt.datetime(2024, 1, 1, 10, 0, tzinfo=corpus.JST)  # what the old server served
    for folder, data in messages:
        dovecot_new.append(new, folder, every_line_end_crlf(data), ["\\Seen"], when)
    before = dovecot_new.fingerprint(new)
    code, out, err = restore(dest, dovecot_new, new, "--json", "--verify")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["uploaded"] == 0 and summary["found"] == len(messages), summary
    assert summary["verify"]["ok"] and summary["verify"]["extra"] == 0, summary["verify"]
    assert dovecot_new.fingerprint(new) == before


def test_same_message_id_and_size_but_other_text_is_told_apart_by_the_body(
        dovecot_new: DovecotServer, tmp_path: Path) -> None:
    """Two archived messages that only the text tells apart; the target holds the second."""
    a = b"Subject: same id\nMessage-ID: <amb@x>\n\ncontent A\n"
    b = b"Subject: same id\nMessage-ID: <amb@x>\n\ncontent B\n"
    twin = b"Subject: twin\rMessage-ID: <t@x>\r\rtwice\r"
    dest = archive_from_raw_server(tmp_path, [("INBOX", a), ("INBOX", b),
                                              ("INBOX", twin), ("INBOX", twin)])
    new = dovecot_new.new_user()
    when = dt.datetime(2024, 1, 1, 10, 0, tzinfo=corpus.JST)
    dovecot_new.append(new, "INBOX", b, ["\\Seen"], when)
    dovecot_new.append(new, "INBOX", twin, ["\\Seen"], when)  # one of the two twins
    code, out, err = restore(dest, dovecot_new, new, "--json", "--verify")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["found"] == 2 and summary["uploaded"] == 2, summary
    assert bodies(dovecot_new, new) == Counter(
        {("INBOX", served_form(a)): 1, ("INBOX", served_form(b)): 1,
         ("INBOX", served_form(twin)): 2})
    assert summary["verify"]["ok"] and summary["verify"]["altered"] == 4, summary["verify"]


def test_migrate_reports_rewritten_messages_as_altered_not_missing(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    from tests.integration.restore.test_migrate import migrate

    old = dovecot.new_user()
    for i, (folder, data) in enumerate(REWRITTEN):
        dovecot.write_maildir_file(old, folder, data, "", corpus._date(i))
    new = dovecot_new.new_user()
    code, out, err = migrate(dovecot, old, dovecot_new, new, tmp_path,
                             "--via", str(tmp_path / "via"), "--json")
    assert code == 0, err
    result = json.loads(out)
    report = result["verify"]
    altered = altered_on_dovecot(tmp_path / "via")
    assert altered >= 4
    # migrate's closing check is the quick one (no bodies): a rewrite that changed the size
    # is seen as such; one that kept it (NUL -> 0x80) is just present
    assert report["ok"] and 0 < report["altered"] <= altered, report
    assert report["present"] == len(REWRITTEN)


# ---------------------------------------------------------------- Courier's final CRLF


class CourierLike(FakeImap):
    """Enough of an IMAP target for a restore, storing APPENDs the way Courier does.

    Courier-IMAP 5 adds CRLF to a message that does not end in a newline;
    Dovecot does not, so this one behaviour needs a scripted server.
    """

    def __init__(self) -> None:
        super().__init__({b"INBOX": {}})
        self.flags: dict[tuple[bytes, int], bytes] = {}
        self.dates: dict[tuple[bytes, int], bytes] = {}

    def greeting(self) -> bytes:
        return b"* OK [CAPABILITY IMAP4rev1 UIDPLUS AUTH=PLAIN] courier-like ready\r\n"

    def reply_capability(self, tag: bytes, rest: bytes) -> bytes:
        return b"* CAPABILITY IMAP4rev1 UIDPLUS AUTH=PLAIN\r\n" + tag + b" OK done\r\n"

    def reply_examine(self, tag: bytes, rest: bytes) -> bytes:
        reply = super().reply_examine(tag, rest)
        return (b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n"
                b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] ok\r\n"
                + reply.replace(b"[READ-ONLY]", b"[READ-WRITE]"))

    def handlers(self) -> dict[bytes, Callable[[bytes, bytes], bytes]]:
        return {**super().handlers(), b"CREATE": self.reply_create,
                b"SUBSCRIBE": lambda t, r: t + b" OK done\r\n", b"APPEND": self.reply_append}

    def reply_create(self, tag: bytes, rest: bytes) -> bytes:
        self.mailbox.setdefault(self.folder_arg(rest), {})
        return tag + b" OK created\r\n"

    def reply_append(self, tag: bytes, rest: bytes) -> bytes:
        name = self.folder_arg(rest)
        head, _, data = rest.partition(b"}\r\n")
        flags = re.search(rb"\(([^)]*)\)", head)
        date = re.search(rb'"([^"]*)"\s*\{', head)
        if not data.endswith(b"\n"):
            data += b"\r\n"  # what Courier does
        msgs = self.mailbox.setdefault(name, {})
        uid = max(msgs, default=0) + 1
        msgs[uid] = data
        self.flags[(name, uid)] = flags.group(1) if flags else b""
        self.dates[(name, uid)] = date.group(1) if date else b"01-Jan-2024 10:00:00 +0900"
        return tag + b" OK [APPENDUID %d %d] appended\r\n" % (self.uidvalidity, uid)

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        parts = rest.split(b" ", 3)
        uids, items = self.uids(parts[2]), parts[3].upper()
        name = self.selected or b""
        msgs = self.mailbox.get(name, {})
        order = sorted(msgs)
        out = []
        for uid in uids:
            if uid not in msgs:
                continue
            body = msgs[uid]
            seq = order.index(uid) + 1
            fields = [b"UID %d" % uid]
            if b"FLAGS" in items:
                fields.append(b"FLAGS (%s)" % self.flags[(name, uid)])
            if b"INTERNALDATE" in items:
                fields.append(b'INTERNALDATE "%s"' % self.dates[(name, uid)])
            if b"RFC822.SIZE" in items:
                fields.append(b"RFC822.SIZE %d" % len(body))
            if b"HEADER.FIELDS" in items:
                mid = re.search(rb"(?im)^message-id:[^\r\n]*\r?\n", body)
                value = (mid.group(0) if mid else b"") + b"\r\n"
                fields.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n%s" % (len(value), value))
            else:
                part = re.search(rb"BODY\.PEEK\[\](?:<(\d+)\.(\d+)>)?", items)
                if part:
                    start, length = (int(part.group(1)), int(part.group(2))) \
                        if part.group(1) else (0, len(body))
                    piece = body[start:start + length]
                    label = b"BODY[]<%d>" % start if part.group(1) else b"BODY[]"
                    fields.append(b"%s {%d}\r\n%s" % (label, len(piece), piece))
            out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(fields)))
        return b"".join(out) + tag + b" OK done\r\n"


def test_courier_final_crlf_is_found_again_and_verified(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    messages = [("INBOX", b"Subject: no newline\r\nMessage-ID: <nonl@x>\r\n\r\nlast line"),
                ("INBOX", b"No-ID: at all\r\n\r\nand no newline either"),
                ("INBOX", b"Subject: fine\r\nMessage-ID: <fine@x>\r\n\r\nends well\r\n")]
    dest = archive_from_raw_server(tmp_path, messages)
    with CourierLike() as server:
        ep = Endpoint("imap", "127.0.0.1", server.port, "u", TLSOptions(plaintext=True))

        def run(verify: bool) -> tuple[object, object]:
            archive = Archive.open_existing(dest)
            target = ImapTarget(ep, "pw", timeout=5)
            target.connect()
            journal = RestoreJournal(archive.meta_dir, ep.host, ep.port, ep.user).open(True)
            try:
                job = Restore(archive, open_store(dest, archive.format), target, journal,
                              RestoreOptions())
                summary = job.run()
                return summary, verify_target(job) if verify else None
            finally:
                journal.close()
                target.close()

        summary, report = run(True)
        assert summary.uploaded == 3  # type: ignore[attr-defined]
        stored = server.mailbox[b"INBOX"]
        assert sorted(len(d) for d in stored.values()) == sorted(len(d) + 2 * (i < 2)
                                                                 for i, (_, d) in
                                                                 enumerate(messages))
        assert report.ok and report.altered == 2, report.as_dict()  # type: ignore[attr-defined]
        drop_journal(dest)
        summary, report = run(True)
        assert summary.uploaded == 0 and summary.found == 3  # type: ignore[attr-defined]
        assert len(server.mailbox[b"INBOX"]) == 3
        assert report.ok and report.altered == 2  # type: ignore[attr-defined]


def test_verify_compares_the_text_not_just_identity_and_size(
        dovecot_new: DovecotServer, tmp_path: Path) -> None:
    """Same Message-ID and size but another text on the target: missing for --verify."""
    mine = b"Subject: mine\r\nMessage-ID: <same@x>\r\n\r\nthe archived text\r\n"
    other = b"Subject: mine\r\nMessage-ID: <same@x>\r\n\r\nthe changed text!\r\n"
    assert len(mine) == len(other)
    dest = archive_from_raw_server(tmp_path, [("INBOX", mine)])
    new = dovecot_new.new_user()
    when = dt.datetime(2024, 1, 1, 10, 0, tzinfo=corpus.JST)
    dovecot_new.append(new, "INBOX", other, ["\\Seen"], when)
    code, out, err = restore(dest, dovecot_new, new, "--json", "--verify")
    summary = json.loads(out)
    assert summary["found"] == 1  # the dedup trusts identity and size (no download) ...
    assert code == 1, err  # ... --verify does not
    assert summary["verify"]["missing"] == [
        "INBOX: UID 1 <same@x> is not on the target (one with its identity and size is, "
        "but its text differs)"], summary["verify"]
