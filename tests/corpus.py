"""A deterministic, deliberately nasty test corpus for the archiver.

Everything here is a pure function of its arguments (no randomness without a
fixed seed, no clock), so two runs produce byte-identical corpora.

* :func:`folder_names` -- Unicode / punctuation / deep folder names (and one
  folder that stays empty).
* :func:`nasty_messages` -- a few dozen messages with every encoding and
  framing problem we care about (< 2 MB in total).
* :func:`big_message` -- one big message (base64 attachment) for streaming tests.
* :func:`load` -- put folders and messages on a :class:`tests.dovecot.DovecotServer`.

What Dovecot will serve for a message is ``dovecot.served_form(msg.data)``
(bare LF -> CRLF, NUL -> 0x80, a final CR dropped on APPEND);
:attr:`CorpusMessage.served` gives it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

try:  # imported as "tests.corpus" or, with tests/ on sys.path, as "corpus"
    from .dovecot import raw_append, served_form
except ImportError:  # pragma: no cover
    from dovecot import raw_append, served_form  # type: ignore[no-redef]

if TYPE_CHECKING:
    from dovecot import DovecotServer, MailUser

JST = _dt.timezone(_dt.timedelta(hours=9))

INBOX = "INBOX"
SENT = "Sent"
DEEP = "Archive/2003/Lectures/Spring Term"
JA_INBOX = "受信箱/講義"
JA_LAB = "研究室/ゼミ 資料"
CAFE = "Café déjà vu"
EMOJI = "emoji 📧 box"
RND = "R&D"
DOT = "foo.bar"
BRACKETS = "[Work] Reports (2002)"
APOS = "Bob's stuff"
EMPTY = "Empty"

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted")
KEYWORDS = ("$Forwarded", "$Junk", "$label1")

# IMAP flag -> Maildir info letter (for via="file")
_MAILDIR_LETTER = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R",
                   "\\Seen": "S", "\\Deleted": "T"}


@dataclass(frozen=True)
class CorpusMessage:
    folder: str
    data: bytes
    flags: tuple[str, ...] = ()
    internaldate: _dt.datetime = field(
        default_factory=lambda: _dt.datetime(2001, 1, 1, 9, 0, 0, tzinfo=JST))
    label: str = ""
    via: Literal["append", "file"] = "append"

    @property
    def served(self) -> bytes:
        """The bytes Dovecot serves as BODY[] for this message."""
        return served_form(self.data, appended=self.via == "append")


def folder_names() -> list[str]:
    """All corpus folders ("/" hierarchy). The last one, ``EMPTY``, gets no messages."""
    return [INBOX, SENT, DEEP, JA_INBOX, JA_LAB, CAFE, EMOJI, RND, DOT, BRACKETS, APOS, EMPTY]


def _date(n: int) -> _dt.datetime:
    """The n-th fixed internaldate: spread over 1999-2004, +0900."""
    base = _dt.datetime(1999, 1, 1, 0, 0, 0, tzinfo=JST)
    return base + _dt.timedelta(days=(n * 73) % 2190, hours=n % 24, minutes=(n * 7) % 60,
                                seconds=n % 60)


def _b64word(text: str, charset: str) -> str:
    raw = text.encode(charset)
    return f"=?{charset.upper()}?B?{base64.b64encode(raw).decode('ascii')}?="


def _hdr(**kw: str) -> bytes:
    return "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in kw.items()).encode("ascii")


def _simple(n: int, subject: str, body: str = "Hello.\r\n", **extra: str) -> bytes:
    h = {
        "From": f"Sender {n} <sender{n}@example.org>",
        "To": "alice@example.jp",
        "Subject": subject,
        "Date": _date(n).strftime("%a, %d %b %Y %H:%M:%S +0900"),
        "Message_ID": f"<corpus-{n}@example.org>",
    }
    h.update(extra)
    return _hdr(**h) + b"\r\n" + body.encode("ascii")


def nasty_messages() -> list[CorpusMessage]:
    """The default corpus: a few dozen awkward messages spread over folder_names()."""
    out: list[CorpusMessage] = []
    n = 0

    def add(folder: str, data: bytes, label: str, flags: tuple[str, ...] = (),
            via: Literal["append", "file"] = "append") -> None:
        nonlocal n
        n += 1
        out.append(CorpusMessage(folder, data, flags, _date(n), label, via))

    # --- Japanese -------------------------------------------------------
    subj = _b64word("講義資料について", "iso-2022-jp")
    frm = _b64word("山田 太郎", "iso-2022-jp")
    add(INBOX, _hdr(From=f"{frm} <yamada@example.jp>", To="alice@example.jp",
                    Subject=subj, Date="Mon, 12 Apr 1999 10:00:00 +0900",
                    Message_ID="<iso2022jp@example.jp>", MIME_Version="1.0",
                    Content_Type='text/plain; charset="ISO-2022-JP"',
                    Content_Transfer_Encoding="7bit")
        + b"\r\n" + "来週の講義の資料を送ります。\r\nよろしくお願いします。\r\n"
        .encode("iso-2022-jp"), "iso-2022-jp body + B-encoded subject/from", ("\\Seen",))
    add(JA_INBOX, _hdr(From="sjis@example.jp", To="alice@example.jp",
                       Subject="=?Shift_JIS?B?" + base64.b64encode(
                           "ゼミ".encode("shift_jis")).decode() + "?=",
                       Date="Tue, 13 Apr 1999 11:00:00 +0900",
                       Message_ID="<sjis-body@example.jp>", MIME_Version="1.0",
                       Content_Type="text/plain; charset=Shift_JIS",
                       Content_Transfer_Encoding="8bit")
        + b"\r\n" + "ゼミの日程：表・ソ・能（ダメ文字）\r\n".encode("shift_jis"),
        "shift_jis 8-bit body", ("\\Seen", "\\Answered"))
    add(JA_LAB, b"From: =?UTF-8?B?" + base64.b64encode("研究室".encode())
        + b"?= <lab@example.jp>\r\n"
        + "Subject: 生の UTF-8 ヘッダ\r\n".encode()
        + b"X-SJIS-Header: " + "生のシフトJIS".encode("shift_jis") + b"\r\n"
        + b"Message-ID: <raw8bit-headers@example.jp>\r\n\r\n"
        + "本文\r\n".encode(), "raw 8-bit UTF-8 and Shift_JIS in headers", ("$label1",))

    # --- transfer encodings / MIME ------------------------------------------
    add(CAFE, _simple(n + 1, "=?UTF-8?Q?Caf=C3=A9_d=C3=A9j=C3=A0_vu?=",
                      "Caf=C3=A9 d=C3=A9j=C3=A0 vu =E2=80=94 a very long line that is soft-=\r\n"
                      "wrapped by quoted-printable=\r\n and ends here.\r\n",
                      MIME_Version="1.0", Content_Type="text/plain; charset=utf-8",
                      Content_Transfer_Encoding="quoted-printable"),
        "utf-8 quoted-printable", ("\\Flagged",))
    att = base64.encodebytes(b"%PDF-1.4 fake\n" * 20).replace(b"\n", b"\r\n")
    add(JA_LAB, b"From: prof@example.jp\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
        b"Message-ID: <rfc2231@example.jp>\r\n"
        b'Content-Type: multipart/mixed; boundary="BOUNDARY-1"\r\n\r\n'
        b"preamble\r\n--BOUNDARY-1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "添付します。\r\n".encode()
        + b"--BOUNDARY-1\r\nContent-Type: application/pdf\r\n"
          b"Content-Disposition: attachment;\r\n"
          b" filename*=UTF-8''%E3%82%BC%E3%83%9F%E8%B3%87%E6%96%99%202003.pdf\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" + att
        + b"--BOUNDARY-1--\r\nepilogue\r\n", "rfc2231 filename attachment", ("\\Seen",))
    add(RND, b"From: broken@example.org\r\nSubject: broken MIME\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
        b"--never-closed\r\nContent-Type: text/html\r\n\r\n<p>unterminated\r\n",
        "broken/unclosed MIME")
    add(RND, b"From: bin@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + bytes(range(1, 256)) + b"\r\n",
        "content-transfer-encoding binary (all byte values but NUL)")

    # --- framing ----------------------------------------------------------------
    add(INBOX, b"This message has no header lines at all.\r\nJust body.\r\n", "no headers at all")
    add(INBOX, b"\r\nBody after an empty header block.\r\n", "empty header block")
    add(SENT, b"From: nul@example.org\r\nSubject: NUL bytes\r\n\r\nbefore\0after\r\n\0\0\r\n",
        "NUL bytes in body (served as 0x80)", ("\\Seen",))
    add(SENT, b"From: cr@example.org\rSubject: bare CR only\r\rline one\rline two\r",
        "bare CR line endings")
    add(SENT, b"From: mixed@example.org\r\nSubject: mixed endings\n\r\ncrlf\r\nlf\ncr\rend\n\r",
        "mixed CR/LF/CRLF")
    add(SENT, b"From: lf@example.org\nSubject: LF only\n\nunix\nline endings\n", "LF only")
    add(DEEP, b"From: long@example.org\r\nSubject: 1 MB line\r\n\r\n"
        + b"0123456789abcdef" * 65536 + b"\r\n", "1 MB single line")
    add(DEEP, b"From: mbox@example.org\r\nSubject: From lines\r\n\r\n"
        b"From the start of a line\r\n>From an escaped one\r\n>>From double\r\n"
        b"From \r\n", "body lines starting with From and >From", ("\\Answered",))
    add(APOS, b"From: nonl@example.org\r\nSubject: no trailing newline\r\n\r\nlast line",
        "no trailing newline")
    add(APOS, b"", "zero-byte message", ("\\Seen",), via="file")

    # --- duplicates / Message-ID collisions ----------------------------------
    dup = _simple(900, "exact duplicate", "same bytes twice\r\n")
    for i in (1, 2):
        n += 1
        out.append(CorpusMessage(BRACKETS, dup, ("\\Seen",), _date(900),
                                 f"exact duplicate {i}/2"))
    add(BRACKETS, _simple(901, "same id A", "content A\r\n",
                          Message_ID="<same-id@example.org>"), "same Message-ID, content A")
    add(BRACKETS, _simple(902, "same id B", "content B is different\r\n",
                          Message_ID="<same-id@example.org>"), "same Message-ID, content B")

    # --- flags and keywords -------------------------------------------------
    add(EMOJI, _simple(910, "=?UTF-8?B?" + base64.b64encode("📧 mail".encode()).decode() + "?="),
        "all system flags but deleted", ("\\Seen", "\\Answered", "\\Flagged", "\\Draft"))
    add(EMOJI, _simple(911, "deleted but not expunged"), "\\Deleted flag", ("\\Deleted",))
    add(EMOJI, _simple(912, "keywords"), "keywords", ("$Forwarded", "$Junk", "$label1"))
    add(EMOJI, _simple(913, "everything"), "every flag and keyword",
        SYSTEM_FLAGS + KEYWORDS)
    add(DOT, _simple(914, "in a dotted folder"), "message in foo.bar", ("\\Seen", "$Junk"))
    add(SENT, _simple(915, "unflagged plain"), "no flags")
    return out


def big_message(size_mb: float, *, seed: int = 1, folder: str = INBOX) -> CorpusMessage:
    """A ~size_mb MB message: a text part plus a base64 attachment of seeded random bytes."""
    raw_len = max(1, int(size_mb * 1024 * 1024 * 3 / 4))
    payload = random.Random(seed).randbytes(raw_len)
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    data = (b"From: big@example.org\r\nTo: alice@example.jp\r\n"
            + f"Subject: big message {size_mb} MB\r\n".encode()
            + f"Message-ID: <big-{seed}-{size_mb}@example.org>\r\n".encode()
            + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="big"\r\n\r\n'
              b"--big\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n"
              b"--big\r\nContent-Type: application/octet-stream\r\n"
              b'Content-Disposition: attachment; filename="big.bin"\r\n'
              b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--big--\r\n")
    return CorpusMessage(folder, data, (), _dt.datetime(2004, 2, 29, 23, 59, 59, tzinfo=JST),
                         f"big {size_mb} MB", "append")


def load(server: DovecotServer, user: MailUser, messages: list[CorpusMessage],
         folders: list[str] | None = None) -> list[int]:
    """Create *folders* (default: folder_names()) and put *messages* on the server.

    Messages are stored in list order, so within a folder UIDs ascend with the
    list.  Returns the UID of each message (same order as *messages*).
    """
    uids: list[int] = []
    with server.session(user) as c:
        for f in folders if folders is not None else folder_names():
            server.create_folder(user, f, client=c)
        for m in messages:
            if m.via == "append":
                server.create_folder(user, m.folder, client=c)
                uids.append(raw_append(c, m.folder, m.data, m.flags, m.internaldate))
            else:
                letters = ""
                for fl in m.flags:
                    if fl not in _MAILDIR_LETTER:
                        raise ValueError(f"{m.label}: flag {fl} cannot be written via file")
                    letters += _MAILDIR_LETTER[fl]
                server.write_maildir_file(user, m.folder, m.data, letters, m.internaldate)
                st = c.folder_status(m.folder, ["UIDNEXT"])
                uids.append(int(st[b"UIDNEXT"]) - 1)
    return uids


# ---------------------------------------------------------------- offline extras



def _b(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


SJIS_BODY = "議事録：ソフトウェア表示の確認①です。\r\n"
OFFLINE_EXTRA = [  # search/show/export cases: folder, bytes, flags, internaldate
    ("INBOX", ("From: kana@example.jp\r\nTo: alice@example.jp\r\n"
               f"Subject: {_b('ｺｳｷﾞ ﾉ ｵｼﾗｾ ＡＢＣ１２３', 'utf-8')}\r\n"
               "Date: Wed, 05 May 2004 08:00:00 +0900\r\nMessage-ID: <kana@example.jp>\r\n"
               "\r\nhalf-width kana subject\r\n").encode(), ("\\Seen",),
     _dt.datetime(2004, 5, 5, 8, 0, tzinfo=JST)),
    ("INBOX", (b"From: sjis64@example.jp\r\nTo: alice@example.jp\r\nSubject: sjis base64\r\n"
               b"Date: Thu, 06 May 2004 09:30:00 +0900\r\nMessage-ID: <sjis64@example.jp>\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=Shift_JIS\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n")
     + base64.encodebytes(SJIS_BODY.encode("cp932")).replace(b"\n", b"\r\n"), (),
     _dt.datetime(2004, 5, 6, 9, 30, tzinfo=JST)),
    ("Sent", (b"From: html@example.jp\r\nTo: bob@example.jp, carol@example.jp\r\n"
              b"Cc: dave@example.jp\r\nSubject: html only\r\n"
              b"Date: Fri, 07 May 2004 10:00:00 +0900\r\nMessage-ID: <html@example.jp>\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=EUC-JP\r\n\r\n")
     + "<html><head><style>p {}</style></head><body><p>ＨＴＭＬだけの&amp;本文</p>"
       "<script>hidden()</script><div>二行目</div></body></html>\r\n".encode("euc-jp"),
     ("\\Seen", "\\Answered"), _dt.datetime(2004, 5, 7, 10, 0, tzinfo=JST)),
    ("Sent", ("Return-Path: <bounce@example.org>\r\nFrom: att@example.jp\r\n"
              "Subject: sjis attachment name\r\nMessage-ID: <sjis-att@example.jp>\r\n"
              'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
              "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
              "=E6=B7=BB=E4=BB=98=E3=81=A7=E3=81=99\r\n--b1\r\n"
              "Content-Type: application/vnd.ms-excel\r\n"
              f'Content-Disposition: attachment; filename="{_b("資料①.xls", "cp932")}"\r\n'
              "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b1\r\n"
              "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
              "\r\n\r\n!!!not base64 at all@@@\r\n--b1\r\n"
              "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nunknown cs\r\n"
              "--b1--\r\n").encode(), ("\\Flagged", "$label2"),
     _dt.datetime(2004, 5, 8, 11, 0, tzinfo=JST)),
]
