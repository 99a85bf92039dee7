"""The test infrastructure itself: the Dovecot helper, the corpus, the fixtures.

These pin down the Dovecot 2.3 behaviour the archiver tests rely on.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import time
from pathlib import Path

import imapclient
import pytest

from tests import corpus
from tests.conftest import LoadedUser
from tests.dovecot import (
    DovecotError,
    DovecotServer,
    MailUser,
    maildir_folder_dirname,
    raw_append,
    served_form,
)


def test_imaps_login_needs_the_right_ca(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with dovecot.session(mail_user) as c:
        assert c.has_capability("UIDPLUS")
        assert c.has_capability("CONDSTORE")
    with pytest.raises(ssl.SSLCertVerificationError):
        dovecot.imap(mail_user, cafile=dovecot.wrong_cafile)
    # wrong password is refused
    with pytest.raises(imapclient.exceptions.LoginError):
        dovecot.imap(MailUser(mail_user.name, "wrong"))
    # no auth_failure_delay / anvil auth penalty: the next login is immediate
    t = time.monotonic()
    dovecot.imap(mail_user).logout()
    assert time.monotonic() - t < 1.0


def test_plaintext_port_starttls_master_user_and_pop3(dovecot: DovecotServer,
                                                      mail_user: MailUser) -> None:
    c = dovecot.imap(mail_user, tls=False)  # disable_plaintext_auth = no
    c.logout()
    c = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=10)
    assert c.has_capability("STARTTLS")
    c.starttls(dovecot.ssl_context())
    c.login(mail_user.name, mail_user.password)
    c.logout()
    c = dovecot.imap(login=mail_user.as_master())  # "user*admin" / admin-pw
    assert c.select_folder("INBOX")[b"EXISTS"] == 0
    c.logout()
    uid = dovecot.append(mail_user, "INBOX", b"Subject: pop\r\n\r\nx\r\n")
    p = dovecot.pop3(mail_user)
    try:
        assert p.stat()[0] == 1
        uidl = p.uidl()[1][0].split()[1].decode()
        uidvalidity = dovecot.uidvalidity(mail_user, "INBOX")
        # pop3_uidl_format = %08Xu%08Xv -- Dovecot prints %X in lower case
        assert uidl == f"{uid:08x}{uidvalidity:08x}"
    finally:
        p.quit()


def test_new_users_are_visible_at_once_and_empty(dovecot: DovecotServer) -> None:
    # Several users in quick succession, right after other logins (same
    # second): each must be able to log in at once.
    users = [dovecot.new_user("fresh") for _ in range(3)]
    assert len({u.name for u in users}) == 3
    for u in users:
        with dovecot.session(u) as c:
            assert [n for _, _, n in c.list_folders()] == ["INBOX"]
            assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
        assert dovecot.fetch_all(u) == {"INBOX": []}


def test_corpus_round_trip_is_byte_exact(dovecot: DovecotServer,
                                         loaded_user: LoadedUser) -> None:
    got = dovecot.fetch_all(loaded_user.user)
    for f in loaded_user.folders:
        assert f in got, f
    assert got[corpus.EMPTY] == []
    for m, uid in zip(loaded_user.messages, loaded_user.uids):
        byuid = {r[0]: r for r in got[m.folder]}
        assert uid in byuid, m.label
        _, body, flags, date = byuid[uid]
        assert body == m.served, m.label
        assert flags == set(m.flags), m.label
        # Dovecot keeps the instant but serves it in the server's own zone.
        assert date == m.internaldate, m.label
    total = sum(len(v) for v in got.values())
    assert total == len(loaded_user.messages)
    dups = [r for r in got[corpus.BRACKETS] if b"exact duplicate" in r[1]]
    assert len(dups) == 2 and dups[0][1] == dups[1][1]
    zero = [r for r in got[corpus.APOS] if r[1] == b""]
    assert len(zero) == 1 and zero[0][2] == {"\\Seen"}


def test_dovecot_byte_facts(dovecot: DovecotServer, mail_user: MailUser) -> None:
    """APPEND: CRLF->LF on disk, final CR dropped; serving: LF->CRLF, NUL->0x80."""
    cases = {
        b"S: x\n\nlf\n": b"S: x\r\n\r\nlf\r\n",
        b"S: x\r\n\r\nnul\0byte\r\n": b"S: x\r\n\r\nnul\x80byte\r\n",
        b"a\rb\r\r\n": b"a\rb\r\n",
        b"x\r\n\r": b"x\r\n",
        b"x\r": b"x",
        b"A\r\nB\nC\rD\n\rE": b"A\r\nB\r\nC\rD\r\n\rE",
    }
    with dovecot.session(mail_user) as c:
        uids = {raw_append(c, "INBOX", k): (k, v) for k, v in cases.items()}
        with pytest.raises(DovecotError, match="zero byte"):
            raw_append(c, "INBOX", b"")
        c.select_folder("INBOX", readonly=True)
        res = c.fetch(list(uids), ["BODY.PEEK[]"])
    for uid, (sent, want) in uids.items():
        assert res[uid][b"BODY[]"] == want == served_form(sent), sent
    # on disk Dovecot keeps LF endings
    files = list((dovecot.maildir(mail_user) / "cur").iterdir()) + \
        list((dovecot.maildir(mail_user) / "new").iterdir())
    assert any(f.read_bytes() == b"S: x\n\nlf\n" for f in files)


def test_write_maildir_file_zero_byte_and_trailing_cr(dovecot: DovecotServer,
                                                      mail_user: MailUser) -> None:
    when = dt.datetime(2002, 5, 6, 7, 8, 9, tzinfo=corpus.JST)
    dovecot.write_maildir_file(mail_user, "INBOX", b"", "S", when)
    p = dovecot.write_maildir_file(mail_user, "foo.bar/x", b"x\r", "FR")
    assert p.parent.parent.name == ".foo\\2ebar.x"
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (dovecot.mail_uid, dovecot.mail_gid)
    got = dovecot.fetch_all(mail_user)
    assert got["INBOX"] == [(1, b"", {"\\Seen"}, when)]
    # a file is served as-is except LF->CRLF: the trailing CR survives here
    assert [(r[1], r[2]) for r in got["foo.bar/x"]] == [(b"x\r", {"\\Flagged", "\\Answered"})]
    assert served_form(b"x\r", appended=False) == b"x\r"


NAMES = ["受信箱/講義", "Café & Co", "emoji 📧 box", "foo.bar", "..", "a/../b", "cur",
         "back\\slash", "~tilde", "x/~y.z", "R&D", "[Work] Reports (2002)", "Bob's stuff"]


def test_folder_names_round_trip_and_disk_layout(dovecot: DovecotServer,
                                                 mail_user: MailUser) -> None:
    with dovecot.session(mail_user) as c:
        for n in NAMES:
            dovecot.create_folder(mail_user, n, client=c)
        listed = {name for _, _, name in c.list_folders()}
        subscribed = {name for _, _, name in c.list_sub_folders()}
    for n in NAMES:
        assert n in listed and n in subscribed, n
        d = dovecot.folder_path(mail_user, n)
        assert (d / "cur").is_dir(), (n, maildir_folder_dirname(n))
    assert maildir_folder_dirname("INBOX") == ""
    assert maildir_folder_dirname("foo.bar") == ".foo\\2ebar"
    assert maildir_folder_dirname("受信箱/講義") == ".&U9dP4Xux-.&ixt,qQ-"


def test_fingerprint_is_read_only_and_sensitive(dovecot: DovecotServer,
                                                mail_user: MailUser) -> None:
    u = mail_user
    a = dovecot.append(u, "INBOX", b"Subject: a\r\n\r\na\r\n")
    b = dovecot.append(u, "Folder", b"Subject: b\r\n\r\nb\r\n", ["\\Seen"])
    # \Recent is still set (nobody SELECTed yet): fingerprinting must not clear it
    fp = dovecot.fingerprint(u)
    assert dovecot.fingerprint(u) == fp
    with dovecot.session(u) as c:
        c.select_folder("INBOX", readonly=True)
        assert b"\\Recent" in c.get_flags([a])[a]
    for change in (lambda: dovecot.set_flags(u, "INBOX", a, ["\\Seen"]),
                   lambda: dovecot.set_flags(u, "INBOX", a, ["\\Seen", "$label1"]),
                   lambda: dovecot.append(u, "INBOX", b"Subject: c\r\n\r\nc\r\n"),
                   lambda: dovecot.expunge(u, "Folder", b),
                   lambda: dovecot.create_folder(u, "New"),
                   lambda: dovecot.bump_uidvalidity(u, "New"),
                   lambda: dovecot.delete_folder(u, "New")):
        prev = fp
        change()
        fp = dovecot.fingerprint(u)
        assert fp != prev, change
    assert dovecot.fetch_all(u)["Folder"] == []


def test_bump_uidvalidity_keeps_messages(dovecot: DovecotServer, loaded_user: LoadedUser) -> None:
    u = loaded_user.user
    before = dovecot.fetch_all(u)
    for folder in ("INBOX", corpus.DOT, corpus.JA_INBOX):
        old = dovecot.uidvalidity(u, folder)
        new = dovecot.bump_uidvalidity(u, folder)
        assert new != old
        assert dovecot.uidvalidity(u, folder) == new
        with dovecot.session(u) as c:
            assert c.select_folder(folder, readonly=True)[b"UIDVALIDITY"] == new
    assert dovecot.fetch_all(u) == before  # same UIDs, bytes, flags, dates


def test_condstore_highestmodseq(dovecot: DovecotServer, mail_user: MailUser) -> None:
    uid = dovecot.append(mail_user, "INBOX", b"Subject: m\r\n\r\nm\r\n")
    with dovecot.session(mail_user) as c:
        m1 = c.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
    dovecot.set_flags(mail_user, "INBOX", uid, ["\\Flagged"])
    with dovecot.session(mail_user) as c:
        m2 = c.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
    assert m2 > m1 > 0


def test_extra_config_and_stop(tmp_path: Path) -> None:
    with DovecotServer(tmp_path, extra_config="imap_capability = IMAP4rev1 LITERAL+ IDLE\n") as s:
        u = s.new_user()
        with s.session(u) as c:
            assert not c.has_capability("UIDPLUS")
        s.fetch_all(u)
        s.write_maildir_file(u, "X", b"x\n")
        assert s.log_problems() == []
        pid, port, where = s._pid, s.imaps_port, s.dir
        assert s.running
    assert pid is not None and not s.running
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    with pytest.raises(OSError):
        imapclient.IMAPClient("127.0.0.1", port=port, timeout=2)
    if os.geteuid() == 0:
        assert not where.exists()  # the /var/tmp server dir is removed
        assert (tmp_path / "dovecot.log").exists()  # log kept for post-mortems


def test_corpus_is_deterministic_and_small() -> None:
    a, b = corpus.nasty_messages(), corpus.nasty_messages()
    assert a == b
    assert 20 <= len(a) <= 60
    assert sum(len(m.data) for m in a) < 5 * 1024 * 1024
    assert {m.folder for m in a} == set(corpus.folder_names()) - {corpus.EMPTY}
    flags = {f for m in a for f in m.flags}
    assert set(corpus.SYSTEM_FLAGS) | set(corpus.KEYWORDS) <= flags
    years = {m.internaldate.year for m in a}
    assert years <= set(range(1999, 2005)) and len(years) >= 3
    assert all(m.internaldate.utcoffset() == dt.timedelta(hours=9) for m in a)
    big = corpus.big_message(2)
    assert 1.9e6 < len(big.data) < 2.3e6
    assert big == corpus.big_message(2)
