"""The web page's template texts reach the catalogue, and only the extractable form is used."""

from __future__ import annotations

import pytest

from tests import i18n_catalog as cat


def test_template_texts_are_extracted_with_plurals_and_lines() -> None:
    source = ('<p>{{ _("Folders") }}</p>\n'
              '<p>{{ ngettext("{n} message", "{n} messages", n).format(n=n) }}</p>\n'
              '<p>{{ _("say \\"hi\\"") }}</p>')
    assert cat.template_messages(source) == [
        ("Folders", None, 1), ("{n} message", "{n} messages", 2), ('say "hi"', None, 3)]


@pytest.mark.parametrize("source", ["{{ _('single quotes') }}", "{{ _(name) }}",
                                    '{{ _("a" ~ "b") }}', "{{ ngettext('a', 'b', n) }}"])
def test_a_form_the_extractor_cannot_read_is_an_error_not_a_silent_miss(source: str) -> None:
    with pytest.raises(ValueError):
        cat.template_messages(source)


def test_every_template_text_is_in_the_catalogue() -> None:
    keys = {e.key for e in cat.extract_archiver()}
    files = cat.template_files()
    assert files, "no templates found"
    for path in files:
        for msgid, plural, _line in cat.template_messages(path.read_text(encoding="utf-8")):
            assert (msgid, plural) in keys, (path.name, msgid)
