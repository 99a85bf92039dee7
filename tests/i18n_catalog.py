"""The translation catalog's tools: extract, merge, compile (``scripts/i18n``).

Pure Python, so neither the tests nor a developer need GNU gettext:

* :func:`extract` reads the source with :mod:`ast` and collects every
  ``_("...")`` and ``ngettext("...", "...", n)``, every ``help=``,
  ``short_help=`` and ``epilog=`` literal, and the docstring of every
  function decorated as a click command or group -- help texts cleaned the
  way click cleans them (``inspect.cleandoc``, cut at ``\\f``), so the msgid
  is exactly what :mod:`archiver.cli.translated` looks up.  It also collects
  click's own ``_()`` strings from the installed click ("Usage:",
  "Missing argument", ...), which :func:`archiver.cli.translated.click_speaks`
  routes to our catalog.
* :func:`merge` keeps every translation whose msgid is still extracted, adds
  new msgids with an empty msgstr, and keeps vanished ones as ``#~`` entries
  (for reuse when an English text was only reworded).
* :func:`compile_mo` writes the binary catalog Python's :mod:`gettext` reads:
  deterministic bytes, so a test can check the committed ``.mo`` is current.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import string
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "archiver"
LOCALE = PACKAGE / "locale"
POT = LOCALE / "archiver.pot"
LANGS = ("ja",)
HELP_KEYWORDS = ("help", "short_help", "epilog")
COMMAND_DECORATORS = ("command", "group")

HEADER = {
    "ja": ("Project-Id-Version: archiver\n"
           "Language: ja\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=UTF-8\n"
           "Content-Transfer-Encoding: 8bit\n"
           "Plural-Forms: nplurals=1; plural=0;\n"),
}


@dataclass
class Entry:
    msgid: str
    plural: Optional[str] = None
    msgstr: list[str] = field(default_factory=lambda: [""])
    refs: list[str] = field(default_factory=list)
    fuzzy: bool = False
    obsolete: bool = False

    @property
    def key(self) -> tuple[str, Optional[str]]:
        return (self.msgid, self.plural)

    @property
    def translated(self) -> bool:
        return not self.fuzzy and all(s for s in self.msgstr)


# ------------------------------------------------------------------ extract

def clean_help(text: str) -> str:
    """What click shows of a help text (and so what is looked up)."""
    return inspect.cleandoc(text).partition("\f")[0]


def _literal(node: ast.AST) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def is_command(node: ast.AST) -> bool:
    """A function decorated ``@click.command(...)``/``@x.group(...)``: its docstring is help."""
    return (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(_decorator_name(d) in COMMAND_DECORATORS for d in node.decorator_list))


def messages_in(tree: ast.AST, help_texts: bool = True) -> list[tuple[str, Optional[str], int]]:
    """(msgid, plural or None, line) for every translatable text in ``tree``."""
    found: list[tuple[str, Optional[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [_literal(a) for a in node.args]
            if node.func.id == "_" and args and args[0] is not None:
                found.append((args[0], None, node.lineno))
            elif node.func.id == "ngettext" and len(args) >= 2 and None not in args[:2]:
                found.append((args[0], args[1], node.lineno))  # type: ignore[arg-type]
        if help_texts and isinstance(node, ast.Call):
            for kw in node.keywords:
                text = _literal(kw.value) if kw.arg in HELP_KEYWORDS else None
                if text and text.strip():
                    found.append((clean_help(text), None, kw.value.lineno))
        if help_texts and is_command(node):
            doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
            if doc:
                found.append((doc.partition("\f")[0], None, node.lineno))  # type: ignore[attr-defined]
    return sorted(found, key=lambda m: m[2])


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "locale" not in p.parts)


def extract_archiver() -> list[Entry]:
    """Every msgid of archiver's own source, in file and line order, then its templates'."""
    entries = _collect((p, p.relative_to(REPO).as_posix(), True) for p in source_files())
    seen = {e.key: e for e in entries}
    for path in template_files():
        name = path.relative_to(REPO).as_posix()
        for msgid, plural, line in template_messages(path.read_text(encoding="utf-8")):
            entry = seen.get((msgid, plural))
            if entry is None:
                entry = seen[(msgid, plural)] = Entry(msgid, plural)
                entries.append(entry)
            entry.refs.append(f"{name}:{line}")
    return entries


# Jinja2 templates of the web page (archiver/ui/templates): ``{{ _("...") }}`` and
# ``ngettext("...", "...", n)`` with double-quoted literals -- the only form they use,
# which template_messages() insists on, so no text is silently left out.
_TPL_STRING = r'"((?:[^"\\\n]|\\.)*)"'
_TPL_CALL = re.compile(r"(?<![\w.])(_|ngettext)\(")
_TPL_GETTEXT = re.compile(r"_\(\s*" + _TPL_STRING + r"\s*\)")
_TPL_NGETTEXT = re.compile(r"ngettext\(\s*" + _TPL_STRING + r"\s*,\s*" + _TPL_STRING
                           + r"\s*,")


def template_files() -> list[Path]:
    return sorted(PACKAGE.rglob("templates/*.html"))


def template_messages(source: str) -> list[tuple[str, Optional[str], int]]:
    """(msgid, plural or None, line) of every ``_()``/``ngettext()`` in a template."""
    found: list[tuple[str, Optional[str], int]] = []
    for call in _TPL_CALL.finditer(source):
        line = source.count("\n", 0, call.start()) + 1
        if call.group(1) == "_":
            m = _TPL_GETTEXT.match(source, call.start())
            if m is None:
                raise ValueError(f"line {line}: _() in a template takes one double-quoted "
                                 "literal")
            found.append((ast.literal_eval('"' + m.group(1) + '"'), None, line))
        else:
            m = _TPL_NGETTEXT.match(source, call.start())
            if m is None:
                raise ValueError(f"line {line}: ngettext() in a template takes two "
                                 "double-quoted literals")
            found.append((ast.literal_eval('"' + m.group(1) + '"'),
                          ast.literal_eval('"' + m.group(2) + '"'), line))
    return found


def extract_click() -> list[Entry]:
    """click's own ``_()`` strings, from the installed click."""
    import click

    root = Path(click.__file__).resolve().parent
    return _collect((p, "click/" + p.name, False) for p in sorted(root.glob("*.py")))


