"""Other mail programs read an archive: notmuch, mu, and Python's mbox/Maildir readers.

The archive is made from the nasty Japanese corpus (tests/corpus.py) on the
real Dovecot; each reader's counts, flags and a Japanese search are compared
with the archive's index.  neomutt needs a terminal to open a mailbox (it has
no batch mode that lists or counts messages), so mbox and Maildir are
cross-checked with Python's ``mailbox`` module -- an mboxo reader, like
neomutt: it finds the same messages and shows a ``>From `` line with the
extra ``>`` that mboxrd quoting added.  As root (the CI) a missing program
fails the test; elsewhere it skips.
"""

from __future__ import annotations

import json
import mailbox
import os
import re
import shlex
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.state import MessageEntry
from archiver.stores.mbox import MboxStore, quote
from tests.conftest import LoadedUser
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, run_cli

# notmuch's maildir.synchronize_flags: Maildir letter <-> tag (S is inverted: unread)
TAGS = {"\\Flagged": "flagged", "\\Answered": "replied", "\\Draft": "draft",
        "$Forwarded": "passed"}


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.geteuid() == 0:
            pytest.fail(f"{program} is not installed: scripts/test installs it (PACKAGES)")
        pytest.skip(f"{program} is not installed")
    return path


def _live(dest: Path) -> list[MessageEntry]:
    return [e for e in Archive.open_existing(dest).state().messages() if e.counted and not e.gone]


def _notmuch(home: Path, *args: str) -> str:
    return _notmuch_run(home, *args).stdout


