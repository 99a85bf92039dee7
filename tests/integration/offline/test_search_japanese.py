"""Japanese search: substrings, width-insensitive, and a space between CJK words is optional.

A real backup (Dovecot) of messages whose subjects and bodies are in
ISO-2022-JP, Shift_JIS (B-encoded and raw 8-bit) and UTF-8, with the phrase
講義資料 written with no space, an ASCII space, an ideographic space, and
across a line break in a body.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from archiver.offline.search import is_cjk, needle, normalise
from tests.dovecot import DovecotServer
from tests.helpers import backup, run_cli


def _word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _message(n: int, subject: str, body: bytes, charset: str = "utf-8",
             sender: str = "a@example.org") -> bytes:
    return (f"From: {sender}\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
            f"Date: Mon, {n} Apr 2024 10:00:00 +0900\r\nMessage-ID: <ja{n}@example.jp>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n\r\n"
            ).encode("ascii") + body


MESSAGES = [
    # (subject as decoded, raw message)
    ("講義資料の配布", _message(1, _word("講義資料の配布", "iso-2022-jp"),
                             "資料を添付します。\r\n".encode("iso-2022-jp"), "ISO-2022-JP")),
    ("講義 資料（第2回）", _message(2, _word("講義 資料（第2回）", "utf-8"), b"see above\r\n")),
    ("講義\u3000資料", _message(3, _word("講義\u3000資料", "shift_jis"),
                              "全角の空白です\r\n".encode("shift_jis"), "Shift_JIS")),
    ("お知らせ", _message(4, _word("お知らせ", "iso-2022-jp"),
                      "明日の講義\r\n資料は後で送ります。\r\n".encode("shift_jis"), "Shift_JIS")),
    ("講義と資料", _message(5, _word("講義と資料", "utf-8"), b"no\r\n")),
    ("Annual Report", _message(6, "Annual Report", b"x\r\n")),
    ("annualreport", _message(7, "annualreport", b"x\r\n")),
    ("ｺｳｷﾞ ｼﾘｮｳ ＰＤＦ", _message(8, _word("ｺｳｷﾞ ｼﾘｮｳ ＰＤＦ", "shift_jis"), b"x\r\n")),
    # the subject ends with 講義 and the sender starts with 資料: no phrase across fields
    ("明日の講義", _message(9, _word("明日の講義", "utf-8"), b"x\r\n",
                        sender=_word("資料係", "utf-8") + " <office@example.jp>")),
]


@pytest.fixture(scope="module")
def archive(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    user = dovecot.new_user("jasearch")
    for _subject, data in MESSAGES:
        dovecot.append(user, "INBOX", data)
    dest = tmp_path_factory.mktemp("jasearch") / "archive"
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    return dest


def _found(dest: Path, *args: str) -> set[str]:
    code, out, err = run_cli(["search", str(dest), "--json", *args])
    assert code == 0, err
    return {json.loads(line)["subject"] for line in out.splitlines()}


def test_a_space_between_japanese_words_matches_none_or_any(archive: Path) -> None:
    phrase = {"講義資料の配布", "講義 資料（第2回）", "講義\u3000資料"}
    assert _found(archive, "講義 資料") == phrase
    assert _found(archive, "講義　資料") == phrase  # typed with an ideographic space
    assert _found(archive, "--subject", "講義 資料") == phrase
    assert "講義と資料" not in _found(archive, "講義 資料")  # other text between: no match
    assert _found(archive, "講義", "資料係") == {"明日の講義"}


def test_a_space_in_the_query_matches_a_line_break_in_a_shift_jis_body(archive: Path) -> None:
    assert _found(archive, "--body", "講義 資料") == {
        "講義資料の配布", "講義 資料（第2回）", "講義\u3000資料", "お知らせ"}
    assert _found(archive, "--body", "資料を添付") == {"講義資料の配布"}  # ISO-2022-JP body


def test_japanese_is_matched_as_a_substring_without_word_splitting(archive: Path) -> None:
    assert _found(archive, "義資") == {"講義資料の配布"}
    assert _found(archive, "講義資料") == {"講義資料の配布"}  # no space typed: as before


def test_half_width_and_full_width_forms_match_alike(archive: Path) -> None:
    assert _found(archive, "コウギ シリョウ") == {"ｺｳｷﾞ ｼﾘｮｳ ＰＤＦ"}
    assert _found(archive, "ｺｳｷﾞ") == _found(archive, "コウギ") == {"ｺｳｷﾞ ｼﾘｮｳ ＰＤＦ"}
    assert _found(archive, "pdf") == {"ｺｳｷﾞ ｼﾘｮｳ ＰＤＦ"}


def test_ascii_phrases_keep_their_literal_space(archive: Path) -> None:
    assert _found(archive, "annual report") == {"Annual Report"}
    assert _found(archive, "annualreport") == {"annualreport"}
    assert _found(archive, "annual", "report") == {"Annual Report", "annualreport"}


@pytest.mark.parametrize(("query", "text", "found"), [
    ("講義 資料", "講義資料", True),
    ("講義 資料", "講義 \t 資料", True),
    ("講義 資料", "講義\n資料", True),
    ("講義 PDF", "講義pdf", True),  # a space next to CJK text is optional
    ("講義 資料", "講義と資料", False),
    ("講義資料", "講義 資料", False),  # a space in the text is not skipped when none was typed
    ("a b", "ab", False),
    ("a b", "a b", True),
    ("A.B (c)", "a.b (c)", True),  # regex characters are literal
    ("ｶﾞｸｾｲ", "ガクセイ", True),
])
def test_needle(query: str, text: str, found: bool) -> None:
    assert needle(query).found_in(normalise(text)) is found


def test_cjk_ranges() -> None:
    assert all(is_cjk(c) for c in "講義あアｱ한𠀋　")
    assert not any(is_cjk(c) for c in "aZ9 .é")
