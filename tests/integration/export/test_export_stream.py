"""Export copies messages in chunks: any chunking gives the same files; a bad read leaves no trace.

``framing.COPY_CHUNK`` is set to a few bytes, so ``From `` lines, line ends
and the first LF are cut everywhere; every form from both archive formats
must come out byte for byte as with 1 MiB chunks.  A message whose bytes fail
half way is reported and taken back out of the output.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest

import archiver.export.framing
from archiver.state import MessageEntry
from archiver.stores.base import CHUNK
from archiver.stores.maildir import MaildirStore
from tests import corpus
from tests.dovecot import DovecotServer
from tests.helpers import backup, run_cli

KINDS = ("thunderbird", "mbox", "maildir", "eml")


@pytest.fixture(scope="module")
def archives(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Path]:
    """The nasty corpus, plus a message whose only line is longer than a chunk."""
    user = dovecot.new_user("exstream")
    corpus.load(dovecot, user, corpus.nasty_messages(), corpus.folder_names())
    dovecot.append(user, "INBOX", b"X-Long: " + b"y" * 300 + b"\r\n\r\nFrom a long line\r\n")
    base = tmp_path_factory.mktemp("exstream")
    out = {}
    for fmt in ("maildir", "mbox"):
        out[fmt] = base / fmt
        assert backup(dovecot, user, out[fmt], "--format", fmt)[0] == 0
    return out


def _tree(root: Path) -> dict[str, bytes]:
    """Every exported file (not the Thunderbird form's record of what it exported)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".archiver-export.jsonl"}


def _export(dest: Path, out: Path, kind: str) -> tuple[int, str]:
    code, _out, err = run_cli(["export", str(dest), str(out), "--to", kind])
    return code, err


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_every_form_is_the_same_whatever_the_chunk_size(
        archives: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fmt: str) -> None:
    for kind in KINDS:
        assert _export(archives[fmt], tmp_path / f"whole-{kind}", kind)[0] == 0
    for chunk in (1, 5, 64):
        monkeypatch.setattr(archiver.export.framing, "COPY_CHUNK", chunk)
        for kind in KINDS:
            out = tmp_path / f"{chunk}-{kind}"
            assert _export(archives[fmt], out, kind)[0] == 0
            assert _tree(out) == _tree(tmp_path / f"whole-{kind}"), (chunk, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_a_message_unreadable_half_way_is_reported_and_taken_back_out(
        archives: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    dest = archives["maildir"]
    assert _export(dest, tmp_path / "good", kind)[0] == 0
    good = _tree(tmp_path / "good")
    monkeypatch.setattr(archiver.export.framing, "COPY_CHUNK", 50)
    real = MaildirStore.message_chunks
    victim: list[str] = []

    def failing(self: MaildirStore, entry: MessageEntry, chunk: int = CHUNK
                ) -> Iterator[bytes]:
        if 300 < entry.size < 100_000 and not victim:
            victim.append(entry.path)
        pieces = real(self, entry, chunk)
        if victim and entry.path == victim[0]:
            yield next(pieces)
            yield next(pieces)
            raise OSError(5, "Input/output error")
        yield from pieces

    monkeypatch.setattr(MaildirStore, "message_chunks", failing)
    code, err = _export(dest, tmp_path / "bad", kind)
    assert code == 3 and err.count("problem:") == 1 and "Input/output error" in err, err
    assert victim[0] in err
    bad = _tree(tmp_path / "bad")
    if kind in ("maildir", "eml"):  # one file less, every other file the same
        assert len(bad) == len(good) - 1 and all(good.get(k) == v for k, v in bad.items())
    else:  # one folder file lost exactly one whole entry; the others are untouched
        changed = [k for k in good if bad.get(k) != good[k]]
        assert len(changed) == 1 and sorted(bad) == sorted(good), changed
        name = changed[0]
        got = [bytes(m) for m in mailbox.mbox(tmp_path / "bad" / name)]
        want = [bytes(m) for m in mailbox.mbox(tmp_path / "good" / name)]
        assert len(got) == len(want) - 1 and all(m in want for m in got)
        assert bad[name] in (good[name].replace(e, b"", 1) for e in _entries(good[name]))


def _entries(mbox: bytes) -> list[bytes]:
    """The mbox file cut at its ``From `` lines (each piece one whole entry)."""
    starts = [0] + [i + 1 for i in range(len(mbox) - 5) if mbox[i:i + 6] == b"\nFrom "]
    return [mbox[a:b] for a, b in zip(starts, starts[1:] + [len(mbox)])]
