"""README.md documents every command and option the CLI has (docs checked against --help)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from archiver.cli import cli
from archiver.errors import (
    EXIT_CONNECTION,
    EXIT_DESTINATION,
    EXIT_INTERRUPTED,
    EXIT_LOGIN,
    EXIT_PARTIAL,
    EXIT_USAGE,
    EXIT_VERIFY_PROBLEMS,
)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_command_and_option_is_in_the_readme() -> None:
    missing = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None, name
        if f"archiver {name}" not in README:
            missing.append(f"command {name}")
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    if opt.startswith("--") and opt != "--help" and not re.search(
                            re.escape(opt) + r"(?![\w-])", README):
                        missing.append(f"{name} {opt}")
    assert not missing, f"README.md lacks: {missing}"


def test_exit_codes_table_matches_errors_module() -> None:
    for code in (0, EXIT_VERIFY_PROBLEMS, EXIT_USAGE, EXIT_PARTIAL, EXIT_LOGIN, EXIT_CONNECTION,
                 EXIT_DESTINATION, EXIT_INTERRUPTED):
        assert f"\n| {code} |" in README, code


def test_cli_reference_is_generated_from_the_current_help() -> None:
    """docs/CLI.md is scripts/cli-reference's output for the CLI as it is now."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(repo / "scripts" / "cli-reference"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
