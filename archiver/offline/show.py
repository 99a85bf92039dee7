"""``archiver show``: one archived message, readable (or its exact bytes).

Also the MIME helpers ``search --body`` uses.  Mail in the archive is
whatever the server held -- Japanese charsets (ISO-2022-JP, Shift_JIS written
as ``cp932``, EUC-JP), quoted-printable, base64, broken MIME -- so every
helper here degrades to the best readable text and never raises.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from typing import Optional

from archiver.archive import Archive
from archiver.errors import UsageError
from archiver.headers import decode_bytes, decode_value, header_block
from archiver.i18n import _
from archiver.offline.catalog import Item, catalog
from archiver.units import human_size

MIN_PREFIX = 6
SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject")


# ---------------------------------------------------------------- finding a message


def find(archive: Archive, prefix: str) -> list[Item]:
    """The archived copies whose SHA-256 starts with ``prefix`` (one message, maybe in
    several folders); a short, non-hex, unknown or ambiguous prefix is a usage error."""
    want = prefix.strip().lower()
    if len(want) < MIN_PREFIX or not re.fullmatch(r"[0-9a-f]+", want):
        raise UsageError(_("'{prefix}' is not a message ID: give at least {digits} hex "
                           "digits of an ID that 'archiver ls' or 'archiver search' prints").format(
                           prefix=prefix, digits=MIN_PREFIX))
    hits = [item for item in catalog(archive) if item.entry.sha256.startswith(want)]
    if not hits:
        raise UsageError(_("no message with ID {prefix} in {dest}: 'archiver search' finds "
                           "IDs").format(prefix=prefix, dest=archive.dest))
    hashes = {item.entry.sha256 for item in hits}
    if len(hashes) > 1:
        raise UsageError(_("ID {prefix} is ambiguous ({n} messages start with it): give more "
                           "digits").format(prefix=prefix, n=len(hashes)))
    hits.sort(key=lambda i: (i.entry.gone, i.folder, i.entry.path))
    return hits


# ---------------------------------------------------------------- parsing


def parse(data: bytes) -> Optional[Message]:
    try:
        return email.message_from_bytes(data, policy=email.policy.default)
    except Exception:  # noqa: BLE001 - the stdlib raises assorted errors on junk
        return None


def raw_header(data: bytes, name: str) -> Optional[bytes]:
    """The first ``name`` header's raw value (folding kept), from the message bytes."""
    head = header_block(data)
    pattern = (rb"(?im)(?:^|(?<=\r))" + re.escape(name.encode())
               + rb"[ \t]*:([^\r\n]*(?:(?:\r\n|\n|\r)[ \t][^\r\n]*)*)")
    match = re.search(pattern, head)
    return match.group(1) if match else None


def decoded_header(data: bytes, name: str) -> Optional[str]:
    raw = raw_header(data, name)
    return None if raw is None else decode_value(raw)


