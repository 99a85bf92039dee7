"""Folder names: modified UTF-7 (RFC 3501 5.1.3) and the safe, reversible path mapping.

Everything here is pure (no I/O) so it can be property-tested.

The path rule (documented in docs/FORMAT.md, "Folder paths") is applied to
each hierarchy component of a folder's logical name:

* ``%`` is always written ``%25``; so a ``%`` in a path is always one of our
  escapes: ``%XX`` (two upper-case hex digits, one byte of UTF-8) or ``%_``
  followed by hex (a disambiguation suffix, see below).
* Escaped as ``%XX`` per UTF-8 byte: control characters (U+0000-U+001F,
  U+007F-U+009F), ``/`` and ``\\`` (a component may contain them when the
  server's separator is something else), and the Windows-hostile
  ``<>:"|?*`` so the layout is the same on every OS.
* A leading ``.`` (hides the folder, and covers ``.`` / ``..`` /
  ``.archiver``), a trailing ``.`` or space, and the first letter of a
  component equal to ``cur``, ``new`` or ``tmp`` (case-insensitively:
  Maildir's own sub-directories) are escaped.
* The first letter of a Windows reserved device name (``CON``, ``PRN``,
  ``AUX``, ``NUL``, ``COM0``-``COM9``, ``LPT0``-``LPT9``, with superscript
  digits too, ``CONIN$``, ``CONOUT$``) is escaped, in any case and also
  with an extension (``CON.txt``, ``nul .x``): Windows opens the device
  for any of them.
* A component longer than 200 UTF-8 bytes is cut and gets ``%_`` plus
  16 hex digits of the SHA-256 of the full name.  Such a path is not
  reversible by itself; the index keeps the real name.
* The whole path (``/``-joined) stays within :data:`PATH_BUDGET` UTF-16
  units, so every message file stays under Windows' 260 (MAX_PATH) for a
  DEST path of up to 55 characters: a component that would pass the budget
  is cut to the room left and gets ``%_`` plus 8 hex digits of the SHA-256
  of the folder's full name up to it; where not even that fits, the folder
  moves to a top-level directory ``%_`` plus 16 hex digits of the same
  hash, and its descendants nest inside it.  Each decision depends only on
  the components up to that point, so a folder's children stay inside its
  directory and a rerun gives the same path.
* Two folders whose mapped paths differ only by case or Unicode normalisation
  would be one directory on macOS/Windows.  The first one archived keeps the
  plain path; a later one gets ``%_`` plus 8 hex digits of the SHA-256 of
  its full name appended to the last component (see :func:`assign_path`).

``decode_component`` reverses the escapes (and drops a ``%_`` suffix).
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from collections.abc import Iterable, Sequence

# ---------------------------------------------------------------- modified UTF-7


def _b64_encode_utf16(chars: str) -> bytes:
    raw = chars.encode("utf-16-be")
    return base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")


def encode_mutf7(name: str) -> bytes:
    """Unicode folder name -> modified UTF-7 bytes as sent on the wire."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.extend(b"&" + _b64_encode_utf16("".join(pending)) + b"-")
            pending.clear()

    for ch in name:
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode_mutf7(raw: bytes | str) -> str:
    """Modified UTF-7 -> Unicode.  Malformed input is kept as-is, never raised on.

    Servers do send names that are not valid mUTF-7 (8-bit bytes, a lone
    ``&``); we keep those readable rather than fail the whole backup.
    """
    if isinstance(raw, str):
        try:
            data = raw.encode("ascii")
        except UnicodeEncodeError:
            return raw  # already Unicode (UTF8=ACCEPT servers)
    else:
        data = raw
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="surrogateescape")
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            out.append(text[i:])
            break
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                out.append(text[i : end + 1])
        i = end + 1
    return "".join(out)


# ---------------------------------------------------------------- path mapping

