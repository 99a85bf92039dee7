"""Progress of a run: what the engines report, and a tqdm bar when stderr is a terminal.

:class:`Progress` is what the backup and restore engines call; the library
default :class:`NullProgress` only logs notes; the CLI's
:class:`TerminalProgress` draws the bar (messages, bytes, ETA).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional, Protocol

from archiver.i18n import _

log = logging.getLogger("archiver.progress")


class Progress(Protocol):
    def add_total(self, messages: int, nbytes: int) -> None: ...
    def advance(self, messages: int, nbytes: int) -> None: ...
    def folder(self, name: str) -> None: ...
    def note(self, text: str) -> None: ...


class NullProgress:
    def add_total(self, messages: int, nbytes: int) -> None:
        pass

    def advance(self, messages: int, nbytes: int) -> None:
        pass

    def folder(self, name: str) -> None:
        pass

    def note(self, text: str) -> None:
        log.info("%s", text)


class TerminalProgress:
    """Engine progress shown with tqdm; notes are printed above the bar."""

    def __init__(self, enabled: bool, quiet: bool = False) -> None:
        self._bar: Optional[Any] = None
        self._quiet = quiet
        self._enabled = enabled
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                             dynamic_ncols=True, file=sys.stderr, leave=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}, {rate_fmt}]")
        self._messages = 0
        self._total_messages = 0
        self._folder = ""

    def _describe(self) -> None:
        if self._bar is not None:
            name = self._folder if len(self._folder) <= 24 else "…" + self._folder[-23:]
            self._bar.set_description_str(
                _("{name} {done}/{total} msgs").format(name=name, done=self._messages,
                                                       total=self._total_messages),
                refresh=False)

    def add_total(self, messages: int, nbytes: int) -> None:
        self._total_messages += messages
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + nbytes
            self._describe()
            self._bar.refresh()

    def advance(self, messages: int, nbytes: int) -> None:
        self._messages += messages
        if self._bar is not None:
            self._describe()
            self._bar.update(nbytes)

    def folder(self, name: str) -> None:
        self._folder = name
        self._describe()

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        elif not self._quiet:
            print(text, file=sys.stderr)

    def say(self, text: str) -> None:
        """A line that must be seen even with --quiet (a server's [ALERT]), above the bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
