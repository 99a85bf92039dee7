"""The audit manifest of one account: ``sha256sum -c`` checks it, no archiver needed.

``ROOT/.batch/manifests/<user>.sha256`` lists every file of the account's
archive with its SHA-256, in GNU coreutils' format (``HASH  PATH``, paths
relative to the account directory), written after the account's backup
ended ``ok``.  An auditor checks an account with::

    cd ROOT/alice && sha256sum -c --quiet ../.batch/manifests/alice.sha256

"Every file of the archive" means the message files (each Maildir message,
or each folder's mbox file), the ``dovecot-keywords`` files, and the two
files that make the archive self-describing, ``.archiver/archive.json`` and
``.archiver/index.jsonl.zst``.  Left out are what changes without the mail
changing: ``.archiver/lock``, the ``folders.json`` cache, anything else in
``.archiver/`` (spools of an interrupted run) and Maildir ``tmp/``.

A name holding a backslash or a newline is written the way GNU ``sha256sum``
writes it (a leading ``\\`` and the two escaped), so even a hostile folder
name cannot forge a line.  Written with :func:`archiver.durable.atomic_write`:
a manifest is whole or absent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from archiver.archive import META_DIR
from archiver.durable import atomic_write
from archiver.index import INDEX_NAME

KEPT_META = ("archive.json", INDEX_NAME)
CHUNK = 1 << 20


def archive_files(dest: Path) -> Iterator[str]:
    """The files a manifest covers, relative to ``dest`` ('/' separated), sorted."""
    found: list[str] = []
    for name in KEPT_META:
        if (dest / META_DIR / name).is_file():
            found.append(f"{META_DIR}/{name}")
    for top, dirs, files in os.walk(dest):
        rel = Path(top).relative_to(dest)
        if rel.parts[:1] == (META_DIR,):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not (d == "tmp" and _maildir(Path(top))))
        for f in files:
            found.append((rel / f).as_posix() if rel.parts else f)
    return iter(sorted(found))


def _maildir(folder: Path) -> bool:
    return (folder / "cur").is_dir()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_line(digest: str, rel: str) -> str:
    """One line as GNU ``sha256sum`` writes it (escaped when the name needs it)."""
    if "\\" in rel or "\n" in rel or "\r" in rel:
        rel = rel.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {rel}\n"
    return f"{digest}  {rel}\n"


def write_manifest(dest: Path, target: Path) -> tuple[int, int]:
    """Hash every file of the archive at ``dest`` into ``target``; (files, bytes)."""
    lines = []
    total = 0
    for rel in archive_files(dest):
        path = dest / rel
        total += path.stat().st_size
        lines.append(manifest_line(sha256_file(path), rel))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, "".join(lines).encode("utf-8", errors="surrogateescape"))
    return len(lines), total
