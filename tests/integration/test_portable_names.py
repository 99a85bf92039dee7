"""The archive's file naming: probed once, recorded in archive.json, kept for ever.

``--portable-names`` gives ``…;2,<info>`` names on a file system that takes
``:`` too, and every reader (verify, reindex, ls/show/search, export, a rerun
that renames for new flags) accepts them.  An archive written before the
naming field existed keeps ``:`` -- even where a probe would now say ``;``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import archiver.archive
from archiver.archive import Archive
from archiver.naming import LEGACY, PORTABLE, Naming, probe
from tests import corpus
from tests.conftest import LoadedUser
from tests.dovecot import DovecotServer
from tests.helpers import archived_files, backup, run_cli


def _meta(dest: Path) -> dict[str, object]:
    meta: dict[str, object] = json.loads(
        (dest / ".archiver" / "archive.json").read_text(encoding="utf-8"))
    return meta


def _msgs(dest: Path) -> dict[tuple[str, int, int], tuple[object, ...]]:
    return {(m.folder, m.uidvalidity, m.uid): (m.sha256, m.size, sorted(m.flags), m.path)
            for m in Archive.open_existing(dest).state().messages()}


def test_probe_says_colon_on_a_linux_disk_and_leaves_nothing(tmp_path: Path) -> None:
    naming = probe(tmp_path)
    assert (naming.delimiter, naming.why, naming.case_insensitive) == (":", "probed", False)
    assert naming.name_max == 255
    assert probe(tmp_path, portable=True).delimiter == PORTABLE
    assert list(tmp_path.iterdir()) == []
    assert Naming.from_meta({"v": 1}) == LEGACY and LEGACY.info_sep == ":2,"
    assert Naming.from_meta({"naming": probe(tmp_path, True).to_json()}).info_sep == ";2,"


def test_portable_names_archive_is_read_by_every_command(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    user = loaded_user.user
    dest = tmp_path / "stick"
    code, _out, err = backup(dovecot, user, dest, "--portable-names")
    assert code == 0, err
    assert _meta(dest)["naming"] == {"info_delimiter": ";", "case_insensitive": False,
                                     "name_max": 255, "why": "portable"}
    files = archived_files(dest)
    assert files and all(";2," in p and ":" not in p for p in files)

    # new flags: the rerun renames with the archive's separator
    inbox = [u for m, u in zip(loaded_user.messages, loaded_user.uids)
             if m.folder == corpus.INBOX]
    dovecot.set_flags(user, corpus.INBOX, inbox[0], ["\\Seen", "\\Flagged", "$Forwarded"])
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    renamed = [p for p in archived_files(dest) if p.startswith("INBOX/cur/")
               and p.endswith(";2,FPS")]  # no keyword letters in ";" names
    assert not list(dest.rglob("dovecot-keywords"))
    assert len(renamed) == 1, sorted(archived_files(dest))
    assert all(":" not in p for p in archived_files(dest))
    assert run_cli(["verify", str(dest)])[0] == 0

    # reindex from the files alone reads flags after ';2,'
    copy = tmp_path / "copy"
    shutil.copytree(dest, copy)
    before = _msgs(copy)
    (copy / ".archiver" / "snapshot.json.zst").unlink()
    (copy / ".archiver" / "index.jsonl.zst").unlink()
    code, _out, err = run_cli(["reindex", str(copy)])
    assert code == 0, err
    assert _msgs(copy) == before

    code, out, err = run_cli(["ls", str(dest), "INBOX", "--json"])
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in out.splitlines()]
    code, out, err = run_cli(["show", str(dest), ids[0]])
    assert code == 0 and out, err
    code, out, err = run_cli(["search", str(dest), "講義資料"])
    assert code == 0 and out.strip(), err

    for extra, sep in (((), ":2,"), (("--portable-names",), ";2,")):
        out_dir = tmp_path / f"export{len(extra)}"
        code, _out, err = run_cli(["export", str(dest), str(out_dir), "--to", "maildir",
                                   *extra])
        assert code == 0, err
        names = [p.name for p in out_dir.rglob("*") if p.is_file() and p.parent.name == "cur"]
        assert len(names) == len(files) and all(sep in n for n in names), (sep, names[:3])


def test_archive_without_naming_keeps_colon_for_ever(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user = loaded_user.user
    dest = tmp_path / "old"
    assert backup(dovecot, user, dest)[0] == 0
    meta = _meta(dest)
    del meta["naming"]  # as written before the naming field existed
    (dest / ".archiver" / "archive.json").write_text(json.dumps(meta), encoding="utf-8")
    # were the old archive probed again, this would give it ';'
    monkeypatch.setattr(archiver.archive, "probe",
                        lambda where, portable=False: Naming(PORTABLE, why="probed"))
    before = archived_files(dest)

    inbox = [u for m, u in zip(loaded_user.messages, loaded_user.uids)
             if m.folder == corpus.INBOX]
    dovecot.set_flags(user, corpus.INBOX, inbox[0], ["\\Answered"])
    dovecot.append(user, corpus.INBOX, b"Subject: later\r\n\r\nnew one\r\n", ["\\Seen"])
    code, _out, err = backup(dovecot, user, dest)
    assert code == 0, err
    after = archived_files(dest)
    assert len(after) == len(before) + 1
    assert all(":2," in p and ";" not in p for p in after), sorted(after)
    assert any(p.endswith(":2,R") for p in set(after) - set(before))
    assert any(p.endswith(":2,S") for p in set(after) - set(before))
    assert "naming" not in _meta(dest)  # the archive.json is left as it was
    assert run_cli(["verify", str(dest)])[0] == 0

    code, _out, err = run_cli(["backup", *_source(dovecot, loaded_user, dest),
                               "--portable-names"])
    assert code == 2, err
    assert "--portable-names" in err and "Traceback" not in err


def _source(dovecot: DovecotServer, loaded: LoadedUser, dest: Path) -> list[str]:
    from tests.helpers import source_args

    return source_args(dovecot, loaded.user, dest)
