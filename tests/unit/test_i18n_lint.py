"""No user-facing text reaches the user untranslated.

An AST lint over archiver/: the message of ``err()``, ``click.echo()``,
``progress.note()``/``.note()``, ``click.prompt()``/``confirm()``,
``click.BadParameter``/``UsageError``/``ClickException``, ``raise
SomeArchiverError(...)`` and what is appended to a report's list of texts
(``summary.problems``, ``notes``, ``warnings``, ...) must be a ``_()``/``ngettext()`` call (or its
``.format()``), not a string literal or an f-string with words in it.
Variables and data (``json.dumps(...)``, a formatted listing line) pass: the
lint looks for *text*.  Texts that are deliberately not translated (data,
protocol words) are in :data:`ALLOWED`, each with its reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests import i18n_catalog as cat

MESSAGE_FUNCS = {"err", "echo", "secho", "note", "prompt", "confirm", "warn", "fail",
                 "translate_os_errors"}
CLICK_ERRORS = {"BadParameter", "UsageError", "ClickException", "BadOptionUsage",
                "BadArgumentUsage", "FileError"}
# lists of one-line texts that a summary, report or --json shows a user
USER_LISTS = {"problems", "notes", "warnings", "missing", "refused", "skipped", "extra",
              "altered_messages", "flags_differ", "changed", "index_problems"}
# exceptions whose message is not their first argument: (name, index of the text)
TEXT_ARGUMENT = {"FetchFailed": 1, "ResumeMismatch": 1}
WORDS = re.compile(r"[A-Za-z]{2,}")

# (module, start of the text): deliberately untranslated output
ALLOWED: dict[tuple[str, str], str] = {
}


def _error_classes() -> set[str]:
    """archiver.errors' classes and every class derived from them anywhere in archiver/."""
    names = {"ArchiverError"}
    trees = [ast.parse(p.read_text(encoding="utf-8")) for p in cat.source_files()]
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        isinstance(b, ast.Name) and b.id in names
                        or isinstance(b, ast.Attribute) and b.attr in names
                        for b in node.bases):
                    names.add(node.name)
                    grew = True
    return names


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _text_of(node: ast.expr) -> str | None:
    """The words of a literal or f-string argument; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values
                       if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return (_text_of(node.left) or "") + (_text_of(node.right) or "") or None
    if isinstance(node, ast.IfExp):
        return (_text_of(node.body) or "") + (_text_of(node.orelse) or "") or None
    return None


def untranslated(path: Path, errors: set[str]) -> list[tuple[int, str]]:
    """(line, text) of every untranslated user-facing text in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    raised: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            raised.add(id(node.exc))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = _name(node.func)
        appended = (name == "append" and isinstance(node.func, ast.Attribute)
                    and _name(node.func.value) in USER_LISTS)
        if not (name in MESSAGE_FUNCS or name in CLICK_ERRORS or appended
                or name in errors or name in TEXT_ARGUMENT):
            continue
        index = TEXT_ARGUMENT.get(name, 0)
        if len(node.args) <= index:
            continue
        text = _text_of(node.args[index])
        if text is not None and WORDS.search(text):
            found.append((node.lineno, text))
    return found


def test_user_facing_texts_are_wrapped_for_translation() -> None:
    errors = _error_classes()
    problems = []
    for path in cat.source_files():
        module = path.relative_to(cat.REPO).as_posix()
        for line, text in untranslated(path, errors):
            if not any(m == module and text.startswith(t) for m, t in ALLOWED):
                problems.append(f"{module}:{line}: {text[:70]!r}")
    assert not problems, ("wrap these in _() and format after translating "
                          "(_('{n} files').format(n=n)), or add them to ALLOWED with a reason:\n"
                          + "\n".join(problems))


def test_lint_catches_the_forms_it_is_meant_to() -> None:
    source = '''
err("plain text")
err(f"{n} files")
click.echo(f"{a}  {b}")
raise DestinationError(f"cannot write {p}")
raise ValueError("internal")
raise click.BadParameter("bad value")
self.summary.problems.append(f"{name}: refused")
err(_("fine {n}").format(n=1))
click.echo(json.dumps(x))
'''
    tmp = Path(__file__).with_name("_lint_sample.py")
    tmp.write_text(source)
    try:
        lines = [line for line, _t in untranslated(tmp, {"DestinationError"})]
    finally:
        tmp.unlink()
    assert lines == [2, 3, 5, 7, 8]


def _shadowing(tree: ast.AST) -> list[int]:
    """Lines where a scope that calls ``_()`` also binds ``_`` (``for _ in``, ``a, _ = ...``)."""
    lines = []
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    inside = {id(d) for f in functions for d in ast.walk(f) if d is not f}
    # a comprehension's variables live in its own scope: ``for _, x in pairs`` there is fine
    own_scope = {id(d) for n in ast.walk(tree) if isinstance(n, ast.comprehension)
                 for d in ast.walk(n.target)}
    for scope in [tree, *functions]:
        nodes = [n for n in ast.walk(scope) if scope is not tree or id(n) not in inside]
        calls = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "_" for n in nodes)
        if not calls and scope is not tree:
            continue
        for n in nodes:
            if id(n) in own_scope:
                continue
            if isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store) \
                    or isinstance(n, ast.ExceptHandler) and n.name == "_":
                lines.append(n.lineno)
    return lines


def test_no_throwaway_variable_shadows_the_translation_function() -> None:
    bad = []
    for path in cat.source_files():
        source = path.read_text(encoding="utf-8")
        if "from archiver.i18n import" not in source or path.name == "i18n.py":
            continue
        bad += [f"{path.relative_to(cat.REPO)}:{line}" for line in _shadowing(ast.parse(source))]
    assert not bad, "rename the throwaway '_' (e.g. to '_unused') where _() is used:\n" + \
        "\n".join(bad)