def _notmuch_run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NOTMUCH_CONFIG=str(home / "notmuch-config"), XAPIAN_CJK_NGRAM="1")
    out = subprocess.run(["notmuch", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def _notmuch_setup(home: Path, dest: Path) -> set[str]:
    """Index DEST; returns the files notmuch passed over as "non-mail"."""
    (home / "notmuch-config").write_text(
        f"[database]\npath={dest}\n[new]\ntags=unread;inbox;\n"
        "ignore=.archiver;dovecot-keywords\n[maildir]\nsynchronize_flags=true\n", encoding="utf-8")
    out = _notmuch_run(home, "new")
    note = "Note: Ignoring non-mail file: "
    return {line[len(note):] for line in (out.stdout + out.stderr).splitlines()
            if line.startswith(note)}


def _has_header(data: bytes) -> bool:
    first = data.split(b"\n", 1)[0]
    return b":" in first and not first[:1].isspace()


def test_notmuch_counts_tags_and_japanese_search_match_the_index(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    need("notmuch")
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    entries = _live(dest)
    by_file = {str(dest / e.path): e for e in entries}
    ignored = _notmuch_setup(tmp_path, dest)
    # notmuch passes over only the corpus's messages without a header (not mail to it)
    assert ignored <= set(by_file)
    assert ignored == {f for f in by_file if not _has_header(Path(f).read_bytes())}
    # every other file is indexed, folder by folder
    per_folder = Counter(e.path.rsplit("/", 2)[0] for e in entries
                         if str(dest / e.path) not in ignored)
    for folder, n in per_folder.items():
        got = _notmuch(tmp_path, "count", "--output=files", f'path:"{folder}/**"')
        nested = sum(m for f, m in per_folder.items() if f.startswith(folder + "/"))
        assert int(got) == n + nested, folder
    # tags from the Maildir flags: notmuch merges the files of one Message-ID
    messages = json.loads(_notmuch(tmp_path, "show", "--format=json", "--body=false",
                                   "--entire-thread=false", "*"))
    checked = 0
    for thread in messages:
        for msg in _flatten(thread):
            names = msg["filename"]
            assert isinstance(names, list)
            files = [by_file[f] for f in names]
            tags = set(msg["tags"])  # type: ignore[call-overload]
            seen = [f for f in files if "\\Seen" in f.flags]
            assert ("unread" in tags) == (not seen), names
            for flag, tag in TAGS.items():
                has = any(flag in f.flags or flag in f.keywords for f in files)
                assert (tag in tags) == has, (tag, names)
            checked += len(files)
    assert checked == len(entries) - len(ignored)
    # a Japanese subject found by a word inside it (CJK n-grams)
    hits = _notmuch(tmp_path, "search", "--output=files", "subject:講義")
    assert any(by_file[f].path.startswith("INBOX/") for f in hits.split("\n") if f)
    assert _notmuch(tmp_path, "count", "ゼミ").strip() != "0"
    assert (dest / ".notmuch").is_dir()  # its database, inside DEST: not mail to verify
    assert run_cli(["verify", str(dest)])[0] == 0


def _flatten(node: object) -> list[dict[str, object]]:
    """The messages of ``notmuch show --format=json``'s nested thread lists."""
    if isinstance(node, dict):
        return [node] if "filename" in node else []
    out: list[dict[str, object]] = []
    if isinstance(node, list):
        for item in node:
            out.extend(_flatten(item))
    return out


def test_mu_indexes_every_message_of_a_maildir_archive(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    need("mu")
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest)[0] == 0
    entries = _live(dest)
    home = f"--muhome={tmp_path / 'mu'}"
    for args in (["init", f"--maildir={dest}"], ["index"]):
        out = subprocess.run(["mu", *args, home], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    out = subprocess.run(["mu", "find", home, "--fields", "l", ""],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    files = set(out.stdout.split("\n")) - {""}
    # every message with a header; of the corpus's header-less ones mu takes some
    every = {str(dest / e.path) for e in entries}
    assert {f for f in every if _has_header(Path(f).read_bytes())} <= files <= every


def test_python_mboxo_reader_finds_every_message_of_an_mbox_archive(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest, "--format", "mbox")[0] == 0
    state = Archive.open_existing(dest).state()
    store = MboxStore(dest)
    by_path: dict[str, list[MessageEntry]] = defaultdict(list)
    for e in state.messages():
        if e.counted:
            by_path[e.path].append(e)
    quoted = 0
    for path, entries in by_path.items():
        box = mailbox.mbox(str(dest / path), create=False)
        got = sorted(box.get_bytes(key).rstrip(b"\n") for key in box.iterkeys())
        # an mboxo reader keeps the quoting: it shows the quoted bytes, ">From " and all
        want = sorted(quote(store.read_message(e)).rstrip(b"\n") for e in entries)
        assert got == want, path
        quoted += sum(1 for w in want if b"\n>From " in w)
    assert quoted  # the corpus has a body line "From ...", shown as ">From ..."


def _neomutt_status(home: Path, folder: Path) -> tuple[int, int, int]:
    """(messages, unread, flagged) neomutt shows for ``folder``, opened read-only.

    neomutt has no batch mode that counts: it runs in a pseudo-terminal
    (``script``), its status line is set to the counts, and it quits at once.
    """
    need("script")
    home.mkdir(exist_ok=True)
    cmd = shlex.join(["neomutt", "-R", "-n", "-F", "/dev/null", "-e",
                      f'set folder="{home}" status_format="COUNT=%m=%u=%F="',
                      "-f", str(folder), "-e", "push <quit>"])
    out = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True,
                         env=dict(os.environ, HOME=str(home), TERM="xterm"), timeout=60,
                         cwd=home)
    found = re.findall(rb"COUNT=(\d+)=(\d+)=(\d+)=", out.stdout)
    assert found, out.stdout[-2000:]
    m, u, f = (int(x) for x in found[-1])
    return m, u, f


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_neomutt_shows_every_folder_with_its_counts_and_leaves_the_files_alone(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path, fmt: str) -> None:
    need("neomutt")
    dest = tmp_path / "a"
    assert backup(dovecot, loaded_user.user, dest, "--format", fmt)[0] == 0
    state = Archive.open_existing(dest).state()
    for folder in state.folders.values():
        if folder.parent_only:
            continue
        entries = [e for e in folder.messages.values() if e.counted and not e.gone]
        if fmt == "maildir":  # neomutt passes over an empty (0-byte) Maildir file
            entries = [e for e in entries if e.size > 0]
        want = (len(entries), sum(1 for e in entries if "\\Seen" not in e.flags),
                sum(1 for e in entries if "\\Flagged" in e.flags))
        got = _neomutt_status(tmp_path / "home", dest / folder.path)
        if fmt == "maildir":
            assert got == want, folder.name
        else:  # an mbox has no flags (they live in the index): all unread, none flagged
            assert got == (want[0], want[0], 0), folder.name
    assert run_cli(["verify", str(dest)])[0] == 0  # read-only (-R): nothing rewritten


def test_neomutt_reads_mboxo_so_quoted_from_lines_keep_their_extra_quote(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    """What docs/READING.md says of mboxrd vs mboxo, seen in neomutt itself."""
    need("neomutt")
    need("script")
    body = b"From the start\r\n>From quoted\r\nend\r\n"
    dovecot.append(mail_user, "INBOX", b"Subject: From lines\r\n\r\n" + body)
    dest = tmp_path / "a"
    assert backup(dovecot, mail_user, dest, "--format", "mbox")[0] == 0
    home = tmp_path / "home"
    home.mkdir()
    piped = tmp_path / "piped"
    cmd = shlex.join(["neomutt", "-R", "-n", "-F", "/dev/null", "-e",
                      f'set folder="{home}" wait_key=no', "-f", str(dest / "Inbox"), "-e",
                      f'push "<pipe-message>cat > {piped}<enter><quit>"'])
    subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True, timeout=60,
                   env=dict(os.environ, HOME=str(home), TERM="xterm"), cwd=home)
    shown = piped.read_bytes().replace(b"\r\n", b"\n")
    assert b"\n>From the start\n>>From quoted\nend\n" in shown  # one ">" more than sent
    assert run_cli(["verify", str(dest)])[0] == 0