_ALWAYS_ESCAPE = set('/\\<>:"|?*%')
_RESERVED = {"cur", "new", "tmp"}
_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                      *(f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789¹²³")})
MAX_COMPONENT_BYTES = 200
# UTF-16 units of a folder's DEST-relative path (an assign_path suffix adds 10 more).
# 160 + "/cur/" + the longest file name (39) = 204: DEST may take 55 of Windows' 259.
PATH_BUDGET = 150
_SHORT = 2 + 8  # "%_" + 8 hex digits
_MIN_KEEP = 2  # characters of a cut component worth keeping before its suffix


def _esc(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", errors="surrogatepass"))


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or ch in _ALWAYS_ESCAPE or 0xD800 <= code <= 0xDFFF


def utf16_units(text: str) -> int:
    """Length as Windows, NTFS and exFAT count it (an astral character is two)."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def is_device_name(component: str) -> bool:
    """Would Windows take this name for a device (``CON``, ``nul.txt``, ``COM1 .x``)?"""
    return component.split(".", 1)[0].rstrip(" ").upper() in _DEVICES


def short_hash(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:digits]


def encode_component(component: str) -> str:
    """Map one hierarchy component to a safe directory name (fixed rule, no probing)."""
    if component == "":
        return "%_"  # an empty component (``a//b``) must still be a real directory name
    chars = [(_esc(c) if _needs_escape(c) else c) for c in component]
    if component[0] in ". " or component.lower() in _RESERVED or is_device_name(component):
        chars[0] = _esc(component[0])
    if component[-1] in ". " and len(component) > 1:
        chars[-1] = _esc(component[-1])
    out = "".join(chars)
    if len(out.encode("utf-8", errors="surrogatepass")) > MAX_COMPONENT_BYTES:
        cut = out.encode("utf-8", errors="surrogatepass")[: MAX_COMPONENT_BYTES - 20]
        text = cut.decode("utf-8", errors="ignore")
        # do not leave half an escape at the cut
        pct = text.rfind("%", max(0, len(text) - 2))
        if pct >= 0:
            text = text[:pct]
        out = text + "%_" + short_hash(component, 16)
    return out


def decode_component(path_component: str) -> str:
    """Reverse :func:`encode_component` (a ``%_`` suffix is dropped)."""
    cut = path_component.find("%_")
    if cut >= 0:
        path_component = path_component[:cut]
    raw = bytearray()
    i = 0
    n = len(path_component)
    while i < n:
        ch = path_component[i]
        if ch == "%" and i + 2 < n and _is_hex2(path_component[i + 1 : i + 3]):
            raw.append(int(path_component[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(ch.encode("utf-8", errors="surrogatepass"))
            i += 1
    try:
        return raw.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:  # not one of our paths (a directory someone else made)
        return raw.decode("utf-8", errors="replace")


def _is_hex2(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789ABCDEF" for c in s)


def folder_path(components: Sequence[str], budget: int = PATH_BUDGET) -> str:
    """Relative path ('/'-separated) of a folder given its hierarchy components.

    Components are escaped one by one, then fitted into ``budget`` UTF-16
    units from the top down (see the module docstring): a component's
    directory depends only on the components up to it.
    """
    if not components:
        raise ValueError("empty folder name")
    out: list[str] = []
    used = 0
    for i, component in enumerate(components):
        name = encode_component(component)
        room = budget - used - (1 if out else 0)
        if utf16_units(name) > room:
            full = "/".join(components[: i + 1])
            if room >= _SHORT + _MIN_KEEP:
                name = _cut_units(name, room - _SHORT) + "%_" + short_hash(full, 8)
            else:  # too deep for anything more here: a fresh top-level directory
                out, used = [], 0
                name = "%_" + short_hash(full, 16)
        used += (1 if out else 0) + utf16_units(name)
        out.append(name)
    return "/".join(out)


def _cut_units(text: str, units: int) -> str:
    """The longest start of ``text`` within ``units`` UTF-16 units, never half an escape."""
    kept = 0
    end = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if kept + width > units:
            break
        kept += width
        end += 1
    cut = text[:end]
    if end == len(text):
        return cut
    pct = cut.rfind("%", max(0, len(cut) - 2))
    if pct >= 0:
        cut = cut[:pct]
    while _torn_utf8(cut):  # never keep the first escapes of a character without the rest
        cut = cut[:-3]
    return cut


def _torn_utf8(text: str) -> bool:
    """Do the trailing ``%XX`` escapes of ``text`` end inside a UTF-8 sequence?"""
    raw = bytearray()
    at = len(text)
    while at >= 3 and text[at - 3] == "%" and _is_hex2(text[at - 2:at]):
        raw[:0] = bytes([int(text[at - 2:at], 16)])
        at -= 3
    try:
        bytes(raw).decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return False


def fold_key(relpath: str) -> str:
    """What a case-insensitive, normalising file system would consider equal.

    Windows and exFAT compare through an upcase table (simple upper-case
    mappings: ``ı`` and ``i`` are both ``I`` there), macOS case-folds and
    ignores normalisation; the key is equal whenever any of them would be.
    """
    text = unicodedata.normalize("NFC", relpath)
    text = "".join(ch.upper() if len(ch.upper()) == 1 else ch for ch in text)
    return unicodedata.normalize("NFC", text.casefold())


def assign_path(components: Sequence[str], taken: Iterable[str],
                base: str | None = None, folded: set[str] | None = None) -> str:
    """The path for a new folder, distinct (after case/Unicode folding) from ``taken``.

    ``taken`` holds the paths already given to other folders (their history
    lives in the index), so a folder keeps its directory for ever once chosen.
    ``base`` is the store's own path for the name (default: the Maildir one).
    ``folded``, when given, is ``{fold_key(p) for p in taken}`` kept up to date by
    the caller (``taken`` is then ignored): folding every taken path again for each
    new folder made a first run of 10,000 folders quadratic.
    """
    base = base if base is not None else folder_path(components)
    if folded is None:
        folded = {fold_key(p) for p in taken}
    if fold_key(base) not in folded:
        return base
    full = "/".join(components)
    for extra in range(0, 1000):
        suffix = "%_" + short_hash(full + ("" if extra == 0 else f"#{extra}"), 8)
        candidate = base + suffix
        if fold_key(candidate) not in folded:
            return candidate
    raise RuntimeError("could not find a free folder path")  # pragma: no cover


def logical_name(server_name: str, separator: str | None, prefix: str) -> tuple[str, ...]:
    """Server folder name (decoded) -> hierarchy components relative to the personal namespace.

    ``prefix`` is the personal namespace prefix (``"INBOX."`` on Courier/Cyrus);
    it is stripped so a later restore can apply the target's own.

    Only the server's own INBOX is ``INBOX``: a name that is ``INBOX`` (any
    case) *without* the prefix, or a child of it.  A folder whose name after
    the prefix starts with ``Inbox`` (Courier's ``INBOX.Inbox``) is a child of
    INBOX, not INBOX itself: the prefix is kept as its parent, so it becomes
    ``INBOX/Inbox`` -- stripping it made ``INBOX.Inbox`` and ``INBOX`` one
    folder, and a restore maps ``INBOX/Inbox`` back to ``INBOX<sep>Inbox``.
    """
    name = server_name
    if (prefix and name.startswith(prefix) and len(name) > len(prefix)
            and not _is_inbox(_first(name[len(prefix):], separator))):
        name = name[len(prefix):]
    parts = tuple(name.split(separator)) if separator else (name,)
    if _is_inbox(parts[0]):
        parts = ("INBOX",) + parts[1:]
    return parts


def _first(name: str, separator: str | None) -> str:
    return name.split(separator, 1)[0] if separator else name


def _is_inbox(component: str) -> bool:
    return component.upper() == "INBOX"
