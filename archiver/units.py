"""Sizes and durations as people read them: one decimal unit system everywhere.

The bar, the periodic progress lines and every summary (backup, restore,
migrate, verify, ls, export) say "kB", "MB", "GB" in powers of 1000, as disk
makers and file managers on Windows 11/macOS do, so the figures a user
compares always agree (the bar once counted MiB while the summary said MB).
A small folder is "512 B" or "3.4 kB", never "0.0 MB".
"""

from __future__ import annotations

_UNITS = ("kB", "MB", "GB", "TB", "PB")


def human_size(nbytes: float) -> str:
    """``512 B``, ``3.4 kB``, ``45.6 MB``, ``123 MB``, ``1.2 GB`` (decimal units)."""
    if nbytes < 0:
        return "-" + human_size(-nbytes)
    if nbytes < 1000:
        return f"{int(nbytes)} B"
    value = float(nbytes)
    for unit in _UNITS:
        value /= 1000
        # choose the unit after rounding: 999,960 B is "1.0 MB", not "1000.0 kB"
        text = f"{value:.0f}" if value >= 99.95 else f"{value:.1f}"
        if float(text) < 1000 or unit == _UNITS[-1]:
            return f"{text} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def human_rate(bytes_per_second: float) -> str:
    """``1.2 MB/s``."""
    return f"{human_size(bytes_per_second)}/s"


def human_duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``: minutes and seconds, hours when needed."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"
