"""``archiver reindex`` for mbox archives: messages found by parsing, or placed by the snapshot.

An mbox archive keeps flags, keywords and UIDs only in the index, so the
snapshot of an mbox archive (:func:`archiver.offline.reindex.write_snapshot`) lists
every message: folder, UIDVALIDITY/UID (or UIDL), path, ``offset``,
``length``, size, SHA-256, flags, keywords, INTERNALDATE.  A message the
snapshot knows is taken back exactly when the ``length`` bytes at ``offset``,
unquoted, still have its SHA-256 (and are followed by the separator and the
next ``From `` line or the end of the file).

Everything else is parsed: the folder tree is Thunderbird's (``A/B`` is the
file ``A.sbd/B``), each file is split at ``From `` lines that follow an empty
line (mboxrd quoting leaves no other line starting with ``From ``), and the
separator (:func:`archiver.stores.mbox.tail_for`) is stripped from the bytes
before the next ``From `` line.  That is ambiguous in one case: a message
that lacks a final newline (or ends in a bare CR) gives the same bytes as one
that ends in LF (``abc`` + ``\\n\\n`` is ``abc\\n`` + ``\\n``).  The length the
snapshot recorded at that offset wins; else a final LF after a CR, or in a
message with bare LF line ends, is the message's (the longer candidate), and
a message with only CRLF or CR line ends (or empty) is taken to lack the
final newline (the shorter) -- right for what IMAP servers store (CRLF),
wrong for a bare-LF message without a final newline (or of one line with
one) and for a message ending in a bare CR.

A parsed message has no known UIDVALIDITY or UID: it is recorded under
UIDVALIDITY 0 with a UID made from its SHA-256 (and its rank among equal
copies in the folder), ``sha256_norm``, no flags and ``"reindexed": true``.
The next IMAP backup sees those as sights from the other protocol and takes
each over when the server's message has the same bytes (no byte is written
twice); a POP3 backup links its sights to them (see
:func:`archiver.plan.plan_folder`).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Container
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from archiver.archive import META_DIR, Archive
from archiver.headers import summarize
from archiver.i18n import _
from archiver.index import POP3_UIDVALIDITY, gone_record, message_key, msg_record, uid_for_uidl
from archiver.names import decode_component
from archiver.sidefiles import is_side_file
from archiver.snapshot import emit_folders, emit_links, folders_by_dir, name_folders
from archiver.stores.base import norm_hash
from archiver.stores.mbox import tail_for, unquote

HEAD_BYTES = 256 * 1024
SBD = ".sbd"


def mbox_tree(dest: Path, known: Container[str] = ()) -> tuple[list[str], set[str]]:
    """(mbox files, ``.sbd`` directories) under DEST, relative, '/'-separated, sorted.

    Only ``.sbd`` directories are descended into; Thunderbird's ``.msf``
    summaries, mutt's locks and the like (:mod:`archiver.sidefiles`) are not
    mbox files -- unless the snapshot names the file (``known``): a folder may
    be called ``x.lock``.
    """
    files: list[str] = []
    sbds: set[str] = set()
    for root, dirs, names in os.walk(dest):
        rel = Path(root).relative_to(dest)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d != META_DIR]
        else:
            sbds.add(rel.as_posix())
        dirs[:] = sorted(d for d in dirs if d.lower().endswith(SBD))
        for name in sorted(names):
            if is_side_file(name) and (rel / name).as_posix() not in known:
                continue
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                files.append((rel / name).as_posix())
    return sorted(files), sbds


def folder_name(rel: str) -> str:
    """``A.sbd/B%2Esbd`` -> ``A/B.sbd`` (see :func:`archiver.stores.mbox.component_name`)."""
    parts = rel.split("/")
    comps = [decode_component(p) for p in [p[: -len(SBD)] for p in parts[:-1]] + parts[-1:]]
    if comps[0].upper() == "INBOX":  # ``Inbox`` (Thunderbird's name) or an older ``INBOX``
        comps[0] = "INBOX"
    return "/".join(comps)


def _from_line_date(envelope: bytes) -> Optional[str]:
    """The INTERNALDATE written into a ``From sender asctime`` line (UTC), if it parses."""
    text = envelope.rstrip(b"\r\n")[-24:].decode("ascii", "replace")
    try:
        when = datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc).isoformat()


def candidates(between: bytes) -> list[int]:
    """Lengths L with ``q + tail_for(q) == between`` (q: the first L bytes), longest first."""
    out = []
    for k in (1, 2, 3):
        if len(between) >= k:
            quoted = between[: len(between) - k]
            if tail_for(quoted) == between[len(between) - k :]:
                out.append(len(quoted))
    return out


def choose(between: bytes, lengths: list[int]) -> int:
    """Which candidate length to take when more than one fits (see the module docstring).

    Two candidates differ by a final LF.  If that LF follows a CR (CRLF), or the
    message uses bare LF line ends elsewhere, it belongs to the message (the
    longer); a message with only CRLF or CR line ends (or none, as an empty
    one) is taken to lack a final newline instead (the shorter).
    """
    if len(lengths) < 2:
        return lengths[0]
    longer, shorter = lengths[0], lengths[1]
    if longer >= 2 and between[longer - 2 : longer - 1] == b"\r":
        return longer
    body = between[:shorter]
    if body.replace(b"\r\n", b"").find(b"\n") >= 0:
        return longer
    return shorter


def _note_record(name: str, rel: str, offset: int, data: bytes, note: dict[str, Any],
                 envelope: bytes) -> dict[str, Any]:
    uidl = note.get("uidl")
    uidl = uidl if isinstance(uidl, str) else None
    extra: dict[str, Any] = {}
    if uidl is not None:
        extra["flags_known"] = False
        extra["internaldate_source"] = note.get("internaldate_source")
    if uidl is not None or int(note.get("uidvalidity") or 0) == POP3_UIDVALIDITY:
        extra["sha256_norm"] = note.get("sha256_norm") or norm_hash(data)
    extra.update(summarize(data[:HEAD_BYTES]))
    key = message_key(int(note.get("uidvalidity") or 0), int(note.get("uid") or 0), uidl)
    return msg_record(name, key, path=rel, size=len(data), sha256=note["sha256"],
                      internaldate=note.get("internaldate") or _from_line_date(envelope),
                      flags=note.get("flags") or [], keywords=note.get("keywords") or [],
                      offset=offset, length=int(note["length"]),
                      rfc822_size=_size_or_none(note.get("rfc822_size")), **extra,
                      reindexed=True)


def _size_or_none(value: Any) -> Optional[int]:
    return value if type(value) is int and value >= 0 else None


def _parsed_record(name: str, rel: str, offset: int, length: int, data: bytes, sha: str,
                   rank: int, envelope: bytes) -> dict[str, Any]:
    key = message_key(POP3_UIDVALIDITY, uid_for_uidl(f"reindexed:{sha}:{rank}"))
    summary: dict[str, Any] = summarize(data[:HEAD_BYTES])
    return msg_record(name, key, path=rel, size=len(data), sha256=sha,
                      internaldate=_from_line_date(envelope), flags=(), keywords=(),
                      offset=offset, length=length, flags_known=False,
                      sha256_norm=norm_hash(data), **summary, reindexed=True)


def parse_file(path: Path, rel: str, name: str, notes_at: dict[tuple[str, int], dict[str, Any]],
               skipped: list[str]) -> list[dict[str, Any]]:
    """The ``msg`` (and ``gone``) records of one mbox file."""
    out: list[dict[str, Any]] = []
    size = path.stat().st_size
    if size == 0:
        return out
    ranks: dict[str, int] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0
        while pos < size:
            if mm[pos : pos + 5] != b"From ":
                skipped.append(_("{rel} @{pos} (no 'From ' line: the rest of the file is not "
                                 "an archiver mbox)").format(rel=rel, pos=pos))
                break
            eol = mm.find(b"\n", pos)
            if eol < 0:
                skipped.append(_("{rel} @{pos} (a cut 'From ' line at the end)").format(
                                 rel=rel, pos=pos))
                break
            envelope = mm[pos:eol]
            offset = eol + 1
            note = notes_at.get((rel, offset))
            rec: Optional[dict[str, Any]] = None
            if note is not None:
                rec, end = _from_note(mm, size, name, rel, offset, note, envelope)
                if rec is not None:
                    out.append(rec)
                    if note.get("gone"):
                        key = message_key(rec.get("uidvalidity", 0), rec.get("uid", 0),
                                          rec.get("uidl"))
                        out.append(gone_record(name, key, "expunged", reindexed=True))
                    pos = end
                    continue
            found = mm.find(b"\n\nFrom ", offset)
            nxt = found + 2 if found >= 0 else size
            between = mm[offset:nxt]
            lengths = candidates(between)
            if not lengths:
                skipped.append(_("{rel} @{offset} (a message without its separator: cut "
                                 "short?)").format(rel=rel, offset=offset))
                pos = nxt
                continue
            length = choose(between, lengths)
            if note is not None and note.get("length") in lengths:
                length = int(note["length"])
            data = unquote(between[:length])
            sha = hashlib.sha256(data).hexdigest()
            rank = ranks.get(sha, 0)
            ranks[sha] = rank + 1
            out.append(_parsed_record(name, rel, offset, length, data, sha, rank, envelope))
            pos = nxt
    return out


def _from_note(mm: mmap.mmap, size: int, name: str, rel: str, offset: int, note: dict[str, Any],
               envelope: bytes) -> tuple[Optional[dict[str, Any]], int]:
    """The snapshot's record of the message at ``offset``, if the bytes there are still its."""
    length = note.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0 \
            or offset + length > size:
        return None, 0
    quoted = mm[offset : offset + length]
    data = unquote(quoted)
    if hashlib.sha256(data).hexdigest() != note.get("sha256"):
        return None, 0
    tail = tail_for(quoted)
    end = offset + length + len(tail)
    if mm[offset + length : end] != tail or (end < size and mm[end : end + 5] != b"From "):
        return None, 0
    try:
        return _note_record(name, rel, offset, data, note, envelope), end
    except (KeyError, TypeError, ValueError):
        return None, 0


