"""The Japanese README and the "before September" guides give commands that exist.

Every ``archiver …`` line in their code blocks (and inline code) must name a real
command, and every ``--option`` in it must be one that command (or the group) has.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from archiver.cli import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.ja.md", "docs/before-september.md", "docs/before-september.ja.md"]


def _commands(text: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = [line.split("#")[0].strip() for b in blocks
             for line in b.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`(archiver [^`]+)`", text)
    return [line for line in lines if line.startswith(("archiver ", "ARCHIVER_LANG="))]


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in p.opts} \
        | {"--help", "-h"}


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_exist_with_their_options(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    found = _commands(text)
    assert found, doc
    ctx = click.Context(cli)
    wrong = []
    for line in found:
        words = shlex.split(line.replace("…", ""))
        words = words[words.index("archiver") + 1:]
        group_opts = _options(cli)
        while words and words[0].startswith("-"):
            if words[0] not in group_opts:
                wrong.append(f"{line}: group option {words[0]}")
            words = words[2:] if words[0] == "--lang" else words[1:]
        if not words or words[0].isupper():  # a placeholder: archiver COMMAND --help
            continue
        command = cli.get_command(ctx, words[0])
        if command is None:
            wrong.append(f"{line}: no command {words[0]}")
            continue
        for word in words[1:]:
            if word.startswith("--") and word.split("=")[0] not in _options(command):
                wrong.append(f"{line}: {words[0]} has no {word}")
    assert not wrong, "\n".join(wrong)


def test_readme_links_the_japanese_readme_and_the_guides() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for target in ("README.ja.md", "docs/before-september.md", "docs/before-september.ja.md"):
        assert f"]({target})" in readme
        assert (REPO / target).exists()
    ja = (REPO / "README.ja.md").read_text(encoding="utf-8")
    assert "](README.md)" in ja and "](docs/before-september.ja.md)" in ja