def _collect(files: object) -> list[Entry]:
    entries: dict[tuple[str, Optional[str]], Entry] = {}
    for path, name, help_texts in files:  # type: ignore[attr-defined]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for msgid, plural, line in messages_in(tree, help_texts):
            entry = entries.setdefault((msgid, plural), Entry(msgid, plural))
            entry.refs.append(f"{name}:{line}")
    return list(entries.values())


def extract() -> list[Entry]:
    """archiver's msgids, then click's that archiver does not already have."""
    ours = extract_archiver()
    seen = {e.key for e in ours}
    return ours + [e for e in extract_click() if e.key not in seen]


# ------------------------------------------------------------------ .po text

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\b": "\\b", "\f": "\\f",
            "\r": "\\r"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "b": "\b", "f": "\f", "r": "\r",
              "a": "\a", "v": "\v"}


def _quote(text: str) -> str:
    body = "".join(_ESCAPES.get(c, c) for c in text)
    return f'"{body}"'


def _po_string(keyword: str, text: str, prefix: str = "") -> str:
    lines = text.split("\n")
    parts = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    if len(parts) <= 1:
        return f"{prefix}{keyword} {_quote(text)}\n"
    return f'{prefix}{keyword} ""\n' + "".join(f"{prefix}{_quote(p)}\n" for p in parts)


def _unquote(text: str) -> str:
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"')):
        raise ValueError(f"not a quoted po string: {text!r}")
    return re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def format_po(header: str, entries: list[Entry], with_refs: bool = True) -> str:
    out = [_po_string("msgid", "") + _po_string("msgstr", header)]
    for e in entries:
        prefix = "#~ " if e.obsolete else ""
        block = ""
        if with_refs and e.refs and not e.obsolete:
            block += "".join(f"#: {r}\n" for r in e.refs)
        if e.fuzzy:
            block += "#, fuzzy\n"
        if _placeholders(e.msgid) and not e.obsolete:
            block += "#, python-brace-format\n"
        block += _po_string("msgid", e.msgid, prefix)
        if e.plural is None:
            block += _po_string("msgstr", e.msgstr[0], prefix)
        else:
            block += _po_string("msgid_plural", e.plural, prefix)
            for i, s in enumerate(e.msgstr):
                block += _po_string(f"msgstr[{i}]", s, prefix)
        out.append(block)
    return "\n".join(out)


def parse_po(text: str) -> tuple[str, list[Entry]]:
    """(header, entries) of a .po file (obsolete ``#~`` entries included)."""
    header = ""
    entries: list[Entry] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        current: Optional[str] = None
        fuzzy = obsolete = False
        refs: list[str] = []
        for raw in block.splitlines():
            line = raw
            if line.startswith("#~"):
                obsolete = True
                line = line[2:].strip()
            if not line.strip():
                continue
            if line.startswith("#,"):
                fuzzy = fuzzy or "fuzzy" in line
                continue
            if line.startswith("#:"):
                refs.extend(line[2:].split())
                continue
            if line.startswith("#"):
                continue
            if line.startswith('"'):
                if current is None:
                    raise ValueError(f"string without a keyword: {raw!r}")
                fields[current] += _unquote(line)
                continue
            keyword, _, rest = line.partition(" ")
            current = keyword
            fields[current] = _unquote(rest)
        if "msgid" not in fields:
            continue
        if fields["msgid"] == "" and not obsolete:
            header = fields.get("msgstr", "")
            continue
        plural = fields.get("msgid_plural")
        if plural is None:
            msgstr = [fields.get("msgstr", "")]
        else:
            n = sum(1 for k in fields if k.startswith("msgstr["))
            msgstr = [fields[f"msgstr[{i}]"] for i in range(n)] or [""]
        entries.append(Entry(fields["msgid"], plural, msgstr, refs, fuzzy, obsolete))
    return header, entries


