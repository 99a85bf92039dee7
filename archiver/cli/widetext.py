"""Help text wrapped by terminal columns, so Japanese help fits the screen.

click wraps help with :mod:`textwrap`, which counts characters and breaks only
at spaces: a Japanese sentence (no spaces, two columns a character) became
one line twice the terminal's width.  :class:`WideHelpFormatter` wraps any
text that holds wide characters by display width, may break between two
characters where either is wide, and keeps the usual line-breaking rules
(no line starts with 、。）」 and the like, none ends with （「).  Text without
wide characters goes through click's own wrapping unchanged, so the English
help (and docs/CLI.md) is exactly what click makes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import click
from click.formatting import iter_rows, measure_table, wrap_text

NO_LINE_START = set("、。，．,.:;：；！？!?）)]］｝」』】〉》ー～…‐・"
                    "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ")
NO_LINE_END = set("（([［｛「『【〈《")


def width(text: str) -> int:
    """Terminal columns of ``text`` (East Asian wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def has_wide(text: str) -> bool:
    return any(unicodedata.east_asian_width(c) in ("W", "F") for c in text)


def _chunks(text: str) -> list[str]:
    """Pieces between which a line may break (a space run is its own piece)."""
    out: list[str] = []
    for token in re.split(r"(\s+)", text):
        if not token:
            continue
        if token.isspace():
            out.append(" ")
            continue
        piece = ""
        for ch in token:
            prev = piece[-1:] if piece else ""
            breakable = prev and (has_wide(prev) or has_wide(ch)) \
                and ch not in NO_LINE_START and prev not in NO_LINE_END
            if breakable:
                out.append(piece)
                piece = ""
            piece += ch
        out.append(piece)
    return out


def fill(text: str, columns: int, first: str = "", rest: str = "") -> str:
    """One paragraph filled to ``columns``, lines prefixed by ``first``/``rest``."""
    lines: list[str] = []
    line, used, prefix = "", 0, first
    for chunk in _chunks(" ".join(text.split())):
        w = width(chunk)
        if chunk == " ":
            if line:
                line, used = line + " ", used + 1
            continue
        if line and width(prefix) + used + w > columns:
            lines.append(prefix + line.rstrip())
            line, used, prefix = "", 0, rest
        line, used = line + chunk, used + w
    if line:
        lines.append(prefix + line.rstrip())
    return "\n".join(lines)


def wrap(text: str, columns: int, first: str = "", rest: str = "") -> str:
    """click's ``wrap_text(..., preserve_paragraphs=True)``, by display width.

    Paragraphs are separated by blank lines; one that starts with a line holding
    only ``\\b`` is kept as written (only indented), as in click.
    """
    if not has_wide(text):
        return wrap_text(text, columns, first, rest, preserve_paragraphs=True)
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.expandtabs()):
        lines = para.splitlines()
        if not lines:
            continue
        indent = " " * (len(lines[0]) - len(lines[0].lstrip()))
        if lines[0].strip() == "\b":
            out.append("\n".join((first if i == 0 else rest) + indent + line
                                 for i, line in enumerate(lines[1:])))
        else:
            out.append(fill(" ".join(line.strip() for line in lines), columns,
                            first + indent, rest + indent))
    return "\n\n".join(out)


class WideHelpFormatter(click.HelpFormatter):
    """click's formatter with :func:`wrap` for help text and definition lists."""

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        self.write(wrap(text, self.width, indent, indent))
        self.write("\n")

    def write_dl(self, rows: Iterable[tuple[str, str]], col_max: int = 30,
                 col_spacing: int = 2) -> None:
        rows = list(rows)
        widths = measure_table(rows)
        if len(widths) != 2:
            raise TypeError("Expected two columns for definition list")
        first_col = min(widths[0], col_max) + col_spacing
        for term, text in iter_rows(rows, len(widths)):
            self.write(f"{'':>{self.current_indent}}{term}")
            if not text:
                self.write("\n")
                continue
            if len(term) <= first_col - col_spacing:
                self.write(" " * (first_col - len(term)))
            else:
                self.write("\n" + " " * (first_col + self.current_indent))
            lines = wrap(text, max(self.width - first_col - 2, 10)).splitlines()
            self.write(f"{lines[0]}\n" if lines else "\n")
            for line in lines[1:]:
                self.write(f"{'':>{first_col + self.current_indent}}{line}\n")


class WideContext(click.Context):
    """A context whose help is formatted by :class:`WideHelpFormatter`."""

    formatter_class = WideHelpFormatter
