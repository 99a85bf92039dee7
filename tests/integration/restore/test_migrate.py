"""`archiver migrate`: old server -> local archive -> new server in one command, rerunnable."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import password_file, run_cli


def norm(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").rstrip(b"\r")


Contents = dict[str, Counter[tuple[bytes, frozenset[str], float]]]


def contents(server: DovecotServer, user: MailUser) -> Contents:
    return {folder: Counter((norm(d), frozenset(f), idate.timestamp()) for _, d, f, idate in msgs)
            for folder, msgs in server.fetch_all(user).items()}


def migrate(old: DovecotServer, old_user: MailUser, new: DovecotServer, new_user: MailUser,
            where: Path, *extra: str, env: dict[str, str] | None = None
            ) -> tuple[int, str, str]:
    """The benchmark's exact command shape."""
    pw_old = password_file(old_user, where / ".pw-old")
    pw_new = password_file(new_user, where / ".pw-new")
    return run_cli(["migrate", f"imaps://{old_user.name}@127.0.0.1:{old.imaps_port}",
                    f"imaps://{new_user.name}@127.0.0.1:{new.imaps_port}",
                    *extra, "--include-deleted", "--cafile", str(old.cafile),
                    "--password-file", str(pw_old), "--target-cafile", str(new.cafile),
                    "--target-password-file", str(pw_new)], env=env)


def _fill(server: DovecotServer, user: MailUser) -> None:
    with server.session(user) as c:
        for i in range(45):
            folder = ("INBOX", corpus.JA_INBOX, corpus.JA_LAB, "Sent", corpus.EMOJI)[i % 5]
            flags = [("\\Seen",), ("\\Deleted", "\\Seen"), ("$label1", "\\Flagged"), ()][i % 4]
            body = (f"Subject: m{i}\r\nMessage-ID: <m{i}@t>\r\n\r\n" + "y" * (i * 91 % 4000)
                    + "\r\n").encode()
            server.append(user, folder, body, flags, corpus._date(i), client=c)
        server.append(user, "INBOX", b"no header, no Message-ID\r\n", client=c)
        server.create_folder(user, corpus.EMPTY, client=c)


def test_migrate_then_new_mail_moves_only_the_new_mail(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    old = dovecot.new_user()
    _fill(dovecot, old)
    new = dovecot_new.new_user()
    via = tmp_path / "via"
    code, out, err = migrate(dovecot, old, dovecot_new, new, tmp_path, "--via", str(via),
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["restore"]["uploaded"] == 46 and result["verify"]["ok"], result
    assert contents(dovecot_new, new) == contents(dovecot, old)
    assert (via / ".archiver" / "index.jsonl.zst").exists()  # the archive is kept
    assert (via / ".archiver" / "snapshot.json.zst").exists()  # reindex can rebuild it
    # new mail and a flag change on the old server; one message dragged across by hand
    dovecot.append(old, corpus.JA_INBOX, b"Subject: later\r\nMessage-ID: <later@t>\r\n\r\nz\r\n",
                   ["\\Seen"], corpus._date(99))
    dovecot.append(old, "Sent", b"Subject: by hand\r\nMessage-ID: <hand@t>\r\n\r\nh\r\n",
                   [], corpus._date(98))
    dovecot_new.append(new, "Sent", b"Subject: by hand\r\nMessage-ID: <hand@t>\r\n\r\nh\r\n",
                       [], corpus._date(98))
    code, out, err = migrate(dovecot, old, dovecot_new, new, tmp_path, "--via", str(via),
                             "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["backup"]["new"] == 2 and again["restore"]["uploaded"] == 1, again
    assert again["restore"]["found"] == 1
    assert contents(dovecot_new, new) == contents(dovecot, old)


def test_migrate_default_via_is_per_account_under_user_data_dir(
        dovecot: DovecotServer, dovecot_new: DovecotServer, tmp_path: Path) -> None:
    old = dovecot.new_user()
    dovecot.append(old, "INBOX", b"Subject: one\r\n\r\n1\r\n")
    new = dovecot_new.new_user()
    code, _, err = migrate(dovecot, old, dovecot_new, new, tmp_path,
                           env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert code == 0, err
    assert (tmp_path / "data" / "archiver" / "127.0.0.1" / old.name / "INBOX").is_dir()
    assert len(dovecot_new.fetch_all(new)["INBOX"]) == 1
