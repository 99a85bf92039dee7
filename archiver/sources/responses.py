"""IMAP answers as archiver's records: pure parsing, no I/O (imapclient's style).

Kept apart from :mod:`archiver.sources.imap` so the wire format can be read
(and fuzzed) without a connection, and the session code stays about talking.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from imapclient.response_parser import parse_fetch_response

from archiver.i18n import _
from archiver.sources.base import FetchFailed, FolderStatus


def as_text(value: Any) -> str:
    """An IMAP answer's bytes (or anything) as text, never raising."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


LISTING_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE)"


def body_of(uid: int, data: Optional[dict[bytes, Any]]) -> bytes | FetchFailed:
    body = data.get(b"BODY[]") if data else None
    if body is None:
        return FetchFailed(uid, _("the server did not return the message"))
    return body if isinstance(body, bytes) else as_text(body).encode()


# imaplib hands over ``* 12 FETCH (...)`` as ``12 (...)``: the word FETCH is its key.
_FETCH_HEAD = re.compile(rb"^\d+ \((.*)\{(\d+)\}$", re.DOTALL)
# The fast path takes exactly ``UID n BODY[] `` before the literal: searching for "UID n"
# anywhere took a keyword pair such as ``FLAGS (UID 99)`` for the message's UID and
# filed the body under another message's name.
_UID_ITEM = re.compile(rb"UID (\d+) BODY\[\] ")


def parse_bodies(data: list[Any]) -> dict[int, Any]:
    """UID -> FETCH items of the untagged answers to ``UID FETCH … (UID BODY.PEEK[])``."""
    out: dict[int, Any] = {}
    rest: list[Any] = []
    i = 0
    while i < len(data):
        item = data[i]
        if isinstance(item, tuple) and len(item) == 2:
            head = _FETCH_HEAD.match(item[0])
            tail = data[i + 1] if i + 1 < len(data) else None
            if head and tail == b")":
                found = _UID_ITEM.fullmatch(head.group(1))
                if found is not None and len(item[1]) == int(head.group(2)):
                    out[int(found.group(1))] = {b"BODY[]": item[1]}
                    i += 2
                    continue
        rest.append(item)
        i += 1
    if rest:
        parsed: dict[int, Any] = parse_fetch_response(rest, False, True)
        for key, items in parsed.items():
            if b"BODY[]" in items:
                out.setdefault(key, items)
    return out


def status_from(res: dict[Any, Any], exists_key: bytes = b"MESSAGES") -> Optional[FolderStatus]:
    def num(key: bytes) -> Optional[int]:
        value = res.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    uidvalidity = num(b"UIDVALIDITY")
    if uidvalidity is None:
        return None
    return FolderStatus(
        uidvalidity=uidvalidity,
        uidnext=num(b"UIDNEXT") or 0,
        messages=num(exists_key) or 0,
        highestmodseq=num(b"HIGHESTMODSEQ"),
        size=num(b"SIZE"),
    )


_PARTIAL_KEY = re.compile(rb"BODY\[\](?:<(\d+)>)?")


def partial_body(data: dict[Any, Any]) -> tuple[Optional[bytes], Optional[int]]:
    """(bytes, origin) of a ``BODY[]<origin>`` answer; origin None for plain ``BODY[]``,
    bytes None when the answer holds no body (or NIL)."""
    for key, value in data.items():
        found = _PARTIAL_KEY.fullmatch(key) if isinstance(key, bytes) else None
        if found is None or value is None:
            continue
        body = value if isinstance(value, bytes) else as_text(value).encode()
        return body, int(found.group(1)) if found.group(1) is not None else None
    return None, None
