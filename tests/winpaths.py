"""Windows' and macOS's file-name rules, written out independently of archiver/names.py.

The oracle for the path-rule tests: what Win32 (NTFS, exFAT) refuses in a
name, how Windows compares names (case-insensitively, by the upcase table:
simple upper-case mappings), and how macOS does (HFS+ stores NFD, APFS
compares normalisation-insensitively; both case-insensitive by default).
Sources: Microsoft's "Naming Files, Paths, and Namespaces" and the exFAT
specification (up-case table, 255-unit names).
"""

from __future__ import annotations

import unicodedata
from typing import Optional

WIN32_REFUSED = frozenset('<>:"/\\|?*') | frozenset(chr(c) for c in range(0x20))
DEVICES = frozenset({"CON", "PRN", "AUX", "NUL",
                     *(f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³")})
MAX_UNITS = 255  # UTF-16 code units in one name (NTFS, exFAT)
MAX_PATH = 260  # including the drive, separators and the final NUL


def units(name: str) -> int:
    return len(name.encode("utf-16-le", errors="surrogatepass")) // 2


def win32_name_problem(name: str) -> Optional[str]:
    """Why Win32 would refuse ``name`` as one path component, None if it takes it."""
    if name in ("", ".", ".."):
        return "empty, '.' or '..'"
    bad = sorted({ch for ch in name if ch in WIN32_REFUSED})
    if bad:
        return f"refused characters {bad!r}"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return "a lone surrogate"
    if name[-1] in ". ":
        return "a trailing dot or space (Windows drops it)"
    if name.split(".", 1)[0].rstrip(" ").upper() in DEVICES:
        return "a reserved device name"
    if units(name) > MAX_UNITS:
        return f"{units(name)} UTF-16 units (more than {MAX_UNITS})"
    return None


def windows_key(path: str) -> str:
    """Two paths Windows takes for the same file have the same key (upcase table)."""
    return "".join(ch.upper() if len(ch.upper()) == 1 else ch for ch in path)


def macos_key(path: str) -> str:
    """Two paths macOS (HFS+/APFS, case-insensitive) takes for one file have one key."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())