def part_text(part: Message) -> str:
    """A text part's content as text: transfer encoding undone, charset decoded."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        if not isinstance(raw, str):
            return ""
        payload = raw.encode("ascii", "surrogateescape")
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    text = decode_bytes(payload, charset)
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _TextExtractor(HTMLParser):
    _BLOCK = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table",
              "blockquote", "pre", "hr", "ul", "ol", "dt", "dd"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    """HTML -> plain text: tags dropped, entities decoded, blocks on their own lines."""
    try:
        parser = _TextExtractor()
        parser.feed(markup)
        parser.close()
        text = "".join(parser.out)
    except Exception:  # noqa: BLE001
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:  # noqa: BLE001
        disposition = ""
    return disposition == "attachment" or (disposition != "inline" and bool(filename(part)))


def _leaves(msg: Message) -> list[Message]:
    try:
        return [p for p in msg.walk() if not p.is_multipart()]
    except Exception:  # noqa: BLE001
        return [msg]


def _ctype(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001
        return "text/plain"


def body_text(data: bytes) -> str:
    """Every text/plain and text/html part's text (HTML stripped), for ``search --body``.

    A message that cannot be parsed at all yields its bytes decoded as best we can.
    """
    msg = parse(data)
    if msg is None:
        return decode_bytes(data)
    out: list[str] = []
    for part in _leaves(msg):
        kind = _ctype(part)
        try:
            if kind == "text/plain":
                out.append(part_text(part))
            elif kind == "text/html":
                out.append(html_to_text(part_text(part)))
        except Exception:  # noqa: BLE001 - one broken part must not hide the others
            continue
    return "\n".join(out)


def main_text(msg: Message) -> str:
    """The text a reader shows: the first inline text/plain, else the first HTML as text."""
    html_part: Optional[Message] = None
    for part in _leaves(msg):
        kind = _ctype(part)
        if _is_attachment(part):
            continue
        if kind == "text/plain":
            return part_text(part)
        if kind == "text/html" and html_part is None:
            html_part = part
    return html_to_text(part_text(html_part)) if html_part is not None else ""


def filename(part: Message) -> Optional[str]:
    """A part's decoded file name (RFC 2231 and RFC 2047; Shift_JIS/raw 8-bit degrade)."""
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        name = None
    if name is not None and "\ufffd" not in name and not _has_surrogates(name):
        return name
    for header in ("Content-Disposition", "Content-Type"):
        try:
            raw = next((str(v) for k, v in part.raw_items() if k.lower() == header.lower()),
                       None)
        except Exception:  # noqa: BLE001
            raw = None
        if raw is None:
            continue
        key = "filename" if header == "Content-Disposition" else "name"
        match = re.search(r'(?i)(?:^|;)\s*' + key + r'\s*=\s*("[^"]*"|[^;\s]+)', raw)
        if match:
            value = match.group(1).strip('"')
            return decode_value(value.encode("ascii", "surrogateescape"))
    return name


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


@dataclass
class Attachment:
    name: str
    content_type: str
    size: int  # decoded bytes


def attachments(msg: Message) -> list[Attachment]:
    out: list[Attachment] = []
    for part in _leaves(msg):
        if not _is_attachment(part):
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001
            payload = None
        size = len(payload) if isinstance(payload, bytes) else 0
        out.append(Attachment(filename(part) or "(no name)", _ctype(part), size))
    return out


# ---------------------------------------------------------------- rendering


def render(items: list[Item], data: bytes) -> str:
    """The message as text: where it is, decoded headers, text, attachments."""
    first = items[0]
    e = first.entry
    lines = [f"ID:       {e.sha256}"]
    for item in items:
        flags = ", ".join(f.lstrip("\\") for f in (*item.entry.flags, *item.entry.keywords))
        extra = f"  [{flags}]" if flags else ""
        lines.append(f"Folder:   {item.folder}{extra}"
                     + ("  (gone from server)" if item.entry.gone else ""))
    for name in SHOWN_HEADERS:
        value = decoded_header(data, name)
        if value is not None:
            lines.append(f"{name + ':':9} {value}")
    msg = parse(data)
    text = ""
    found: list[Attachment] = []
    if msg is not None:
        try:
            text = main_text(msg)
        except Exception:  # noqa: BLE001
            text = ""
        try:
            found = attachments(msg)
        except Exception:  # noqa: BLE001
            found = []
    else:
        text = decode_bytes(data)
    lines.append("")
    lines.append(text.rstrip("\n"))
    if found:
        lines.append("")
        lines.append(f"Attachments ({len(found)}):")
        for att in found:
            lines.append(f"  {att.name}  ({att.content_type}, {human_size(att.size)})")
    return "\n".join(_printable(line) for line in lines) + "\n"


def _printable(text: str) -> str:
    """No terminal control sequences from a hostile message (tabs and newlines stay)."""
    return "".join(ch if ch >= " " or ch in "\t\n" else " " for ch in text).replace(
        "\x7f", " ").encode("utf-8", "replace").decode("utf-8")


def read(archive: Archive, item: Item) -> bytes:
    """The exact archived bytes of ``item``, through the archive's store."""
    from archiver.stores import open_store

    store = open_store(archive.dest, archive.format)
    try:
        return bytes(store.read_message(item.entry))
    except (OSError, ValueError) as exc:
        raise UsageError(_("message {id} cannot be read from {path} ({value}): run 'archiver "
                           "verify'").format(
                           id=item.id, path=item.entry.path,
                           value=getattr(exc, 'strerror', None) or exc)
                         ) from None
    finally:
        store.close()


def show_text(archive: Archive, prefix: str) -> str:
    items = find(archive, prefix)
    return render(items, read(archive, items[0]))
