"""`archiver restore` against real Dovecots: old -> archive -> new, exact, idempotent, resumable."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli

# Dovecot's default capability list (2.3) without UIDPLUS, LITERAL+ and MULTIAPPEND:
# the restore must fall back to synchronizing literals and dedup without APPENDUID.
MINIMAL_CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
                "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT URL-PARTIAL CATENATE "
                "UNSELECT CHILDREN NAMESPACE LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
                "ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY "
                "PREVIEW=FUZZY STATUS=SIZE SAVEDATE SPECIAL-USE")
LIMIT = 200_000  # bytes: the minimal server refuses bigger messages (quota plugin)


@pytest.fixture(scope="module")
def dovecot_min(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    extra = f"""
protocol imap {{
  imap_capability = {MINIMAL_CAPS}
  mail_plugins = $mail_plugins quota imap_quota
}}
mail_plugins = $mail_plugins quota
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=1G
  quota_max_mail_size = {LIMIT}
}}
"""
    server = DovecotServer(tmp_path_factory.mktemp("dovecot-min"), extra_config=extra).start()
    try:
        yield server
    finally:
        server.stop()


def target_args(server: DovecotServer, user: MailUser, where: Path) -> list[str]:
    pw = password_file(user, where / ".pw-target")
    return [f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
            "--target-cafile", str(server.cafile), "--target-password-file", str(pw),
            "--timeout", "20"]


def restore(dest: Path, server: DovecotServer, user: MailUser, *extra: str,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_cli(["restore", str(dest), *target_args(server, user, dest.parent), *extra],
                   env=env)


def norm(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").rstrip(b"\r")


def contents(server: DovecotServer, user: MailUser, *, deleted: bool = True
             ) -> dict[str, Counter[tuple[bytes, frozenset[str], object]]]:
    """Per folder: multiset of (normalised bytes, flags, INTERNALDATE)."""
    out: dict[str, Counter[tuple[bytes, frozenset[str], object]]] = {}
    for folder, msgs in server.fetch_all(user).items():
        out[folder] = Counter((norm(d), frozenset(f), idate.timestamp())
                              for _, d, f, idate in msgs if deleted or "\\Deleted" not in f)
    return out


def test_round_trip_is_exact_and_rerun_uploads_nothing(
        dovecot: DovecotServer, dovecot_new: DovecotServer, loaded_user, tmp_path: Path) -> None:
    old = loaded_user.user
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    new = dovecot_new.new_user()
    code, out, err = restore(dest, dovecot_new, new, "--json", "--include-deleted", "--verify")
    summary = json.loads(out)
    # the zero-byte message cannot be APPENDed to Dovecot: reported, not a crash
    assert code == 3, err
    assert len(summary["refused"]) == 1 and "0 bytes" in summary["refused"][0], summary
    assert "Bob's stuff" in err and "refused" in err
    want = contents(dovecot, old)
    got = contents(dovecot_new, new)
    assert sorted(got) == sorted(want)  # every folder, Japanese names included
    for folder in want:
        expect = want[folder]
        if folder == corpus.APOS:
            expect = Counter({k: v for k, v in expect.items() if k[0] != b""})
        assert got[folder] == expect, folder
    assert summary["verify"]["missing"] and len(summary["verify"]["missing"]) == 1
    # rerun: nothing uploaded, no duplicates
    before = dovecot_new.fingerprint(new)
    code, out, err = restore(dest, dovecot_new, new, "--json", "--include-deleted")
    again = json.loads(out)
    assert again["uploaded"] == 0 and again["found"] == 0, again
    assert dovecot_new.fingerprint(new) == before
