"""Packed archives: pack -> unpack gives the same tree, and a pack is read in place.

One account loaded with the nasty corpus (Japanese folder names, ISO-2022-JP,
Shift_JIS, NUL bytes, an empty message, ``From `` lines for mbox quoting) is
backed up from a real Dovecot twice, as Maildir and as mbox; each archive is
packed once for the module.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.pack.format import FOOTER_SIZE
from archiver.pack.reader import PackReader
from archiver.reading import open_archive
from tests import corpus
from tests.dovecot import DovecotServer, MailUser
from tests.helpers import backup, run_cli
from tests.integration.restore.test_restore import contents, restore

FORMATS = ("maildir", "mbox")


def tree(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry below ``root``: relative path -> (kind, bytes of a file, permission bits);
    the lock file a running archiver holds is not the archive's."""
    out: dict[str, tuple[str, bytes | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == ".archiver/lock":
                continue
            st = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[rel] = ("file" if data is not None else "dir", data, stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture(scope="module")
def account(dovecot: DovecotServer) -> MailUser:
    user = dovecot.new_user("pack")
    corpus.load(dovecot, user, corpus.nasty_messages(), corpus.folder_names())
    for folder, data, flags, when in corpus.OFFLINE_EXTRA:
        dovecot.append(user, folder, data, flags, when)
    return user


@pytest.fixture(scope="module")
def archives(dovecot: DovecotServer, account: MailUser,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """format -> (archive directory, its pack)."""
    base = tmp_path_factory.mktemp("pack")
    out = {}
    for fmt in FORMATS:
        dest = base / fmt
        code, _out, err = backup(dovecot, account, dest, "--format", fmt)
        assert code == 0, err
        pack = base / f"{fmt}.pack"
        code, _out, err = run_cli(["pack", str(dest), str(pack)])
        assert code == 0, err
        out[fmt] = (dest, pack)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_unpack_gives_back_the_same_tree_which_verifies_and_a_rerun_continues(
        dovecot: DovecotServer, account: MailUser, archives: dict[str, tuple[Path, Path]],
        tmp_path: Path, fmt: str) -> None:
    dest, pack = archives[fmt]
    out = tmp_path / "unpacked"
    code, _out, err = run_cli(["unpack", str(pack), str(out)])
    assert code == 0, err
    want, got = tree(dest), tree(out)
    assert sorted(got) == sorted(want)  # the same files and directories, Japanese names too
    assert got == want  # ... with the same bytes and modes
    assert any(rel.endswith("dovecot-keywords") for rel in got) or fmt == "mbox"
    for rel in want:  # message files keep their mtime (the INTERNALDATE)
        if want[rel][0] == "file":
            assert (out / rel).stat().st_mtime_ns == (dest / rel).stat().st_mtime_ns, rel
    code, vout, err = run_cli(["verify", str(out)])
    assert code == 0, vout + err
    before = tree(out)
    code, _o, err = backup(dovecot, account, out)
    assert code == 0, err
    after = tree(out)
    assert {k: v for k, v in after.items() if k != ".archiver/folders.json"} == \
        {k: v for k, v in before.items() if k != ".archiver/folders.json"}


def test_unpack_refuses_a_non_empty_destination(archives: dict[str, tuple[Path, Path]],
                                                tmp_path: Path) -> None:
    _dest, pack = archives["maildir"]
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _out, err = run_cli(["unpack", str(pack), str(out)])
    assert code == 6 and "not empty" in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def _cli(*args: str) -> str:
    code, out, err = run_cli(list(args))
    assert code == 0, err
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_ls_search_show_on_a_pack_equal_the_tree(archives: dict[str, tuple[Path, Path]],
                                                 fmt: str) -> None:
    dest, pack = archives[fmt]
    assert _cli("ls", str(pack)) == _cli("ls", str(dest))
    assert _cli("ls", str(pack), "受信箱/講義", "--json") == \
        _cli("ls", str(dest), "受信箱/講義", "--json")
    for query in (["講義資料"], ["--body", "講義の資料を送ります"], ["--from", "yamada"],
                  ["--body", "From"]):
        on_tree = _cli("search", str(dest), "--json", *query)
        assert on_tree, query
        assert _cli("search", str(pack), "--json", *query) == on_tree
    ids = [json.loads(line)["id"] for line in _cli("search", str(dest), "--json").splitlines()]
    assert len(ids) > 30
    for short in ids:
        assert _cli("show", str(pack), short) == _cli("show", str(dest), short)


@pytest.mark.parametrize("fmt", FORMATS)
def test_show_raw_from_a_pack_gives_the_archived_bytes(archives: dict[str, tuple[Path, Path]],
                                                       fmt: str) -> None:
    dest, pack = archives[fmt]
    from archiver.offline.catalog import catalog
    from archiver.offline.show import read

    tree_arc, pack_arc = open_archive(dest), open_archive(pack)
    on_tree, in_pack = catalog(tree_arc), catalog(pack_arc)
    assert [i.entry for i in in_pack] == [i.entry for i in on_tree] and len(on_tree) > 30
    for item, packed in zip(on_tree, in_pack):
        assert read(pack_arc, packed) == read(tree_arc, item), item.entry.path


@pytest.mark.parametrize("kind", ["mbox", "maildir", "eml", "thunderbird"])
def test_export_from_a_pack_equals_export_from_the_tree(
        archives: dict[str, tuple[Path, Path]], tmp_path: Path, kind: str) -> None:
    for fmt in FORMATS:
        dest, pack = archives[fmt]
        a, b = tmp_path / f"{fmt}-tree", tmp_path / f"{fmt}-pack"
        _cli("export", str(dest), str(a), "--to", kind)
        _cli("export", str(pack), str(b), "--to", kind)
        ta, tb = tree(a), tree(b)
        if kind == "thunderbird":  # the wrapper folder is named after the source: same here
            assert sorted(ta) == sorted(tb)
        assert {k: v[1] for k, v in ta.items()} == {k: v[1] for k, v in tb.items()}, kind


def test_restore_from_a_pack_equals_restore_from_the_tree(
        dovecot_new: DovecotServer, archives: dict[str, tuple[Path, Path]],
        tmp_path: Path) -> None:
    dest, pack = archives["mbox"]
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    from_tree, from_pack = dovecot_new.new_user(), dovecot_new.new_user()
    code, _out, err = restore(dest, dovecot_new, from_tree, env=env)
    assert code in (0, 3), err  # 3: the empty message cannot be APPENDed to Dovecot
    # several connections: the pack is read from several threads at once
    code_p, out, err = restore(pack, dovecot_new, from_pack, "--json", "--connections", "3",
                               env=env)
    assert code_p == code, err
    summary = json.loads(out)
    assert str(tmp_path / "state") in summary["journal"]  # not inside the pack
    assert contents(dovecot_new, from_pack) == contents(dovecot_new, from_tree)
    code, out, err = restore(pack, dovecot_new, from_pack, "--json", env=env)
    assert json.loads(out)["uploaded"] == 0, out  # the journal in the state directory


def test_verify_on_a_pack_checks_every_message(archives: dict[str, tuple[Path, Path]]) -> None:
    for fmt in FORMATS:
        _dest, pack = archives[fmt]
        code, out, err = run_cli(["verify", str(pack), "--json"])
        assert code == 0, out + err
        report = json.loads(out)
        assert report["ok"] and report["checked"] > 30, report


def test_writing_commands_on_a_pack_say_to_unpack_first(
        dovecot: DovecotServer, account: MailUser,
        archives: dict[str, tuple[Path, Path]]) -> None:
    _dest, pack = archives["maildir"]
    before = pack.read_bytes()
    for code, _out, err in (backup(dovecot, account, pack),
                            run_cli(["reindex", str(pack), "--force"])):
        assert code == 6, err
        assert err.strip() == (f"archiver: error: {pack} is a packed archive: unpack it first with "
                               f"archiver unpack {pack} DEST"), err
    assert pack.read_bytes() == before


def test_pack_refuses_an_existing_file_and_an_archive_in_use(
        archives: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    dest, pack = archives["maildir"]
    code, _out, err = run_cli(["pack", str(dest), str(pack)])
    assert code == 6 and "--force" in err, err
    again = tmp_path / "again.pack"
    again.write_bytes(b"not a pack")
    code, out, err = run_cli(["pack", str(dest), str(again), "--force", "--json"])
    assert code == 0 and json.loads(out)["status"] == "ok", err
    assert _cli("ls", str(again)) == _cli("ls", str(dest))
    assert not list(tmp_path.glob("*.tmp"))
    with _locked(dest):
        code, _out, err = run_cli(["pack", str(dest), str(tmp_path / "x.pack")])
    assert code == 6 and "another archiver" in err, err
    assert not (tmp_path / "x.pack").exists()


def _locked(dest: Path) -> Iterator[None]:
    import contextlib


    @contextlib.contextmanager
    def held() -> Iterator[None]:
        arc = open_archive(dest)
        arc.acquire_lock()
        try:
            yield
        finally:
            arc.close()
    return held()


# ---------------------------------------------------------------- damage


def _damaged(pack: Path, tmp_path: Path, where: str) -> Path:
    data = bytearray(pack.read_bytes())
    reader = PackReader(pack)
    try:
        frames = reader.index.frames
        if where == "frame":
            f = frames[len(frames) // 2]
            data[f.offset + f.size // 2] ^= 0x40
        elif where == "index":
            size = len(data)
            data[size - FOOTER_SIZE - 10] ^= 0x01
        elif where == "truncate":
            del data[len(data) // 2:]
    finally:
        reader.close()
    bad = tmp_path / f"{where}.pack"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("where", ["frame", "index", "truncate"])
def test_a_damaged_pack_gives_one_line_naming_the_damage_never_wrong_bytes(
        archives: dict[str, tuple[Path, Path]], tmp_path: Path, where: str) -> None:
    dest, pack = archives["mbox"]
    bad = _damaged(pack, tmp_path, where)
    out = tmp_path / "out"
    code, _o, err = run_cli(["unpack", str(bad), str(out)])
    assert code == 6 and len(err.strip().splitlines()) == 1, err
    assert str(bad) in err and ("damaged" in err or "not a readable pack" in err), err
    assert not out.exists() and not list(tmp_path.glob(".out.unpacking"))
    if where == "frame":
        assert "frame" in err
        code, vout, err = run_cli(["verify", str(bad)])
        assert code == 1 and "changed" in vout, vout + err
        # every message either reads back exactly or is refused
        ids = [json.loads(x)["id"] for x in _cli("search", str(dest), "--json").splitlines()]
        refused = 0
        for short in ids:
            code, shown, err = run_cli(["show", str(bad), short])
            if code == 0:
                assert shown == _cli("show", str(dest), short)
            else:
                refused += 1
                assert code == 6 and "frame" in err and len(err.strip().splitlines()) == 1
        assert refused > 0
    else:
        code, _o, err = run_cli(["ls", str(bad)])
        assert code == 6 and "not a readable pack" in err, err
