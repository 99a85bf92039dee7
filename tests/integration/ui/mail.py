"""The messages the web page's tests read: Japanese folders, an HTML mail with an inline
image and a Japanese-named attachment, and a hostile HTML mail.

Backed up from the suite's Dovecot by :func:`build`, so the archive is what a
real backup writes.
"""

from __future__ import annotations

import base64
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from tests.corpus import JST
from tests.dovecot import DovecotServer
from tests.helpers import backup

LECTURES = "受信箱/講義"
SEMINAR = "研究室/ゼミ 資料"
ATTACHMENT_NAME = "ゼミ資料 2003.pdf"
ATTACHMENT = b"%PDF-1.4 fake\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
PNG = base64.b64decode(  # a 1x1 red PNG: the inline (cid:) image
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
HTML_SUBJECT = "ゼミの議事録（HTML）"
HTML_TEXT = "議事録の本文です"
LECTURE_SUBJECT = "講義資料について"
HOSTILE_SUBJECT = "hostile html"


def _word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def lecture_message() -> bytes:
    return (f"From: {_word('山田 太郎', 'iso-2022-jp')} <yamada@example.jp>\r\n"
            f"To: alice@example.jp\r\nSubject: {_word(LECTURE_SUBJECT, 'iso-2022-jp')}\r\n"
            "Date: Mon, 12 Apr 1999 10:00:00 +0900\r\nMessage-ID: <ui-lecture@example.jp>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n").encode("ascii") + \
        "来週の講義の資料を送ります。\r\nよろしくお願いします。\r\n".encode("iso-2022-jp")


def html_message() -> bytes:
    """multipart/mixed [ related [ alternative [plain, html with cid:], png ], pdf ]."""
    html = (f"<html><body><h1>{HTML_TEXT}</h1><p style=\"color: #c00\">赤い段落</p>"
            "<p><img src=\"cid:logo@example.jp\" alt=\"logo\" id=\"logo\"></p>"
            "<p><a href=\"https://www.example.jp/\">リンク</a></p></body></html>")
    return (f"From: {_word('教授', 'utf-8')} <prof@example.jp>\r\nTo: alice@example.jp\r\n"
            f"Subject: {_word(HTML_SUBJECT, 'utf-8')}\r\n"
            "Date: Tue, 13 Apr 1999 11:00:00 +0900\r\nMessage-ID: <ui-html@example.jp>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
            "--mix\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n"
            "--rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
            "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii") + \
        _b64(f"{HTML_TEXT}（テキスト版）\r\n".encode()) + \
        (b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n") + _b64(html.encode()) + \
        b"--alt--\r\n--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@example.jp>\r\n" \
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(PNG) + b"--rel--\r\n" + \
        (b"--mix\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
         b" filename*=UTF-8''%E3%82%BC%E3%83%9F%E8%B3%87%E6%96%99%202003.pdf\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n") + _b64(ATTACHMENT) + b"--mix--\r\n"


def seminar_sjis_message() -> bytes:
    return (f"From: sjis@example.jp\r\nTo: alice@example.jp\r\n"
            f"Subject: {_word('ゼミの日程', 'shift_jis')}\r\n"
            "Date: Wed, 14 Apr 1999 12:00:00 +0900\r\nMessage-ID: <ui-sjis@example.jp>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=Shift_JIS\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode("ascii") + \
        "ゼミの日程：表・ソ・能（ダメ文字）\r\n".encode("shift_jis")


def hostile_message(remote: str) -> bytes:
    """Every way an HTML mail might run script or call home; ``remote`` is host:port."""
    r = f"http://{remote}"
    html = f"""<html><head>
<script>document.title='PWNED'; new Image().src='{r}/script';</script>
<meta http-equiv="refresh" content="0;url={r}/refresh">
<link rel="stylesheet" href="{r}/css">
<style>body {{ background: url({r}/style-tag) }}</style>
<base href="{r}/base/">
</head><body onload="document.title='PWNED'">
<p id="hostile-text">hostile body text</p>
<img src="{r}/track.png" id="tracker" onerror="document.title='PWNED'">
<img src="x" onerror="parent.document.title='PWNED'">
<a href="javascript:document.title='PWNED'" id="jslink">click me</a>
<a href=" JaVaScRiPt:alert(1)" id="jslink2">and me</a>
<a href="data:text/html,<script>alert(1)</script>" id="datalink">data</a>
<iframe src="{r}/frame"></iframe>
<object data="{r}/object"></object>
<svg onload="document.title='PWNED'"><image href="{r}/svg-image"/></svg>
<form action="{r}/form"><input name="a" value="b"><button id="send">send</button></form>
<div style="background-image: url({r}/style-attr)">styled</div>
<video poster="{r}/poster"></video>
</body></html>"""
    return (f"From: attacker@example.org\r\nTo: alice@example.jp\r\nSubject: {HOSTILE_SUBJECT}"
            "\r\nDate: Thu, 15 Apr 1999 13:00:00 +0900\r\nMessage-ID: <ui-hostile@example.org>"
            "\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            ).encode("ascii") + html.encode()


@dataclass
class UIArchive:
    dest: Path
    messages: dict[str, bytes]  # label -> the bytes appended (Dovecot stores them as sent)


def build(dovecot: DovecotServer, base: Path, remote: str, *extra: str) -> UIArchive:
    """Back the messages up from a fresh Dovecot user into ``base/archive`` (``extra``: more
    ``archiver backup`` options, e.g. ``--format mbox``)."""
    user = dovecot.new_user("ui")
    when = _dt.datetime(1999, 4, 12, 10, 0, tzinfo=JST)
    messages = {
        "lecture": (LECTURES, lecture_message(), ("\\Seen",)),
        "html": (SEMINAR, html_message(), ("\\Flagged",)),
        "sjis": (SEMINAR, seminar_sjis_message(), ("\\Seen", "\\Answered")),
        "hostile": ("INBOX", hostile_message(remote), ()),
    }
    for i, (folder, data, flags) in enumerate(messages.values()):
        dovecot.append(user, folder, data, flags, when + _dt.timedelta(days=i))
    dest = base / "archive"
    code, _out, err = backup(dovecot, user, dest, *extra)
    assert code == 0, err
    return UIArchive(dest, {label: m[1] for label, m in messages.items()})
