"""The batch report: one row per account, from the state files and the archives.

A row's *status* (and the run's timings, peak memory, error) comes from the
state file; its *contents* -- folders, messages, bytes -- are always read
from the account's archive itself (``archive.json`` and the index; no
server), so a report rebuilt at any time with ``archiver batch-report ROOT``
says what is really on disk, and the merge of N shards' reports is the same
as one unsharded run's (rows sorted by user; same statuses, counts, bytes).

Files: ``ROOT/.batch/reports/<UTC time>[-shard-K-of-N].csv`` and ``.json``
per run; the JSON holds the counts, totals and rows (the CSV the rows).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from archiver.batch.layout import Layout
from archiver.batch.state import STATUSES, Record, merged
from archiver.durable import atomic_write
from archiver.i18n import _, ngettext
from archiver.units import human_size

SLOWEST = 5
PROBLEMS_SHOWN = 20


@dataclass
class Figures:
    """What an archive holds, by its index."""

    folders: int = 0
    messages: int = 0
    bytes: int = 0


def archive_figures(dest: Path) -> Figures:
    """Folders, messages and bytes of the archive at ``dest`` (zeros when there is none)."""
    from archiver.errors import ArchiverError
    from archiver.reading import open_archive

    if not (dest / ".archiver" / "archive.json").is_file():
        return Figures()
    try:
        state = open_archive(dest).state()
    except (ArchiverError, OSError):
        return Figures()
    out = Figures()
    for folder in state.folders.values():
        if not folder.parent_only:
            out.folders += 1
        for m in folder.messages.values():
            if m.counted:
                out.messages += 1
                out.bytes += m.size
    return out


@dataclass
class Row:
    """One account in a report (the CSV's columns, in order)."""

    user: str
    status: str
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    new: int = 0
    new_bytes: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    attempts: int = 0
    exit: Optional[int] = None
    reason: str = ""
    error: str = ""
    start: str = ""
    end: str = ""
    dest: str = ""
    note: str = ""
    manifest: str = ""

    @classmethod
    def from_record(cls, rec: Record, layout: Layout) -> Row:
        dest = str(rec.get("dest", ""))
        figures = archive_figures(layout.root / dest) if dest else Figures()
        manifest = layout.manifest(rec["user"])
        return cls(
            user=rec["user"], status=str(rec["status"]),
            folders=figures.folders, messages=figures.messages, bytes=figures.bytes,
            new=int(rec.get("new") or 0), new_bytes=int(rec.get("new_bytes") or 0),
            seconds=float(rec.get("seconds") or 0.0),
            peak_rss_mb=round(int(rec.get("peak_rss_kb") or 0) / 1024, 1),
            attempts=int(rec.get("attempts") or 0), exit=rec.get("exit"),
            reason=str(rec.get("reason") or ""), error=str(rec.get("error") or ""),
            start=str(rec.get("start") or ""), end=str(rec.get("end") or ""),
            dest=dest, note=str(rec.get("note") or ""),
            manifest=(str(manifest.relative_to(layout.root))
                      if rec["status"] == "ok" and manifest.exists() else ""))


@dataclass
class Report:
    rows: list[Row]
    shard: Optional[str] = None  # "K/N" of a run's report; None for a merged one
    files: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for row in self.rows:
            out[row.status] = out.get(row.status, 0) + 1
        return out

    def totals(self) -> dict[str, int]:
        return {"folders": sum(r.folders for r in self.rows),
                "messages": sum(r.messages for r in self.rows),
                "bytes": sum(r.bytes for r in self.rows)}

    def slowest(self) -> list[Row]:
        ran = [r for r in self.rows if r.seconds > 0]
        return sorted(ran, key=lambda r: -r.seconds)[:SLOWEST]

    @property
    def all_ok(self) -> bool:
        return all(r.status == "ok" for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "accounts": len(self.rows), "counts": self.counts(),
                "totals": self.totals(), "slowest": [r.user for r in self.slowest()],
                "rows": [asdict(r) for r in self.rows], "files": self.files}

    def csv_text(self) -> str:
        out = io.StringIO()
        names = list(Row.__dataclass_fields__)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in asdict(row).values()])
        return out.getvalue()

    def write(self, layout: Layout, tag: str, when: Optional[datetime] = None) -> list[Path]:
        """The run's report files ``reports/<time>[-<tag>].csv`` and ``.json``."""
        stamp = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        base = layout.reports_dir / (stamp if tag == "all" else f"{stamp}-{tag}")
        paths = [base.with_suffix(".csv"), base.with_suffix(".json")]
        self.files = [str(p) for p in paths]
        layout.reports_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(paths[0], self.csv_text().encode("utf-8"))
        atomic_write(paths[1], (json.dumps(self.as_dict(), ensure_ascii=False, indent=1)
                                + "\n").encode("utf-8"))
        return paths

    def table(self) -> list[str]:
        """The readable summary for stderr: counts, totals, slowest, the problems."""
        c, t = self.counts(), self.totals()
        lines = [_("accounts: {n} ({ok} ok, {partial} partial, {failed} failed, {pending} "
                   "not done)").format(n=len(self.rows), ok=c["ok"], partial=c["partial"],
                                       failed=c["failed"],
                                       pending=c["pending"] + c["running"])]
        lines.append(ngettext("archived: {n} message, {size} in {folders} folders",
                              "archived: {n} messages, {size} in {folders} folders",
                              t["messages"]).format(n=t["messages"], size=human_size(t["bytes"]),
                                                    folders=t["folders"]))
        slow = self.slowest()
        if slow:
            lines.append(_("slowest: {accounts}").format(accounts=", ".join(
                f"{r.user} {r.seconds:.1f} s" for r in slow)))
        problems = [r for r in self.rows if r.status in ("partial", "failed")]
        for row in problems[:PROBLEMS_SHOWN]:
            lines.append(_("  {status}: {user}: {error}").format(
                status=row.status, user=row.user, error=row.error or "-"))
        if len(problems) > PROBLEMS_SHOWN:
            lines.append(_("  ... and {n} more (see the report)").format(
                n=len(problems) - PROBLEMS_SHOWN))
        return lines


def rows_for(records: dict[str, Record], layout: Layout) -> list[Row]:
    return [Row.from_record(records[u], layout) for u in sorted(records)]


def rebuild(root: Path) -> Report:
    """``archiver batch-report``: every shard's state merged, contents from the archives."""
    layout = Layout(root)
    return Report(rows_for(merged(layout.state_dir), layout))