# ------------------------------------------------------------------ merge, compile

def merge(template: list[Entry], existing: list[Entry], nplurals: int = 1) -> list[Entry]:
    """The .po entries for ``template``: old translations kept, vanished ones obsolete."""
    old = {e.key: e for e in existing}
    merged: list[Entry] = []
    for t in template:
        prev = old.pop(t.key, None)
        size = 1 if t.plural is None else nplurals
        msgstr = prev.msgstr if prev is not None else [""] * size
        merged.append(Entry(t.msgid, t.plural, list(msgstr), list(t.refs),
                            fuzzy=prev.fuzzy if prev is not None else False))
    for gone in old.values():
        if any(gone.msgstr):
            merged.append(Entry(gone.msgid, gone.plural, gone.msgstr, [], gone.fuzzy, True))
    return merged


def compile_mo(header: str, entries: list[Entry]) -> bytes:
    """GNU .mo bytes (little-endian, no hash table) of the translated, live entries."""
    pairs: dict[bytes, bytes] = {b"": header.encode("utf-8")}
    for e in entries:
        if e.obsolete or not e.translated:
            continue
        key = e.msgid if e.plural is None else e.msgid + "\0" + e.plural
        pairs[key.encode("utf-8")] = "\0".join(e.msgstr).encode("utf-8")
    keys = sorted(pairs)
    n = len(keys)
    ids_start = 7 * 4
    strs_start = ids_start + n * 8
    data_start = strs_start + n * 8
    ids = b"".join(k + b"\0" for k in keys)
    strs = b"".join(pairs[k] + b"\0" for k in keys)
    id_table, str_table = [], []
    offset = data_start
    for k in keys:
        id_table.append(struct.pack("<II", len(k), offset))
        offset += len(k) + 1
    for k in keys:
        str_table.append(struct.pack("<II", len(pairs[k]), offset))
        offset += len(pairs[k]) + 1
    head = struct.pack("<7I", 0x950412DE, 0, n, ids_start, strs_start, 0, data_start)
    return head + b"".join(id_table) + b"".join(str_table) + ids + strs


# ------------------------------------------------------------------ checks

_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")


def _placeholders(text: str) -> list[str]:
    """``{name}``/``{0!r}``/``%(name)s`` fields of a template, sorted (a multiset)."""
    fields: list[str] = []
    try:
        for _lit, name, spec, conv in string.Formatter().parse(text):
            if name is not None:
                fields.append("{" + name + ("!" + conv if conv else "")
                              + (":" + spec if spec else "") + "}")
    except ValueError:
        fields.append("<unbalanced braces>")
    fields.extend(m for m in _PERCENT.findall(text) if m != "%%" and "(" in m)
    return sorted(fields)


def placeholders(text: str) -> list[str]:
    return _placeholders(text)


def po_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "archiver.po"


def mo_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "archiver.mo"


def update(lang: str, template: list[Entry]) -> list[Entry]:
    """Merge ``template`` into the language's .po and compile its .mo; the untranslated."""
    po = po_path(lang)
    po.parent.mkdir(parents=True, exist_ok=True)
    header, existing = parse_po(po.read_text(encoding="utf-8")) if po.exists() else ("", [])
    merged = merge(template, existing)
    header = header or HEADER[lang]
    po.write_text(format_po(header, merged), encoding="utf-8")
    mo_path(lang).write_bytes(compile_mo(header, merged))
    return [e for e in merged if not e.obsolete and not e.translated]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/i18n", description=__doc__.split("\n")[0])
    parser.add_argument("--untranslated", action="store_true",
                        help="only list archiver's msgids that have no translation yet")
    args = parser.parse_args(argv)
    template = extract()
    ours = {e.key for e in extract_archiver()}
    if not args.untranslated:
        POT.parent.mkdir(parents=True, exist_ok=True)
        POT.write_text(format_po("Content-Type: text/plain; charset=UTF-8\n", template),
                       encoding="utf-8")
    missing_total = 0
    for lang in LANGS:
        if args.untranslated:
            _, entries = parse_po(po_path(lang).read_text(encoding="utf-8"))
            have = {e.key for e in entries if e.translated and not e.obsolete}
            missing = [e for e in template if e.key in ours and e.key not in have]
        else:
            missing = [e for e in update(lang, template) if e.key in ours]
        missing_total += len(missing)
        for e in missing:
            print(f"{lang}: untranslated ({e.refs[0]}): {e.msgid[:70]!r}")
    if not args.untranslated:
        print(f"{POT.relative_to(REPO)}: {len(template)} msgids "
              f"({len(ours)} archiver's, {len(template) - len(ours)} click's)", file=sys.stderr)
    return 1 if missing_total else 0


if __name__ == "__main__":
    sys.exit(main())
