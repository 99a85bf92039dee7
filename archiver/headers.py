"""Decode the few header fields the index keeps (Date, From, To, Subject, Message-ID).

Pure functions over the raw header bytes.  Japanese mail is the norm here:
RFC 2047 words in ISO-2022-JP, Shift_JIS or UTF-8, and raw 8-bit headers in
any of those.  Nothing here may raise on malformed input: a broken header
degrades to the best readable text, because the index is for finding mail,
and the message bytes themselves are kept exactly.
"""

from __future__ import annotations

import email.header
import email.utils
import re
from datetime import datetime
from typing import Optional

WANTED = {b"date": "date", b"from": "from", b"to": "to", b"subject": "subject",
          b"message-id": "message_id"}
MAX_HEADER_SCAN = 256 * 1024
MAX_FIELD_CHARS = 1000

# Charsets that Japanese mailers mislabel; decode with the superset.
_CHARSET_ALIASES = {
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-2022-jp-2": "iso2022_jp_2",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms932": "cp932",
    "windows-31j": "cp932",
    "euc-jp": "euc_jis_2004",
    "x-euc-jp": "euc_jis_2004",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "unknown-8bit": "utf-8",
    "us-ascii": "utf-8",
}
_RAW_FALLBACKS = ("utf-8", "iso2022_jp_ext", "cp932", "euc_jis_2004")


_LINE_END = re.compile(rb"\r*\n|\r")  # a run of CRs then LF, a lone LF, or a lone CR


def header_block(message: bytes) -> bytes:
    """The header part of a raw message (up to the first empty line, bounded)."""
    head = message[:MAX_HEADER_SCAN]
    if _LINE_END.match(head):
        return b""  # empty header block
    # The first line end followed at once by another: an empty line.  A run of CRs
    # before LF is ONE line end (Courier serves a CRLF Maildir file as CR CR LF), so
    # looking for b"\r\r" would cut the header after its first line.
    previous = -1
    for end in _LINE_END.finditer(head):
        if end.start() == previous:
            return head[: end.start()]
        previous = end.end()
    return head


def decode_bytes(raw: bytes, charset: Optional[str] = None) -> str:
    """Bytes in an unknown or doubtful charset -> text, never raising."""
    if charset:
        codec = _CHARSET_ALIASES.get(charset.lower().strip(), charset.lower().strip())
        try:
            return raw.decode(codec)
        except (LookupError, UnicodeDecodeError):
            pass
    if b"\x1b$" in raw or b"\x1b(" in raw:
        try:
            return raw.decode("iso2022_jp_ext")
        except UnicodeDecodeError:
            pass
    for codec in _RAW_FALLBACKS:
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def decode_value(raw: bytes) -> str:
    """One unfolded header value (raw bytes) -> readable text."""
    unfolded = re.sub(rb"\r?\n[ \t]+|\r[ \t]+", b" ", raw).strip()
    text = decode_bytes(unfolded)
    if "=?" not in text:
        return _clean(text)
    try:
        parts = email.header.decode_header(text)
    except Exception:  # noqa: BLE001 - the stdlib raises assorted errors on junk
        return _clean(text)
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return _clean("".join(out))


def _clean(text: str) -> str:
    text = "".join(ch if ch >= " " or ch == "\t" else " " for ch in text)
    text = text.replace("\x7f", " ").strip()
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + "…"
    return text


def raw_fields(head: bytes) -> dict[str, bytes]:
    """The first occurrence of each wanted field, value still raw (folding kept)."""
    found: dict[str, bytes] = {}
    lines = _LINE_END.split(head)
    current: Optional[str] = None
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                found[current] += b"\n" + line
            continue
        current = None
        colon = line.find(b":")
        if colon <= 0:
            continue
        key = WANTED.get(line[:colon].strip().lower())
        if key is not None and key not in found:
            found[key] = line[colon + 1 :]
            current = key
    return found


def iso_date(value: str) -> Optional[str]:
    """RFC 5322 date text -> ISO 8601 with offset, or None if it does not parse."""
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    try:
        return dt.isoformat()
    except ValueError:
        return None


def summarize(message: bytes) -> dict[str, Optional[str]]:
    """Decoded ``date``/``from``/``to``/``subject``/``message_id`` for the index.

    ``date`` is ISO 8601 when the Date header parses, else the decoded text.
    """
    fields = raw_fields(header_block(message))
    out: dict[str, Optional[str]] = {}
    for key in ("date", "from", "to", "subject", "message_id"):
        raw = fields.get(key)
        if raw is None:
            out[key] = None
            continue
        text = decode_value(raw)
        if key == "date":
            out[key] = iso_date(text) or text
        elif key == "message_id":
            out[key] = text.strip() or None
        else:
            out[key] = text
    return out


def date_from_headers(message: bytes) -> tuple[Optional[datetime], Optional[str]]:
    """A date for a message without INTERNALDATE (POP3): Date, else the first Received.

    Returns (date, source) with source ``"date"``, ``"received"`` or None.
    """
    head = header_block(message)
    fields = raw_fields(head)
    raw = fields.get("date")
    if raw is not None:
        parsed = parse_iso(iso_date(decode_value(raw)))
        if parsed is not None:
            return parsed, "date"
    match = re.search(rb"(?im)^received:(?:.|\r?\n[ \t])*?;\s*((?:.|\r?\n[ \t])+)", head)
    if match:
        text = re.sub(r"\s+", " ", match.group(1).decode("latin-1")).strip()
        parsed = parse_iso(iso_date(text))
        if parsed is not None:
            return parsed, "received"
    return None, None


def parse_iso(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
