"""restore --connections: several target connections, every message exactly once.

Folders are spread over the connections (archiver.connections.Spread); the
journal is written by one writer and a target folder is restored into by one
connection at a time.  Each test checks the target against the source server
byte for byte (up to the documented line-end rewrite), ``--verify``, and that
a rerun uploads nothing.  Connections are counted at a FaultProxy in front of
the target, which also cuts lines and adds delay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.restore.target import ImapTarget
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, password_file, run_cli
from tests.integration.restore.test_restore import _fill, contents, restore_process
from tests.proxy import Fault, FaultProxy, every, only


def _restore(dest: Path, port: int, server: DovecotServer, user: MailUser,
             *extra: str) -> tuple[int, dict[str, object], str]:
    pw = password_file(user, dest.parent / ".pw-target")
    code, out, err = run_cli(["restore", str(dest), f"imaps://{user.name}@127.0.0.1:{port}",
                              "--target-cafile", str(server.cafile), "--target-password-file",
                              str(pw), "--timeout", "20", "--json", *extra])
    return code, json.loads(out) if out.strip() else {}, err


@pytest.fixture()
def archived(dovecot: DovecotServer, tmp_path: Path) -> tuple[MailUser, Path]:
    """An archive of 60 messages in INBOX, Sent and a nested folder (受信箱/講義)."""
    old = dovecot.new_user()
    _fill(dovecot, old, 60)
    dest = tmp_path / "a"
    assert backup(dovecot, old, dest)[0] == 0
    return old, dest


def test_three_target_connections_land_every_message_once_and_a_rerun_uploads_nothing(
        dovecot: DovecotServer, dovecot_new: DovecotServer, archived: tuple[MailUser, Path]
        ) -> None:
    old, dest = archived
    new = dovecot_new.new_user()
    with FaultProxy(dovecot_new.imaps_port) as proxy:  # (the journal is named for its port)
        code, summary, err = _restore(dest, proxy.port, dovecot_new, new, "--connections", "3",
                                      "--verify")
        logins = len(proxy.connections)
        assert code == 0, err
        assert logins == 3  # all three were used
        assert summary["uploaded"] == 62 and summary["verify"]["ok"], summary  # type: ignore[index]
        assert sorted(summary["created"]) == ["Sent", "受信箱", "受信箱/講義"]  # type: ignore[arg-type]
        assert contents(dovecot_new, new) == contents(dovecot, old)
        before = dovecot_new.fingerprint(new)
        code, again, err = _restore(dest, proxy.port, dovecot_new, new, "--connections", "3")
    assert code == 0, err
    assert again["uploaded"] == 0 and again["found"] == 0 and again["already"] == 62, again
    assert dovecot_new.fingerprint(new) == before


def test_lines_cut_mid_upload_on_several_connections_then_rerun_exactly_once(
        dovecot: DovecotServer, dovecot_new: DovecotServer, archived: tuple[MailUser, Path]
        ) -> None:
    """The first three lines are cut inside an APPEND (client->server) -- on every
    connection that uploads that much; each reconnects on its own and redoes its
    folder from the journal and the dedup listing."""
    old, dest = archived
    new = dovecot_new.new_user()
    with FaultProxy(dovecot_new.imaps_port, only({1, 2, 3}, Fault(cut_up_after=9000))) as proxy:
        code, summary, err = _restore(dest, proxy.port, dovecot_new, new, "--connections", "3")
        cuts = [c.ended for c in proxy.connections[:3]]
        assert cuts.count("cut") >= 2, cuts  # one of the extra connections may have had
        # only the empty parent folder to do
        assert code == 0, err
        assert contents(dovecot_new, new) == contents(dovecot, old)
        code, again, err = _restore(dest, proxy.port, dovecot_new, new, "--connections", "3",
                                    "--verify")
    assert code == 0, err
    assert again["uploaded"] == 0 and again["verify"]["ok"], again  # type: ignore[index]
    assert again["verify"]["extra"] == 0, again  # type: ignore[index]


def test_kill_with_three_connections_then_rerun_has_no_duplicates(
        dovecot: DovecotServer, dovecot_new: DovecotServer, archived: tuple[MailUser, Path]
        ) -> None:
    """Killed (exit 137) after an APPEND landed on one connection, its record unwritten,
    with the others' uploads in flight: the rerun finds what landed, uploads the rest."""
    old, dest = archived
    new = dovecot_new.new_user()
    proc = restore_process(dest, dovecot_new, new, "--connections", "3",
                           env={"ARCHIVER_TEST_RESTORE_CRASH_AFTER": "30"})
    assert proc.wait(60) == 137, proc.stderr.read() if proc.stderr else ""
    code, summary, err = _restore(dest, dovecot_new.imaps_port, dovecot_new, new,
                                  "--connections", "3", "--verify")
    assert code == 0, err
    assert summary["verify"]["ok"] and summary["verify"]["extra"] == 0, summary  # type: ignore[index]
    assert contents(dovecot_new, new) == contents(dovecot, old)


def test_a_target_refusing_extra_connections_means_fewer_not_a_problem(
        dovecot: DovecotServer, dovecot_new: DovecotServer, archived: tuple[MailUser, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    old, dest = archived
    new = dovecot_new.new_user()
    real_clone = ImapTarget.clone

    def clone(self: ImapTarget) -> ImapTarget:
        other = real_clone(self)

        def refuse() -> None:
            from archiver.sources.session import ServerUnavailable
            raise ServerUnavailable("127.0.0.1 refused the login for now ([UNAVAILABLE] "
                                    "too many connections)")
        monkeypatch.setattr(other, "connect", refuse)
        return other  # type: ignore[return-value]

    monkeypatch.setattr(ImapTarget, "clone", clone)
    code, summary, err = _restore(dest, dovecot_new.imaps_port, dovecot_new, new,
                                  "--connections", "3", "--verify")
    assert code == 0, err
    assert any("accepted 1 of 3 connections" in n for n in summary["notes"]), summary  # type: ignore[union-attr]
    assert contents(dovecot_new, new) == contents(dovecot, old)


@pytest.mark.parametrize("delay,expect", [(0.0, 1), (0.02, 3)])
def test_auto_uses_three_target_connections_only_over_a_slow_link(
        dovecot_new: DovecotServer, archived: tuple[MailUser, Path], delay: float,
        expect: int) -> None:
    _, dest = archived
    new = dovecot_new.new_user()
    with FaultProxy(dovecot_new.imaps_port, every(Fault(delay=delay))) as proxy:
        code, summary, err = _restore(dest, proxy.port, dovecot_new, new)
        logins = len(proxy.connections)
    assert code == 0, err
    assert logins == expect
    assert summary["uploaded"] == 62, summary
