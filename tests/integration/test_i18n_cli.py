"""The interface speaks Japanese when asked: help, click's own words, errors, a backup summary.

Run as a user would (a subprocess of the installed ``archiver``) with the
ja_JP locale *not* installed: the subprocesses get ``LOCPATH`` pointing at an
empty directory, so the C library finds no locale at all, whatever this
machine has; the language comes from the environment variables alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.dovecot import DovecotServer, MailUser
from tests.helpers import run_cli, source_args

JAPANESE = range(0x3040, 0x30FF)  # hiragana and katakana


def _japanese(text: str) -> bool:
    return any(ord(c) in JAPANESE for c in text)


NO_LOCALES = Path(tempfile.gettempdir()) / "archiver-tests-no-locales"  # an empty LOCPATH


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARCHIVER_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    NO_LOCALES.mkdir(exist_ok=True)
    env["LOCPATH"] = str(NO_LOCALES)
    env.update(extra)
    return env


def _archiver(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archiver", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=60)


def test_ja_locale_is_not_installed_for_these_runs() -> None:
    """The premise of this file: nothing below can use the C library's ja_JP locale."""
    probe = ("import locale\n"
             "try:\n    locale.setlocale(locale.LC_ALL, 'ja_JP.UTF-8')\n"
             "except locale.Error:\n    print('no ja_JP')\n")
    done = subprocess.run([sys.executable, "-c", probe], env=_env(LANG="ja_JP.UTF-8"),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "no ja_JP", done.stdout + done.stderr


def test_lang_ja_locale_gives_japanese_help() -> None:
    done = _archiver(["--help"], LANG="ja_JP.UTF-8")
    assert done.returncode == 0, done.stderr
    assert "使い方: archiver [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert "オプション:" in done.stdout and "コマンド:" in done.stdout
    assert "メールボックス全体" in done.stdout
    assert "このヘルプを表示して終了します。" in done.stdout
    assert "Show this message" not in done.stdout


def test_lang_option_translates_a_command_s_help() -> None:
    done = _archiver(["--lang", "ja", "backup", "--help"], LANG="C.UTF-8")
    assert done.returncode == 0, done.stderr
    assert "使い方: archiver backup [OPTIONS] SOURCE DEST" in done.stdout
    assert "SOURCE のすべてのフォルダーの全メッセージを DEST にコピーします。" in done.stdout
    assert "ログイン名（SOURCE 内のものより優先）。" in done.stdout
    assert "[既定: 60.0]" in done.stdout or "既定: 60.0" in done.stdout
    english = [line for line in done.stdout.splitlines()[1:]
               if line.strip().startswith("-") and not _japanese(line)]
    assert not english, english


def test_lang_en_option_beats_a_japanese_locale() -> None:
    done = _archiver(["--lang", "en", "--help"], LANG="ja_JP.UTF-8")
    assert "Usage: archiver" in done.stdout and not _japanese(done.stdout.split("search")[0])


def test_archiver_lang_env_overrides_lang() -> None:
    done = _archiver(["--help"], LANG="ja_JP.UTF-8", ARCHIVER_LANG="en")
    assert "Usage: archiver" in done.stdout
    assert "Show this message and exit." in done.stdout


def test_lc_all_c_gives_english() -> None:
    done = _archiver(["--help"], LANG="ja_JP.UTF-8", LANGUAGE="ja", LC_ALL="C")
    assert "Usage: archiver" in done.stdout and "Options:" in done.stdout


def test_click_s_errors_are_japanese() -> None:
    done = _archiver(["backup"], LANG="ja_JP.UTF-8")
    assert done.returncode == 2
    assert "エラー: 引数がありません: 'SOURCE'" in done.stderr
    assert "ヘルプは 'archiver backup --help' で表示できます。" in done.stderr
    done = _archiver(["--lang", "ja", "--no-such"])
    assert "エラー: '--no-such' というオプションはありません。" in done.stderr


def test_click_s_strings_are_english_again_after_a_run() -> None:
    """The routing of click's gettext lasts one run: nothing leaks into the process."""
    code, out, _err = run_cli(["--lang", "ja", "--help"], env={"ARCHIVER_LANG": "ja"})
    assert code == 0 and "使い方:" in out
    import click.formatting

    from archiver import i18n

    assert click.formatting._ is __import__("gettext").gettext
    assert i18n._("archiver: interrupted") == "archiver: interrupted"  # the suite's English
    code, out, _err = run_cli(["--help"], env={"ARCHIVER_LANG": "en"})
    assert "Usage:" in out and not _japanese(out)


def test_archiver_errors_are_japanese(tmp_path: Path) -> None:
    done = _archiver(["ls", str(tmp_path / "nothing")], LANG="ja_JP.UTF-8")
    assert done.returncode != 0
    assert done.stderr.startswith("archiver: エラー: "), done.stderr
    assert _japanese(done.stderr.partition("エラー: ")[2]), done.stderr


def test_backup_summary_is_japanese(dovecot: DovecotServer, mail_user: MailUser,
                                    tmp_path: Path) -> None:
    dovecot.append(mail_user, "INBOX", b"Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n")
    dest = tmp_path / "a"
    code, out, err = run_cli(["backup", *source_args(dovecot, mail_user, dest)],
                             env={"ARCHIVER_LANG": "", "LANG": "ja_JP.UTF-8"})
    assert code == 0, err
    lines = err.strip().splitlines()
    summary = [line for line in lines if "新しいメッセージ 1 件" in line]
    assert summary and _japanese(summary[0]), err  # the summary line, not just the catalog's
    assert lines[-1].startswith("次の操作: archiver ls "), err  # and what to do next
    code, out, err = run_cli(["backup", *source_args(dovecot, mail_user, dest)],
                             env={"ARCHIVER_LANG": "", "LANG": "C.UTF-8"})
    assert code == 0 and not _japanese(err), err
