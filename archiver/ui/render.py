"""One archived message made safe to show in a browser.

Decoding is :mod:`archiver.offline.show`'s (the same as ``archiver show``):
headers through :func:`decoded_header` (MIME words, ISO-2022-JP, Shift_JIS,
raw 8-bit), parts through :func:`part_text`, attachment names through
:func:`filename` (RFC 2231 and RFC 2047).  What this module adds is what a
browser needs:

* **Which parts to show.**  Of a ``multipart/alternative`` the HTML part
  (or the plain text when the reader asks for it); every other inline text
  part in order; attachments listed, never shown inline.
* **HTML, sanitised with nh3** (the Rust ``ammonia`` sanitiser): an allow
  list of tags and attributes, so no ``<script>``, no ``on*`` handlers, no
  ``<style>``/``<link>``/``<iframe>``/``<form>``; URLs only ``http``,
  ``https`` and ``mailto`` in links -- never ``javascript:``.  Images may
  only be ``data:``: a ``cid:`` reference is replaced by the message's own
  part as a data URI, and a remote ``src`` is dropped, so opening a message
  tells no tracker that it was read.  The result is then shown in an iframe
  that is sandboxed (no scripts, an opaque origin) under its own CSP
  (``img-src data:``, nothing else loads): belt and braces.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Optional

import nh3

from archiver.headers import decode_bytes
from archiver.offline.show import (
    SHOWN_HEADERS,
    _ctype,
    _is_attachment,
    _leaves,
    decoded_header,
    filename,
    parse,
    part_text,
)

MAX_INLINE_IMAGE = 4 * 1024 * 1024  # a cid: image bigger than this is left out
BODY_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
            "sandbox allow-popups allow-popups-to-escape-sandbox")
# CSS properties a mail may keep in style="": looks only, nothing that loads or overlays
STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "line-height", "margin", "margin-left",
    "margin-right", "margin-top", "margin-bottom", "padding", "padding-left", "padding-right",
    "padding-top", "padding-bottom", "border", "border-collapse", "width", "height",
    "vertical-align", "white-space", "text-indent", "list-style-type",
})
_LINK_SCHEMES = ("http:", "https:", "mailto:")


@dataclass
class Shown:
    """One body part on the message page."""

    index: int  # the leaf's number (the HTML part's iframe URL uses it)
    kind: str  # "text" or "html"
    text: str = ""  # for "text"


@dataclass
class AttachmentView:
    index: int
    name: str
    content_type: str
    size: int


@dataclass
class MessageView:
    headers: list[tuple[str, str]] = field(default_factory=list)
    parts: list[Shown] = field(default_factory=list)
    attachments: list[AttachmentView] = field(default_factory=list)
    has_html: bool = False
    has_text_alternative: bool = False
    parsed: bool = True


def view(data: bytes, prefer_text: bool = False) -> MessageView:
    """What the message page shows of ``data`` (never raises on a broken message)."""
    out = MessageView()
    for name in SHOWN_HEADERS:
        value = decoded_header(data, name)
        if value is not None:
            out.headers.append((name, _printable(value)))
    msg = parse(data)
    if msg is None:
        out.parsed = False
        out.parts.append(Shown(0, "text", _printable(decode_bytes(data))))
        return out
    leaves = _leaves(msg)
    number = {id(p): i for i, p in enumerate(leaves)}
    for part in _shown_parts(msg, prefer_text, out):
        kind = _ctype(part)
        i = number.get(id(part), 0)
        if kind == "text/html":
            out.parts.append(Shown(i, "html"))
            out.has_html = True
        else:
            out.parts.append(Shown(i, "text", _printable(_safe_text(part))))
    for i, part in enumerate(leaves):
        if _is_attachment(part):
            payload = _payload(part)
            out.attachments.append(AttachmentView(
                i, _printable(filename(part) or "") or f"part-{i}", _ctype(part), len(payload)))
    return out


def _shown_parts(part: Message, prefer_text: bool, out: MessageView) -> list[Message]:
    try:
        multipart = part.is_multipart()
    except Exception:  # noqa: BLE001
        multipart = False
    if not multipart:
        if _is_attachment(part):
            return []
        return [part] if _ctype(part) in ("text/plain", "text/html") else []
    children = _children(part)
    if _ctype(part) == "multipart/alternative" and children:
        kinds = [_ctype(c) for c in children]
        if "text/plain" in kinds and "text/html" in kinds:
            out.has_text_alternative = True
        want = "text/plain" if prefer_text else "text/html"
        chosen = next((c for c in reversed(children) if _contains(c, want)), None)
        if chosen is None:
            chosen = next((c for c in reversed(children) if _contains(c, "text/plain")),
                          children[-1])
        return _shown_parts(chosen, prefer_text, out)
    shown: list[Message] = []
    for child in children:
        shown.extend(_shown_parts(child, prefer_text, out))
    return shown


def _children(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except Exception:  # noqa: BLE001
        return []
    if not isinstance(payload, list):
        return []
    return [p for p in payload if isinstance(p, Message)]


def _contains(part: Message, kind: str) -> bool:
    return any(_ctype(p) == kind and not _is_attachment(p) for p in _leaves(part))


def _safe_text(part: Message) -> str:
    try:
        return part_text(part)
    except Exception:  # noqa: BLE001 - one broken part must not hide the page
        return ""


def _payload(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    return payload if isinstance(payload, bytes) else b""


def leaf(data: bytes, index: int) -> Optional[Message]:
    """Leaf part number ``index`` (as :func:`view` numbers them), None if there is none."""
    msg = parse(data)
    if msg is None:
        return None
    leaves = _leaves(msg)
    return leaves[index] if 0 <= index < len(leaves) else None


def attachment(data: bytes, index: int) -> Optional[tuple[str, bytes]]:
    """(decoded file name, exact decoded bytes) of attachment ``index``."""
    part = leaf(data, index)
    if part is None or not _is_attachment(part):
        return None
    return filename(part) or f"part-{index}", _payload(part)


# ---------------------------------------------------------------- HTML


def _cid_images(msg: Message) -> dict[str, str]:
    """Content-ID (without <>) -> data: URI of each image part of the message."""
    out: dict[str, str] = {}
    for part in _leaves(msg):
        try:
            cid = str(part.get("Content-ID", "") or "").strip().strip("<>")
        except Exception:  # noqa: BLE001
            continue
        kind = _ctype(part)
        if not cid or not kind.startswith("image/") or not re.fullmatch(r"[\w.+-]+/[\w.+-]+",
                                                                        kind):
            continue
        payload = _payload(part)
        if len(payload) <= MAX_INLINE_IMAGE:
            out[cid] = f"data:{kind};base64,{base64.b64encode(payload).decode('ascii')}"
    return out


def sanitise(markup: str, images: Optional[dict[str, str]] = None) -> str:
    """``markup`` cleaned by nh3: no script, handlers, javascript: or remote images."""
    images = images or {}

    def keep(tag: str, attr: str, value: str) -> Optional[str]:
        low = value.strip().lower()
        if tag == "img" and attr == "src":
            if low.startswith("cid:"):
                return images.get(value.strip()[4:].strip("<>"))
            return value if low.startswith("data:image/") else None  # remote: not loaded
        if attr in ("href", "cite"):
            return value if low.startswith(_LINK_SCHEMES) or low.startswith("#") else None
        return value

    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag in nh3.ALLOWED_TAGS:
        attributes.setdefault(tag, set()).update({"style", "title", "dir", "lang", "id"})
    for tag in ("td", "th", "table", "tr", "div", "p", "span", "font", "body"):
        attributes.setdefault(tag, set()).update({"bgcolor", "align", "valign", "width"})
    attributes.setdefault("font", set()).update({"color", "face", "size"})
    tags = set(nh3.ALLOWED_TAGS) | {"font"}
    return nh3.clean(markup, tags=tags, attributes=attributes,
                     url_schemes={"http", "https", "mailto", "cid", "data"},
                     attribute_filter=keep, filter_style_properties=set(STYLE_PROPERTIES),
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def html_document(data: bytes, index: int) -> Optional[str]:
    """HTML part ``index`` as a standalone, sanitised document for the sandboxed iframe."""
    msg = parse(data)
    if msg is None:
        return None
    leaves = _leaves(msg)
    if not 0 <= index < len(leaves) or _ctype(leaves[index]) != "text/html":
        return None
    clean = sanitise(_safe_text(leaves[index]), _cid_images(msg))
    return ('<!DOCTYPE html><html><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"><base target="_blank">'
            '<style>body{font-family:sans-serif;margin:0.5em;overflow-wrap:anywhere}'
            'img{max-width:100%;height:auto}</style></head><body>'
            + clean + "</body></html>")


def _printable(text: str) -> str:
    """No control characters from a hostile message (tabs and newlines stay)."""
    return "".join(ch if ch >= " " or ch in "\t\n" else " " for ch in text).replace(
        "\x7f", " ").encode("utf-8", "replace").decode("utf-8")