def _parent_file(dest: Path, rel: str, sbds: set[str],
                 by_dir: dict[str, dict[str, Any]]) -> bool:
    """An empty file beside its ``.sbd`` that the snapshot does not name: the file
    archiver writes for a parent only implied by its children (MboxStore.prepare_folder),
    not a folder -- recording it would make a restore create a folder the server
    never had.  (Without a snapshot an empty selectable parent is skipped too.)"""
    return (rel + SBD in sbds and rel not in by_dir
            and dest.joinpath(*rel.split("/")).stat().st_size == 0)


def write_mbox_records(archive: Archive, snap: Optional[dict[str, Any]],
                       emit: Callable[[list[dict[str, Any]]], None],
                       report: Any) -> None:
    """Folder, ``msg``, ``gone`` and ``link`` records of an mbox archive, through ``emit``."""
    dest = archive.dest
    by_dir = folders_by_dir(snap)
    notes_at: dict[tuple[str, int], dict[str, Any]] = {}
    if snap is not None:
        for note in snap.get("messages") or []:
            if isinstance(note, dict) and isinstance(note.get("path"), str) \
                    and isinstance(note.get("offset"), int):
                notes_at[(note["path"], note["offset"])] = note
    files, sbds = mbox_tree(dest, by_dir)
    files = [rel for rel in files if not _parent_file(dest, rel, sbds, by_dir)]
    names, taken = name_folders(files, by_dir, folder_name)
    # \Noselect folders (a .sbd directory without its own file) only from the snapshot.
    for rel, frec in by_dir.items():
        if rel not in names and isinstance(frec.get("folder"), str) and rel + SBD in sbds:
            names[rel] = frec["folder"]
            taken.add(frec["folder"])
    report.folders += emit_folders(names, by_dir, emit)
    for rel in files:
        recs = parse_file(dest.joinpath(*rel.split("/")), rel, names[rel], notes_at,
                          report.skipped)
        report.messages += sum(1 for r in recs if r["type"] == "msg")
        emit(recs)
    if snap is not None:
        emit_links(snap, taken, emit)
