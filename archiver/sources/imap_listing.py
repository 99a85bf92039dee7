"""The listing of a folder (UID, FLAGS, INTERNALDATE, RFC822.SIZE), read lean.

A 200,000-message folder is listed in UID ranges (archiver/sources/imap.py
``ImapSource.list_messages``); each range's answer is read here.  The usual
answer shape goes through one regex instead of imapclient's general
tokenizer (which took most of the listing's time), flag sets and time zones
are shared between messages (a tzinfo object per message was over half of a
listed message's memory); any other shape goes to imapclient's parser.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional

from imapclient.datetime_util import parse_to_datetime
from imapclient.response_parser import parse_fetch_response

from archiver.sources.base import MessageMeta, split_flags


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


# The usual listing answer (Dovecot, Courier, Cyrus, Gmail): read with one regex;
# any other shape goes to imapclient's parser.
_LISTING_LINE = re.compile(rb'\d+ \(UID (\d+) FLAGS \(([^()"]*)\) INTERNALDATE "([^"]+)" '
                           rb"RFC822\.SIZE (\d+)\)")


_DATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), 1)}
_ZONES: dict[bytes, tzinfo] = {}


def _internaldate(raw: bytes) -> Optional[datetime]:
    """An INTERNALDATE as an aware datetime, its zone shared by every message with that
    offset (imapclient made a tzinfo object per message: over half of a listing's memory).

    Same instant and offset as imapclient's ``parse_to_datetime`` (which reads any
    other spelling); None when neither can read it.
    """
    found = _DATE.fullmatch(raw)
    month = _MONTHS.get(found.group(2).lower()) if found else None
    if found is None or month is None:
        try:
            other: datetime = parse_to_datetime(raw, normalise=False)
        except ValueError:
            return None
        return other
    zone_key = found.group(7) + found.group(8) + found.group(9)
    zone = _ZONES.get(zone_key)
    if zone is None:
        minutes = int(found.group(8)) * 60 + int(found.group(9))
        zone = timezone(timedelta(minutes=-minutes if found.group(7) == b"-" else minutes))
        if len(_ZONES) < 1000:
            _ZONES[zone_key] = zone
    try:
        return datetime(int(found.group(3)), month, int(found.group(1)), int(found.group(4)),
                        int(found.group(5)), int(found.group(6)), tzinfo=zone)
    except ValueError:
        return None


def parse_listing(data: list[Any], out: list[MessageMeta],
                  flag_cache: dict[bytes, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """The untagged answers of ``UID FETCH … (UID FLAGS INTERNALDATE RFC822.SIZE)``,
    appended to ``out``.

    The common answer shape is parsed with a regex (imapclient's general
    tokenizer took most of the listing's time); flag sets repeat, so each
    distinct one is split once (``flag_cache``) and its tuples shared.
    """
    rest: list[Any] = []
    for item in data:
        found = _LISTING_LINE.fullmatch(item) if isinstance(item, bytes) else None
        if found is None:
            rest.append(item)
            continue
        raw_flags = found.group(2)
        split = flag_cache.get(raw_flags)
        if split is None:
            split = flag_cache[raw_flags] = split_flags(
                [_as_text(f) for f in raw_flags.split()])
        idate = _internaldate(found.group(3))
        out.append(MessageMeta(uid=int(found.group(1)), flags=split[0], keywords=split[1],
                               internaldate=idate, size=int(found.group(4))))
    if not rest:
        return
    parsed: dict[int, Any] = parse_fetch_response(rest, False, True)
    for uid, fields in parsed.items():
        flags = tuple(_as_text(f) for f in fields.get(b"FLAGS", ()))
        system, keywords = split_flags(flags)
        idate = fields.get(b"INTERNALDATE")
        out.append(MessageMeta(
            uid=int(uid), flags=system, keywords=keywords,
            internaldate=idate if isinstance(idate, datetime) else None,
            size=int(fields.get(b"RFC822.SIZE", 0) or 0),
        ))


def sorted_unique(out: list[MessageMeta]) -> list[MessageMeta]:
    """A listing in UID order, each UID once: a lax server may repeat a message, and
    ``n:*`` always answers the highest UID, even below n."""
    out.sort(key=lambda m: m.uid)
    return [m for i, m in enumerate(out) if i == 0 or m.uid != out[i - 1].uid]


_SIZE_LINE = re.compile(rb"\d+ \(UID (\d+) RFC822\.SIZE (\d+)\)")


def parse_sizes(data: list[Any]) -> dict[int, int]:
    """The untagged answers of ``UID FETCH … (UID RFC822.SIZE)``: UID -> size.

    The usual shape through one regex (a first run's space check lists every
    folder this way); any other shape through imapclient's parser.
    """
    out: dict[int, int] = {}
    rest: list[Any] = []
    for item in data:
        found = _SIZE_LINE.fullmatch(item) if isinstance(item, bytes) else None
        if found is None:
            rest.append(item)
        else:
            out[int(found.group(1))] = int(found.group(2))
    if rest:
        parsed: dict[int, Any] = parse_fetch_response(rest, False, True)
        for uid, fields in parsed.items():
            out[int(uid)] = int(fields.get(b"RFC822.SIZE", 0) or 0)
    return out
