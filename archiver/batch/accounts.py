"""The ACCOUNTS file of ``archiver batch``: CSV or TOML, checked before anything runs.

CSV: a header row with ``user`` (required) and any of ``source``,
``password_file``, ``dest``, ``format``, ``note``; UTF-8 with or without a
byte-order mark (what Excel writes); blank lines and lines whose first cell
starts with ``#`` are skipped.  TOML: ``[defaults]`` (``source``,
``password_file``, ``format``, ``note``) and one ``[[account]]`` table per
account with the same names.

Every mistake is found here, before the first account starts, and reported
as one line naming ``FILE:LINE``, the problem and the fix (exit 2): a staff
member with a thousand rows should not learn about row 800's typo after
seven hours.

``dest`` is a path *relative to ROOT* (``staff/alice``): an archive outside
ROOT, or inside ``ROOT/.batch``, or shared by two rows, is refused, so the
batch's reports and manifests always describe everything under ROOT.
``password_file`` is relative to the ACCOUNTS file's directory.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from archiver.batch.layout import BATCH_DIR, Layout, user_file_name
from archiver.errors import UsageError
from archiver.i18n import _
from archiver.names import fold_key

COLUMNS = ("user", "source", "password_file", "dest", "format", "note")
DEFAULT_KEYS = ("source", "password_file", "format", "note")
FORMATS = ("maildir", "mbox")


@dataclass(frozen=True)
class Account:
    """One row: whose mailbox, from where, into which directory."""

    user: str
    source: str
    where: str  # "FILE:LINE" for messages
    password_file: Optional[Path] = None
    dest: Optional[str] = None  # relative to ROOT; None: ROOT/<user, escaped>
    format: Optional[str] = None
    note: str = ""

    def dest_path(self, layout: Layout) -> Path:
        return layout.root / self.dest if self.dest else layout.default_dest(self.user)

    def dest_name(self) -> str:
        """The account directory relative to ROOT (``/`` separated), as reports show it."""
        return self.dest or user_file_name(self.user)


def load_accounts(path: Path, default_source: Optional[str] = None) -> list[Account]:
    """Read and check ACCOUNTS; raises :class:`UsageError` naming FILE:LINE on a mistake."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(_("cannot read the accounts file {file}: {reason}").format(
            file=path, reason=exc.strerror)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UsageError(_("{file}:{line}: not UTF-8 text: save the file as UTF-8 (CSV UTF-8 "
                           "in Excel)").format(file=path, line=line)) from None
    rows = _toml_rows(path, text) if path.suffix.lower() == ".toml" else _csv_rows(path, text)
    return _check(path, rows, default_source)


# ---------------------------------------------------------------- CSV

def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: Optional[list[str]] = None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                _check_header(path, line, header)
                continue
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                raise UsageError(_("{file}:{line}: {n} cells but the header has {columns} "
                                   "columns: quote a value that contains a comma").format(
                    file=path, line=line, n=len(cells), columns=len(header)))
            rows.append((line, {name: (cells[i].strip() if i < len(cells) else "")
                                for i, name in enumerate(header)}))
    except csv.Error as exc:
        raise UsageError(_("{file}:{line}: not valid CSV ({reason}): check the quotes on "
                           "that line").format(file=path, line=reader.line_num,
                                               reason=exc)) from None
    if header is None:
        raise UsageError(_("{file} is empty: write a header line 'user,source' and one line "
                           "per account").format(file=path))
    return rows


def _check_header(path: Path, line: int, header: list[str]) -> None:
    if "user" not in header:
        raise UsageError(_("{file}:{line}: no 'user' column: the first line names the "
                           "columns, e.g. 'user,source,note'").format(file=path, line=line))
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise UsageError(_("{file}:{line}: unknown column '{column}': the columns are "
                           "{columns}").format(file=path, line=line, column=unknown[0],
                                               columns=", ".join(COLUMNS)))
    seen = set()
    for c in header:
        if c in seen:
            raise UsageError(_("{file}:{line}: the column '{column}' appears twice: keep "
                               "one").format(file=path, line=line, column=c))
        seen.add(c)


# ---------------------------------------------------------------- TOML

