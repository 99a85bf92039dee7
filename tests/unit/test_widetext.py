"""Japanese help is wrapped by terminal columns; English help is click's own wrapping."""

from __future__ import annotations

import pytest
from click.formatting import wrap_text

from archiver.cli import COMMANDS
from archiver.cli.widetext import fill, width, wrap
from tests.helpers import run_cli


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_japanese_help_fits_80_columns(command: str) -> None:
    code, out, err = run_cli(["--lang", "ja", *([command] if command else []), "--help"],
                             env={"COLUMNS": "80"})
    assert code == 0, err
    assert "使い方:" in out
    wide = [line for line in out.splitlines() if width(line) > 80]
    assert not wide, wide


def test_english_text_is_wrapped_exactly_as_click_does() -> None:
    text = "Copy every message of every folder of SOURCE into DEST.\n\n\b\n  kept  as is\nline"
    assert wrap(text, 30, "  ", "  ") == wrap_text(text, 30, "  ", "  ",
                                                   preserve_paragraphs=True)


def test_no_line_starts_with_closing_punctuation() -> None:
    text = "あいうえおかきくけこ、さしすせそ。たちつてと（なにぬねの）はひふへほ"
    for columns in range(6, 40):
        lines = fill(text, columns).splitlines()
        assert "".join(lines) == text
        assert all(width(line) <= columns or len(line) == 1 for line in lines)
        assert not any(line[0] in "、。）" for line in lines), (columns, lines)
        assert not any(line[-1] == "（" for line in lines), (columns, lines)


def test_spaces_and_ascii_words_are_kept_whole() -> None:
    lines = fill("フォルダーを並行して取得する IMAP 接続の数 --connections auto", 20).splitlines()
    assert any("--connections" in line for line in lines)
    assert " ".join(lines).replace("  ", " ").count("IMAP") == 1
