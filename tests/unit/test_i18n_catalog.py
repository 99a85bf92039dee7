"""The Japanese catalog is complete, consistent and current, and the language is chosen right.

The extractor (tests/i18n_catalog.py, what ``scripts/i18n`` runs) reads the
source here, so a text added without a translation fails
:func:`test_every_message_has_a_japanese_translation`.
"""

from __future__ import annotations

import ast
import gettext

import click
import pytest

from archiver import i18n
from archiver.cli import COMMANDS, cli
from archiver.cli.translated import TranslatedCommand
from tests import i18n_catalog as cat


@pytest.fixture(scope="module")
def ja_po() -> dict[tuple[str, str | None], cat.Entry]:
    _header, entries = cat.parse_po(cat.po_path("ja").read_text(encoding="utf-8"))
    return {e.key: e for e in entries if not e.obsolete}


def test_every_message_has_a_japanese_translation(ja_po: dict) -> None:
    missing = [f"{e.refs[0]}: {e.msgid[:60]!r}" for e in cat.extract_archiver()
               if e.key not in ja_po or not ja_po[e.key].translated]
    assert not missing, ("untranslated (run scripts/i18n, fill archiver/locale/ja/LC_MESSAGES/"
                         "archiver.po, rerun scripts/i18n):\n" + "\n".join(missing))


def test_placeholders_of_each_translation_equal_the_english(ja_po: dict) -> None:
    wrong = []
    for entry in ja_po.values():
        if not entry.translated:
            continue
        # Japanese has one plural form, used for every n: it takes the plural's fields
        english = cat.placeholders(entry.plural if entry.plural is not None else entry.msgid)
        for text in entry.msgstr:
            if cat.placeholders(text) != english:
                wrong.append(f"{entry.msgid[:50]!r}: {cat.placeholders(text)} != {english}")
    assert not wrong, "\n".join(wrong)


def test_help_translations_keep_click_s_no_rewrap_marks(ja_po: dict) -> None:
    """``\\b`` keeps a paragraph's lines as written; a translation that drops it gets rewrapped."""
    lost = [e.msgid[:50] for e in ja_po.values()
            if e.translated and e.msgid.count("\b") != e.msgstr[0].count("\b")]
    assert not lost


def test_compiled_catalog_is_current_with_the_po() -> None:
    header, entries = cat.parse_po(cat.po_path("ja").read_text(encoding="utf-8"))
    assert cat.mo_path("ja").read_bytes() == cat.compile_mo(header, entries), \
        "archiver.mo is stale: run scripts/i18n and commit archiver/locale"


def test_template_is_current_with_the_source() -> None:
    _header, entries = cat.parse_po(cat.POT.read_text(encoding="utf-8"))
    assert {e.key for e in cat.extract_archiver()} <= {e.key for e in entries}, \
        "archiver.pot is stale: run scripts/i18n"


def test_compiled_catalog_is_what_gettext_reads() -> None:
    with cat.mo_path("ja").open("rb") as f:
        catalog = gettext.GNUTranslations(f)
    assert catalog.gettext("Usage:") == "使い方:"
    two = catalog.ngettext("Got unexpected extra argument ({args})",
                           "Got unexpected extra arguments ({args})", 2)
    assert two == "余分な引数があります（{args}）"
    assert catalog.gettext("no such msgid") == "no such msgid"


def test_po_round_trips_through_the_parser() -> None:
    text = cat.po_path("ja").read_text(encoding="utf-8")
    header, entries = cat.parse_po(text)
    assert cat.format_po(header, entries) == text