def _toml_rows(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.9/3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(_("{file}: not valid TOML ({reason})").format(
            file=path, reason=exc)) from None
    lines = [i + 1 for i, ln in enumerate(text.splitlines())
             if re.match(r"\s*\[\[\s*account\s*\]\]", ln)]
    defaults_line = next((i + 1 for i, ln in enumerate(text.splitlines())
                          if re.match(r"\s*\[\s*defaults\s*\]", ln)), 1)
    for key in data:
        if key not in ("defaults", "account"):
            raise UsageError(_("{file}: unknown table or key '{key}': the file holds "
                               "[defaults] and [[account]] tables").format(file=path, key=key))
    defaults = _strings(path, defaults_line, data.get("defaults", {}), DEFAULT_KEYS)
    accounts = data.get("account", [])
    if not isinstance(accounts, list):
        raise UsageError(_("{file}: 'account' must be [[account]] tables, one per "
                           "account").format(file=path))
    rows = []
    for i, table in enumerate(accounts):
        line = lines[i] if i < len(lines) else 0
        row = dict(defaults)
        row.update(_strings(path, line, table, COLUMNS))
        rows.append((line, row))
    return rows


def _strings(path: Path, line: int, table: Any, allowed: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(table, dict):
        raise UsageError(_("{file}:{line}: expected a table of names and values").format(
            file=path, line=line))
    out = {}
    for key, value in table.items():
        if key not in allowed:
            raise UsageError(_("{file}:{line}: unknown key '{column}': allowed here are "
                               "{columns}").format(file=path, line=line, column=key,
                                                   columns=", ".join(allowed)))
        if not isinstance(value, str):
            raise UsageError(_("{file}:{line}: {column} must be a string in quotes").format(
                file=path, line=line, column=key))
        out[key] = value.strip()
    return out


# ---------------------------------------------------------------- checks

def _check(path: Path, rows: list[tuple[int, dict[str, str]]],
           default_source: Optional[str]) -> list[Account]:
    from archiver.account import parse_endpoint

    seen: dict[str, int] = {}
    dests: dict[str, int] = {}
    out = []
    base = path.parent
    for line, row in rows:
        where = f"{path}:{line}"
        user = row.get("user", "")
        if not user:
            raise UsageError(_("{where}: no user: every account line needs its user "
                               "name").format(where=where))
        if user in seen:
            raise UsageError(_("{where}: user '{user}' is already on line {line}: list each "
                               "account once").format(where=where, user=user, line=seen[user]))
        seen[user] = line
        source = row.get("source") or default_source or ""
        if not source:
            raise UsageError(_("{where}: no source for user '{user}': add a source column, "
                               "a [defaults] source, or --source URL").format(
                where=where, user=user))
        try:
            parse_endpoint(source, user=user)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        fmt = row.get("format") or None
        if fmt is not None and fmt not in FORMATS:
            raise UsageError(_("{where}: format '{value}' is not maildir or mbox").format(
                where=where, value=fmt))
        dest = _dest(where, row.get("dest") or None)
        key = fold_key(dest or user_file_name(user))  # one directory on macOS/Windows
        if key in dests:
            raise UsageError(_("{where}: the directory '{dest}' is already used on line "
                               "{line}: give each account its own dest").format(
                where=where, dest=dest or user_file_name(user), line=dests[key]))
        dests[key] = line
        pw = row.get("password_file") or None
        pw_path = None
        if pw is not None:
            pw_path = Path(pw).expanduser()
            if not pw_path.is_absolute():
                pw_path = base / pw_path
            if not pw_path.is_file():
                raise UsageError(_("{where}: password file {file} not found (a relative path "
                                   "is read from the accounts file's directory)").format(
                    where=where, file=pw_path))
        out.append(Account(user=user, source=source, where=where, password_file=pw_path,
                           dest=dest, format=fmt, note=row.get("note", "")))
    _check_nesting(path, dests)
    if not out:
        raise UsageError(_("{file} lists no accounts: add one line per account under the "
                           "header").format(file=path))
    return out


def _check_nesting(path: Path, dests: dict[str, int]) -> None:
    """No account directory inside another's (a backup refuses a non-empty new DEST)."""
    for inner, line in dests.items():
        parts = inner.split("/")
        for i in range(1, len(parts)):
            outer = "/".join(parts[:i])
            if outer in dests:
                raise UsageError(_("{file}:{line}: the directory '{inner}' lies inside "
                                   "'{outer}' (line {other}): give each account a directory "
                                   "of its own").format(file=path, line=line, inner=inner,
                                                        outer=outer, other=dests[outer]))


def _dest(where: str, dest: Optional[str]) -> Optional[str]:
    """A row's ``dest``, relative to ROOT and inside it (``None``: the default)."""
    if dest is None:
        return None
    pure = PurePosixPath(dest.replace("\\", "/"))
    parts = pure.parts
    if (pure.is_absolute() or re.match(r"^[A-Za-z]:", dest) or not parts
            or any(p in ("..", ".") for p in parts) or parts[0] == BATCH_DIR):
        raise UsageError(_("{where}: dest '{dest}' must be a directory inside ROOT, written "
                           "relative to it (e.g. staff/alice), not in .batch").format(
            where=where, dest=dest))
    return "/".join(parts)
