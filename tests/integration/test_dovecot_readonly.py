"""A second, real Dovecot serves an archive read-only with docs/dovecot-readonly.conf.

The nasty Japanese corpus (custom keywords, $Forwarded, Japanese folders) is
backed up from the test Dovecot, then served by another Dovecot configured
with the shipped config and ACL file (paths substituted, nothing else): it
must show every message with the source's flags, keywords and INTERNALDATE,
hide ``.archiver``, refuse changes and leave the archive's files as they were.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.names import encode_mutf7
from tests import corpus
from tests.dovecot import ROOT_PARENT, DovecotServer, MailUser
from tests.helpers import backup, run_cli

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "docs" / "dovecot-readonly.conf"
ACL = REPO / "docs" / "dovecot-readonly.acl"
MANY = tuple(f"k{i:02d}" for i in range(26))  # with $label1: 27 keywords in JA_LAB
NEW = b"Subject: x\r\n\r\nbody\r\n"
# what the documented config lets Dovecot write inside the archive
DOVECOT_WRITES = ("dovecot-uidlist", "dovecot-uidvalidity")


def _fetch(server: DovecotServer, user: MailUser) -> Counter[tuple[str, str, str]]:
    """(mailbox, flags without \\Recent, date.received) of every message, as doveadm sees it."""
    out = server.doveadm("-f", "tab", "fetch", "-u", user.name,
                         "mailbox flags date.received", "all").stdout
    rows: Counter[tuple[str, str, str]] = Counter()
    for line in out.splitlines()[1:]:
        mailbox, flags, date = line.split("\t")
        kept = sorted(f for f in flags.split() if f != "\\Recent")
        rows[(mailbox, " ".join(kept), date)] += 1
    return rows


def _tree(dest: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under DEST but what Dovecot may write."""
    out: dict[str, str] = {}
    for root, _dirs, files in os.walk(dest):
        for name in files:
            if name.startswith(DOVECOT_WRITES):
                continue
            path = Path(root, name)
            out[path.relative_to(dest).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return out


def _raw_imap(server: DovecotServer, user: MailUser, commands: list[bytes]) -> list[bytes]:
    """Send IMAP commands as they are (imaplib refuses STORE after a READ-ONLY SELECT)."""
    ctx = server.ssl_context()
    answers: list[bytes] = []
    with socket.create_connection((server.host, server.imaps_port), timeout=20) as raw, \
            ctx.wrap_socket(raw, server_hostname=server.host) as s:
        f = s.makefile("rb")
        f.readline()
        for n, cmd in enumerate([b"LOGIN " + user.name.encode() + b" "
                                 + user.password.encode()] + commands):
            tag = b"t%d" % n
            s.sendall(tag + b" " + cmd + b"\r\n")
            text = b""
            while True:
                line = f.readline()
                text += line
                if line.startswith(tag + b" ") or not line:
                    break
            answers.append(text)
    return answers[1:]


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory both Dovecot mail processes can reach (pytest's tmp dirs are 0700)."""
    if os.geteuid() != 0:
        pytest.skip("serving an archive with a second Dovecot needs root (its mail user)")
    ROOT_PARENT.mkdir(parents=True, exist_ok=True)
    d = ROOT_PARENT / f"ro-{secrets.token_hex(6)}"
    d.mkdir(mode=0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _serve(tmp_path: Path, place: Path, dest: Path) -> DovecotServer:
    own = place / "dovecot"
    own.mkdir()
    conf = CONF.read_text().replace("@ARCHIVE@", str(dest)).replace("@DOVECOT_DIR@", str(own))
    shutil.copy(ACL, own / "dovecot-acl")
    server = DovecotServer(tmp_path / "ro", extra_config=conf)
    server.start()
    _own(server, dest, own)
    return server


def _own(server: DovecotServer, *paths: Path) -> None:
    """Dovecot's mail user owns the archive, as when it is the user the backups run as
    (docs/READING.md, "Dovecot": archiver's files are 0600)."""
    for path in paths:
        subprocess.run(["chown", "-R", f"{server.mail_uid}:{server.mail_gid}", str(path)],
                       check=True)


def test_an_archive_served_by_dovecot_read_only_shows_the_source_flags_keywords_and_dates(
        dovecot: DovecotServer, tmp_path: Path, place: Path) -> None:
    user = dovecot.new_user("served")
    corpus.load(dovecot, user, corpus.nasty_messages(), corpus.folder_names())
    dovecot.append(user, corpus.JA_LAB, b"Subject: many keywords\r\n\r\nx\r\n",
                   ("\\Seen", *MANY))
    dest = place / "archive"
    code, out, err = backup(dovecot, user, dest)
    assert code == 0, err
    assert (out + err).count("k25") == 1  # the 27th keyword, noted once
    ro = _serve(tmp_path, place, dest)
    try:
        reader = ro.new_user("reader")
        before = _tree(dest)
        source = _fetch(dovecot, user)
        served = _fetch(ro, reader)
        # every message, with the source's flags, keywords and date -- but the 27th keyword
        overflow = [k for k in source if k[0] == corpus.JA_LAB and "k25" in k[1]]
        assert len(overflow) == 1
        mailbox, flags, date = overflow[0]
        expected = source - Counter({overflow[0]: 1}) + Counter(
            {(mailbox, " ".join(f for f in flags.split() if f != "k25"), date): 1})
        assert served == expected
        assert any("$Forwarded" in k[1] for k in served)

        names = ro.list_folders(reader, selectable_only=False)
        assert not [n for n in names if n.startswith(".")]  # .archiver hidden
        assert corpus.JA_INBOX in names and corpus.JA_LAB in names

        # a folder holding a \Deleted message: EXPUNGE must not remove it
        emoji = b'"' + encode_mutf7(corpus.EMOJI) + b'"'
        assert any(k[0] == corpus.EMOJI and "\\Deleted" in k[1] for k in served)
        select, store, _expunge, *changes = _raw_imap(ro, reader, [
            b"SELECT " + emoji, b"UID STORE 1:* +FLAGS (\\Flagged $new)", b"UID EXPUNGE 1:*",
            b"APPEND INBOX {%d+}\r\n%s" % (len(NEW), NEW), b"UID COPY 1:* INBOX",
            b"CREATE newbox", b"DELETE Sent", b"RENAME Sent Sent2"])
        assert b"[READ-ONLY]" in select
        # Dovecot answers OK to STORE and EXPUNGE in a read-only mailbox and changes
        # nothing (RFC 3501 lets it); PERMANENTFLAGS () says no flag can be kept
        assert b"[PERMANENTFLAGS ()]" in store
        for answer in changes:
            assert answer.splitlines()[-1].split()[1] == b"NO", answer
        assert _fetch(ro, reader) == served
        assert _tree(dest) == before  # byte for byte, Dovecot's uidlists aside
        assert not ro.log_problems()

        code, out, err = run_cli(["verify", str(dest)])
        assert code == 0, out + err

        # a rerun after flag and keyword changes on the source: Dovecot follows
        with dovecot.session(user) as c:
            c.select_folder("INBOX")
            uids = c.search(["ALL"])
            c.add_flags(uids[:1], ["later", "$Forwarded"])
            c.remove_flags(uids[1:2], ["\\Seen"])
        code, out, err = backup(dovecot, user, dest)
        assert code == 0, err
        _own(ro, dest)
        assert _fetch(ro, reader) == _fetch(dovecot, user) - Counter(
            {overflow[0]: 1}) + Counter(
            {(mailbox, " ".join(f for f in flags.split() if f != "k25"), date): 1})
        assert not ro.log_problems()
    finally:
        ro.stop()