def test_extractor_finds_calls_help_texts_and_command_docstrings() -> None:
    tree = ast.parse('''
import click
@click.command(cls=X)
@click.option("--x", help="""Option
    help.""")
def cmd():
    """Doc line.

    \\b
    More.\\f internal"""
    raise E(_("Plain {n}"))
def helper():
    """Not a command: not extracted."""
    ngettext("{n} file", "{n} files", 2)
    _(f"not a literal {x}")
''')
    found = {(m, p) for m, p, _line in cat.messages_in(tree)}
    assert found == {("Option\nhelp.", None), ("Doc line.\n\n\b\nMore.", None),
                     ("Plain {n}", None), ("{n} file", "{n} files")}


def test_every_command_renders_translated_help() -> None:
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert isinstance(command, TranslatedCommand), \
            f"{name}: use @click.command(cls=TranslatedCommand) (archiver/cli/translated.py)"


def test_help_texts_are_plain_literals() -> None:
    """An f-string help= cannot be extracted, so it would never be translated."""
    bad = []
    for path in cat.source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg in cat.HELP_KEYWORDS \
                    and not isinstance(node.value, ast.Constant):
                bad.append(f"{path.name}:{node.value.lineno}")
    assert not bad


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "en"),
    ({"LANG": "ja_JP.UTF-8"}, "ja"),
    ({"LANG": "ja_JP.eucJP"}, "ja"),
    ({"LANG": "ja"}, "ja"),
    ({"LANG": "fr_FR.UTF-8"}, "en"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}, "en"),
    ({"LANG": "ja_JP.UTF-8", "LC_ALL": "POSIX"}, "en"),
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "ja_JP.UTF-8"}, "ja"),
    ({"LANG": "ja_JP.UTF-8", "LC_MESSAGES": "en_GB.UTF-8"}, "en"),
    ({"LC_ALL": "ja_JP.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "ja"),
    ({"LANGUAGE": "fr:ja", "LANG": "en_US.UTF-8"}, "ja"),
    ({"LANGUAGE": "en:ja", "LANG": "ja_JP.UTF-8"}, "en"),
    ({"LANGUAGE": "ja", "LC_ALL": "C"}, "en"),
    ({"LANGUAGE": "ja"}, "ja"),
    ({"LANGUAGE": "fr", "LANG": "ja_JP.UTF-8"}, "ja"),
    ({"ARCHIVER_LANG": "en", "LANG": "ja_JP.UTF-8", "LANGUAGE": "ja"}, "en"),
    ({"ARCHIVER_LANG": "ja", "LC_ALL": "C"}, "ja"),
    ({"ARCHIVER_LANG": "ja-JP"}, "ja"),
    ({"ARCHIVER_LANG": "xx", "LANG": "ja_JP.UTF-8"}, "en"),
])
def test_language_choice_order(environ: dict[str, str], expected: str) -> None:
    assert i18n.language_from_env(environ) == expected


def test_set_language_switches_the_catalog_without_setlocale(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import locale

    monkeypatch.setattr(locale, "setlocale", lambda *a: pytest.fail("setlocale used"))
    try:
        assert i18n.set_language("ja") == "ja"
        assert i18n._("Usage:") == "使い方:"
        assert i18n.set_language("en") == "en"
        assert i18n._("Usage:") == "Usage:"
    finally:
        i18n.set_language(None)


def test_kept_lines_of_translated_help_fit_an_80_column_terminal(ja_po: dict) -> None:
    """A ``\\b`` block is not rewrapped, so its translated lines must be short already."""
    from archiver.cli.widetext import width

    long = []
    for entry in ja_po.values():
        for para in entry.msgstr[0].split("\n\n") if "\b" in entry.msgid else []:
            if para.startswith("\b"):
                long += [line for line in para.split("\n")[1:] if width(line) > 76]
    assert not long, long


def test_the_compiled_catalog_is_package_data() -> None:
    """A wheel (non-editable install) carries archiver/locale/*/LC_MESSAGES/archiver.mo."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((cat.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["archiver"]
    mo = cat.mo_path("ja").relative_to(cat.PACKAGE).as_posix()
    assert any(fnmatch.fnmatch(mo, p) for p in patterns), (mo, patterns)
