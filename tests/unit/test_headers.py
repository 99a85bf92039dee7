"""Header decoding for the index: Japanese charsets, RFC 2047, junk never raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from archiver.headers import summarize


def test_iso2022jp_encoded_words_decode() -> None:
    subject = "=?ISO-2022-JP?B?" + __import__("base64").b64encode(
        "会議の件".encode("iso2022_jp")).decode() + "?="
    msg = f"Subject: {subject}\r\nDate: Mon, 1 Mar 2004 10:00:00 +0900\r\n\r\nbody".encode()
    got = summarize(msg)
    assert got["subject"] == "会議の件"
    assert got["date"] == "2004-03-01T10:00:00+09:00"


def test_raw_shift_jis_and_utf8_headers_decode() -> None:
    assert summarize("Subject: 研究室\n\n".encode("cp932"))["subject"] == "研究室"
    assert summarize("From: 山田 <y@x>\n\n".encode())["from"] == "山田 <y@x>"


def test_folded_and_mislabelled_headers() -> None:
    msg = (b"Subject: =?shift_jis?B?" + __import__("base64").b64encode("①髙".encode("cp932"))
           + b"?=\r\n =?utf-8?q?_tail?=\r\nMessage-ID: <a@b>\r\n\r\n")
    got = summarize(msg)
    assert got["subject"] is not None and got["subject"].startswith("①髙")
    assert got["message_id"] == "<a@b>"


def test_no_header_and_empty_message() -> None:
    assert summarize(b"")["subject"] is None
    assert summarize(b"\r\nbody only")["subject"] is None


@given(st.binary(max_size=2000))
def test_any_bytes_give_strings_or_none(data: bytes) -> None:
    for value in summarize(data).values():
        assert value is None or isinstance(value, str)


def test_cr_cr_lf_line_ends_are_one_line_end_not_the_end_of_the_header() -> None:
    """Courier-IMAP serves a Maildir file that has CRLF line ends with every LF made
    CRLF, so each line ends in CR CR LF.  That is one line end: the Subject and the
    Message-ID (which a restore matches the target by) are still header fields."""
    msg = b"From: a@b\r\r\nSubject: courier\r\r\nMessage-ID: <c@d>\r\r\n\r\r\nbody\r\r\n"
    got = summarize(msg)
    assert (got["from"], got["subject"], got["message_id"]) == ("a@b", "courier", "<c@d>")
    assert summarize(b"From: a@b\rSubject: mac\r\rbody\r")["subject"] == "mac"
