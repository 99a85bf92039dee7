"""``archiver batch``'s files without a server: ACCOUNTS, shards, state, manifests."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from archiver.batch.accounts import load_accounts
from archiver.batch.layout import Layout
from archiver.batch.manifest import manifest_line, write_manifest
from archiver.batch.shard import Shard, choose_shard, shard_of
from archiver.batch.state import StateFile, latest
from archiver.errors import LockedError, UsageError
from tests.helpers import run_cli

SOURCE = "imaps://mail.example.com"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def _error(path: Path, source: str | None = SOURCE) -> str:
    with pytest.raises(UsageError) as info:
        load_accounts(path, source)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- ACCOUNTS


def test_csv_with_bom_comments_and_defaults_is_read(tmp_path: Path) -> None:
    _write(tmp_path, "alice.pw", "secret\n")
    path = _write(tmp_path, "a.csv", "\ufeffuser,password_file,note,format\n"
                  "# departed in March\n"
                  "alice,alice.pw,研究室,mbox\n\n"
                  "bob@example.com,,,\n")
    rows = load_accounts(path, SOURCE)
    assert [(a.user, a.format, a.note) for a in rows] == [
        ("alice", "mbox", "研究室"), ("bob@example.com", None, "")]
    assert rows[0].password_file == tmp_path / "alice.pw"
    assert rows[0].where == f"{path}:3"
    assert rows[1].dest_path(Layout(tmp_path)) == tmp_path / "bob@example.com"


def test_toml_defaults_and_accounts_are_read(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.toml", '[defaults]\nsource = "imaps://old.example.com"\n'
                  'note = "left"\n\n[[account]]\nuser = "alice"\n\n[[account]]\n'
                  'user = "bob"\nsource = "imaps://other.example.com:1993"\n'
                  'dest = "staff/bob"\n')
    rows = load_accounts(path)
    assert [(a.user, a.source, a.note, a.dest) for a in rows] == [
        ("alice", "imaps://old.example.com", "left", None),
        ("bob", "imaps://other.example.com:1993", "left", "staff/bob")]
    assert rows[1].where == f"{path}:8"


def test_a_duplicate_user_names_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "user\nalice\nbob\nalice\n")
    assert _error(path) == (f"{path}:4: user 'alice' is already on line 2: list each "
                            "account once")


def test_an_unknown_column_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "user,pasword_file\nalice,x\n")
    message = _error(path)
    assert message.startswith(f"{path}:1: unknown column 'pasword_file'")
    assert "password_file" in message


def test_a_row_without_source_names_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "user,source\nalice,imaps://a.example.com\nbob,\n")
    message = _error(path, source=None)
    assert message.startswith(f"{path}:3: no source for user 'bob'")
    assert "--source" in message


@pytest.mark.parametrize("dest", ["../elsewhere", "/srv/mail/x", ".batch/x", "a/../../b",
                                  "C:\\mail"])
def test_a_dest_outside_root_is_refused(tmp_path: Path, dest: str) -> None:
    path = _write(tmp_path, "a.csv", f"user,dest\nalice,{dest}\n")
    assert _error(path).startswith(f"{path}:2: dest '{dest}' must be a directory inside ROOT")


def test_two_accounts_in_one_directory_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "user,dest\nalice,\nbob,alice/bob\n")
    assert "lies inside 'alice'" in _error(path)
    path = _write(tmp_path, "b.csv", "user,dest\nalice,shared\nbob,SHARED\n")
    assert "already used on line 2" in _error(path)
    path = _write(tmp_path, "c.csv", "user\nJos\u00e9\nJose\u0301\n")  # NFC and NFD
    assert "already used on line 2" in _error(path)


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    assert "not UTF-8" in _error(_write(tmp_path, "a.csv", b"user\n\xff\xfe\n"))
    assert "not valid TOML" in _error(_write(tmp_path, "a.toml", "[[account]\n"))
    assert "unknown key 'pasword'" in _error(_write(tmp_path, "b.toml",
                                                    '[[account]]\nuser="a"\npasword="x"\n'))
    assert "no 'user' column" in _error(_write(tmp_path, "b.csv", "name,source\nalice,x\n"))
    assert "lists no accounts" in _error(_write(tmp_path, "c.csv", "user\n"))
    assert "not a server" in _error(_write(tmp_path, "d.csv", "user,source\na,mail.example\n"))
    assert "password file" in _error(_write(tmp_path, "e.csv", "user,password_file\na,nope\n"))


def test_the_cli_reports_a_bad_accounts_file_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "user\nalice\nalice\n")
    code, out, err = run_cli(["batch", str(path), str(tmp_path / "root"), "--source", SOURCE])
    assert code == 2
    assert err.strip() == (f"archiver: error: {path}:3: user 'alice' is already on line 2: "
                           "list each account once")
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------- shards


def test_shards_partition_any_list_of_users() -> None:
    users = [f"user{i}@example.com" for i in range(500)] + ["山田", "a*b"]
    for n in (1, 2, 3, 7):
        parts = [{u for u in users if Shard(k, n).takes(u)} for k in range(1, n + 1)]
        assert sum(len(p) for p in parts) == len(users)
        assert set().union(*parts) == set(users)
    assert shard_of("alice", 3) == int(hashlib.sha256(b"alice").hexdigest(), 16) % 3 + 1


def test_the_environment_chooses_the_shard() -> None:
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
             "SLURM_ARRAY_TASK_COUNT": "4"}
    assert choose_shard(None, None, slurm) == Shard(3, 4)
    assert choose_shard("1/2", None, slurm) == Shard(1, 2)  # --shard wins
    assert choose_shard(None, 5, {"JOB_COMPLETION_INDEX": "0"}) == Shard(1, 5)
    assert choose_shard(None, None, {}) == Shard(1, 1)
    for env, count, words in (
            (dict(slurm, SLURM_ARRAY_TASK_STEP="3"), None, "SLURM_ARRAY_TASK_STEP=3"),
            (dict(slurm, SLURM_ARRAY_TASK_ID="12"), None, "contiguous"),
            ({"JOB_COMPLETION_INDEX": "1"}, None, "--shard-count"),
            ({"JOB_COMPLETION_INDEX": "4"}, 3, "beyond --shard-count 3"),
            ({}, 3, "JOB_COMPLETION_INDEX is not set")):
        with pytest.raises(UsageError, match=words.replace("-", r"\-")):
            choose_shard(None, count, env)
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(UsageError):
            choose_shard(bad, None, {})


# ---------------------------------------------------------------- state and manifests


def test_state_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    with StateFile(path) as state:
        state.append({"user": "alice", "status": "ok", "t": "1"})
        state.append({"user": "bob", "status": "running", "t": "1"})
    with open(path, "ab") as fh:
        fh.write(b'{"user": "bob", "status": "ok", "mess')  # kill -9 in mid-write
    with StateFile(path) as state:
        assert state.records["bob"]["status"] == "running"
        state.append({"user": "bob", "status": "ok", "t": "2"})
    assert {u: r["status"] for u, r in latest(path).items()} == {"alice": "ok", "bob": "ok"}


def test_a_second_batch_of_the_same_shard_is_refused(tmp_path: Path) -> None:
    with StateFile(tmp_path / "all.jsonl"), pytest.raises(LockedError) as info:
        StateFile(tmp_path / "all.jsonl").open()
    assert info.value.exit_code == 6


def test_manifest_lines_escape_names_as_gnu_sha256sum_does(tmp_path: Path) -> None:
    assert manifest_line("ab", "a\\b\nc") == "\\ab  a\\\\b\\nc\n"
    dest = tmp_path / "acct"
    (dest / ".archiver").mkdir(parents=True)
    for name, data in ((".archiver/archive.json", b"{}"), (".archiver/lock", b""),
                       (".archiver/index.jsonl.zst", b"i"), ("INBOX/cur/1:2,S", b"m"),
                       ("INBOX/tmp/junk", b"j"), ("odd\\name/cur/2:2,", b"n")):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    (dest / "odd\\name" / "tmp").mkdir()
    files, nbytes = write_manifest(dest, tmp_path / "m.sha256")
    assert (files, nbytes) == (4, 5)
    r = subprocess.run(["sha256sum", "-c", "--strict", str(tmp_path / "m.sha256")], cwd=dest,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
