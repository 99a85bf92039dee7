"""``restore --verify``: is every archived message on the target, with its flags?

Independent of the journal on purpose: it looks at what the target holds
now, folder by folder, and matches it with the archive the same way the
deduplication does (:mod:`archiver.restore.match`), and then (``content``,
what ``restore --verify`` asks for) downloads each match and compares its
normal form (:mod:`archiver.restore.normal`) with the archived message's.
``migrate``'s closing check is the quick one: identity, the sizes the
server may report, INTERNALDATE and flags, bodies only where two archived
messages could be the same target message -- downloading every body again
would double a migration's time.  A message whose bytes the server rewrote
(line ends, NUL, a final CRLF) is "present, altered by the server":
counted and listed, not a problem.  Messages on the target that are not in
the archive (new mail, other uploads) are counted, not errors.  Keywords
are compared only where the target can store them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archiver.i18n import _
from archiver.names import encode_mutf7
from archiver.restore.mapping import wanted
from archiver.restore.match import match
from archiver.restore.upload import Restore


@dataclass
class TargetReport:
    folders: int = 0
    checked: int = 0
    present: int = 0  # ``altered`` included
    missing: list[str] = field(default_factory=list)
    flags_differ: list[str] = field(default_factory=list)
    extra: int = 0  # on the target, not in the archive
    # present, but the server rewrote the bytes (line ends, NUL, a final CRLF): not a problem
    altered: int = 0
    altered_messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.flags_differ

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "folders": self.folders, "checked": self.checked,
                "present": self.present, "missing": self.missing,
                "flags_differ": self.flags_differ, "extra": self.extra,
                "altered": self.altered, "altered_messages": self.altered_messages}


def verify_target(restore: Restore, limit: int = 50, content: bool = True) -> TargetReport:
    """Compare every selected archived folder with its target folder (``content``: the text
    of every message too)."""
    report = TargetReport()
    target = restore.target
    mapper = restore.mapper()
    listing = {f.raw_name for f in target.list_folders()}
    missing_total = flags_total = 0
    for entry in restore.selected_folders():
        messages, _deleted = wanted(entry, restore.options.include_deleted)
        if entry.parent_only and not messages:
            continue
        report.folders += 1
        report.checked += len(messages)
        comps = mapper.target(entry.name)
        raw = encode_mutf7(mapper.server_name(comps))
        if raw not in listing and comps[0].upper() != "INBOX":
            missing_total += len(messages)
            if len(report.missing) < limit:
                report.missing.append(_("{name}: the folder '{target}' is not on the target "
                                        "({n} messages)").format(
                                        name=entry.name, target='/'.join(comps), n=len(messages)))
            continue
        selected = target.select(raw)
        on_target = target.scan(selected.exists)
        cands = [restore.candidate(m) for m in messages]
        found = match(cands, on_target, target.body_profiles, check_all=content)
        report.extra += len(on_target) - len(found.pairs)
        for i, m in enumerate(messages):
            pair = found.pairs.get(i)
            what = f"{entry.name}: UID {m.uid}" + (f" {m.message_id}" if m.message_id else "")
            if pair is None:
                missing_total += 1
                if len(report.missing) < limit:
                    report.missing.append(
                        (_("{what} is not on the target (one with its identity and size is, "
                           "but its text differs)") if i in found.differs else
                         _("{what} is not on the target")).format(what=what))
                continue
            report.present += 1
            t = pair.target
            if pair.altered:
                report.altered += 1
                if len(report.altered_messages) < limit:
                    report.altered_messages.append(
                        _("{what}: present, altered by the server ({size} bytes archived, "
                          "{target_size} on the target)").format(
                          what=what, size=m.size, target_size=t.size))
            want_kw = set(m.keywords) if selected.keywords_allowed else set()
            have_kw = set(t.keywords) if selected.keywords_allowed else set()
            if set(m.flags) != set(t.flags) or want_kw != have_kw:
                flags_total += 1
                if len(report.flags_differ) < limit:
                    report.flags_differ.append(
                        _("{what}: flags {target_flags} on the target, {flags} archived").format(
                          what=what,
                          target_flags=' '.join(sorted(t.flags + t.keywords)) or _("(none)"),
                          flags=' '.join(sorted(m.flags + m.keywords)) or _("(none)")))
    if missing_total > len(report.missing):
        report.missing.append(_("... {n} more missing").format(
                                n=missing_total - len(report.missing)))
    if report.altered > len(report.altered_messages):
        report.altered_messages.append(_("... {n} more").format(
                                         n=report.altered - len(report.altered_messages)))
    if flags_total > len(report.flags_differ):
        report.flags_differ.append(_("... {n} more").format(
                                     n=flags_total - len(report.flags_differ)))
    return report
