"""What the Courier and Cyrus tests share: the corpus on a foreign server, archive checks.

The nasty corpus (tests/corpus.py) goes onto the server by APPEND under the
server's own names (``Sent`` -> ``INBOX.Sent``).  What a server refuses or
rewrites is its business: the archive must equal what the server *serves*,
so every check compares with a fresh EXAMINE/FETCH of the server.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.archive import Archive
from archiver.stores import open_store
from tests import corpus
from tests.dovecot import MailUser, raw_append
from tests.foreign import ForeignServer
from tests.helpers import index_records, password_file, run_cli


@dataclass
class Loaded:
    """A foreign-server user loaded with the corpus; ``refused`` are corpus labels the
    server would not take (with its answer)."""

    user: MailUser
    refused: dict[str, str] = field(default_factory=dict)
    appended: int = 0


def load_corpus(server: ForeignServer, user: MailUser, *, skip_folders: tuple[str, ...] = (),
                big_mb: float = 1.5) -> Loaded:
    """APPEND the corpus (and one big message) to *user*'s personal folders."""
    out = Loaded(user)
    with server.session(user) as c:
        for m in [*corpus.nasty_messages(), corpus.big_message(big_mb)]:
            if m.via != "append" or m.folder in skip_folders:
                continue
            name = server.folder(m.folder)
            server.create_folder(user, name, client=c)
            try:
                raw_append(c, name, m.data, m.flags, m.internaldate)
                out.appended += 1
            except Exception as exc:  # the server's NO: a fact the test pins
                text = str(exc).split("refused: ", 1)[-1]  # "NO b'why'"
                out.refused[m.label] = re.sub(r"^\w+ b['\"](.*)['\"]$", r"\1", text)
        server.create_folder(user, server.folder(corpus.EMPTY), client=c)
    return out


def backup_args(server: ForeignServer, user: MailUser, dest: Path) -> list[str]:
    pw = password_file(user, dest.parent / ".pw")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}", str(dest),
            "--cafile", str(server.cafile), "--password-file", str(pw), "--timeout", "30"]


def backup(server: ForeignServer, user: MailUser, dest: Path, *extra: str
           ) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli(["backup", *backup_args(server, user, dest), "--json", *extra])
    return code, (json.loads(out) if out.strip() else {}), err


def target_args(server: ForeignServer, user: MailUser, where: Path) -> list[str]:
    pw = password_file(user, where / ".pw-target")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}", "--target-cafile",
            str(server.cafile), "--target-password-file", str(pw), "--timeout", "30"]


def archive_by_server_name(dest: Path) -> dict[str, dict[int, tuple[bytes, set[str]]]]:
    """The archive's current messages: server folder name -> uid -> (bytes, flags)."""
    state = Archive.open_existing(dest).state()
    reader = open_store(dest, "maildir")
    out: dict[str, dict[int, tuple[bytes, set[str]]]] = {}
    for entry in state.folders.values():
        msgs = out.setdefault(entry.server_name, {})
        for m in entry.messages.values():
            if not m.gone and m.uidl is None:
                msgs[m.uid] = (reader.read_message(m), set(m.flags) | set(m.keywords))
    return out


def assert_archive_mirrors(server: ForeignServer, user: MailUser, dest: Path,
                           folders: set[str] | None = None) -> int:
    """Every served message archived once, byte-exact, with its flags (UIDs may differ
    when the server churned them: then compared as multisets).  Returns the count."""
    served = server.fetch_all(user)
    have = archive_by_server_name(dest)
    names = set(served) if folders is None else folders
    assert names <= set(have) | {n for n in served if not served[n]}, (names, set(have))
    total = 0
    for name in sorted(names):
        want = Counter((data, frozenset(flags)) for _uid, data, flags, _d in served[name])
        got = Counter((data, frozenset(flags)) for data, flags in have.get(name, {}).values())
        assert got == want, name
        total += sum(want.values())
    return total


def record_count(dest: Path) -> int:
    return len(index_records(dest))
