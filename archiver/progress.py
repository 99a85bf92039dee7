"""Progress of a run: what the engines report, and how a person (or a log) sees it.

:class:`Progress` is what the backup and restore engines call.  Bytes are
reported as they come off a connection (:class:`ByteMeter`, fed by the
sources' readers), inside a large message too, and *settled* when a batch
or a streamed message is done: the meter then replaces what it reported by
the message sizes the total was made of, so the bar ends exactly at the
total however many connections fed it and whatever was skipped or failed.

The CLI's :class:`TerminalProgress` draws a bar on a terminal and, when
stderr is a pipe or a log (cron), prints a plain line every few seconds
instead; both use decimal units (:mod:`archiver.units`) and an ETA from an
exponentially smoothed rate (:class:`RateMeter`), which a burst or a pause
of a few seconds cannot throw far off.  Every method is thread-safe: the
connections' threads and the pipeline's sync thread all report.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import threading
import time
import unicodedata
from typing import Callable, Optional, Protocol, TextIO

from archiver.i18n import _, ngettext
from archiver.units import human_duration, human_rate, human_size

log = logging.getLogger("archiver.progress")

INTERVAL_ENV = "ARCHIVER_PROGRESS_INTERVAL"  # seconds between plain progress lines (non-TTY)
DEFAULT_INTERVAL = 5.0


class Progress(Protocol):
    def add_total(self, messages: int, nbytes: int) -> None:
        """More work planned (negative: less, e.g. a message that failed)."""

    def advance(self, messages: int, nbytes: int) -> None:
        """Messages done, with any of their bytes not reported by :meth:`transferred`."""

    def transferred(self, nbytes: int) -> None:
        """Bytes as they travel (negative: a settlement taking some back)."""

    def folder(self, name: str, messages: Optional[int] = None,
               nbytes: Optional[int] = None) -> None:
        """Work on a folder starts (with what it will fetch, once planned)."""

    def note(self, text: str) -> None:
        """Something worth a line (a reconnect, a folder that was renamed)."""


class NullProgress:
    """The library default: notes go to the log, counts nowhere."""

    def add_total(self, messages: int, nbytes: int) -> None:
        pass

    def advance(self, messages: int, nbytes: int) -> None:
        pass

    def transferred(self, nbytes: int) -> None:
        pass

    def folder(self, name: str, messages: Optional[int] = None,
               nbytes: Optional[int] = None) -> None:
        pass

    def note(self, text: str) -> None:
        log.info("%s", text)


class ByteMeter:
    """One connection's message bytes: reported as they arrive, settled per batch.

    The source calls the meter with each piece of a message body read off its
    connection; :meth:`settle` then replaces everything reported since the last
    settlement by ``credit`` (the sizes of the messages that were fetched and
    will be stored).  Bytes of a message that failed, or were cut off by a lost
    line, are thus taken back, and a message whose size on the wire differs a
    little from its announced RFC822.SIZE cannot leave the bar off its total.
    Used by one connection's thread only; the Progress behind it is shared.
    """

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.pending = 0

    def __call__(self, nbytes: int) -> None:
        self.pending += nbytes
        self._progress.transferred(nbytes)

    def settle(self, credit: int) -> None:
        if credit != self.pending:
            self._progress.transferred(credit - self.pending)
        self.pending = 0


class RateMeter:
    """Bytes per second smoothed over a few seconds (exponential moving average).

    tqdm's default rate, in the issue's example, had only seen whole messages
    and promised 17 hours for a 20 MB message; here the rate is sampled from
    the byte count as it grows and each sample weighs ``1 - exp(-dt/tau)``,
    so the estimate follows a change of speed within about ``tau`` seconds.
    """

    def __init__(self, tau: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.tau = tau
        self._clock = clock
        self._start = clock()
        self._last_t = self._start
        self._last_n = 0
        self.rate = 0.0  # bytes per second
        self._warm = False

    def update(self, done: int) -> None:
        now = self._clock()
        dt = now - self._last_t
        if dt < 0.05:
            return
        sample = max(0.0, (done - self._last_n) / dt)
        if not self._warm:
            # the first seconds: the plain average since the start, no jumpy first sample
            elapsed = now - self._start
            self.rate = max(0.0, done / elapsed) if elapsed > 0 else 0.0
            self._warm = elapsed >= min(1.0, self.tau)
        else:
            weight = 1.0 - math.exp(-dt / self.tau)
            self.rate += weight * (sample - self.rate)
        self._last_t, self._last_n = now, done

    def eta(self, remaining: int) -> Optional[float]:
        """Seconds left at the smoothed rate; None while there is no rate to go by."""
        if remaining <= 0:
            return 0.0
        if self.rate <= 0:
            return None
        return remaining / self.rate


class Console:
    """stderr shared by the bar, the lines printed above it and the -v/--debug log.

    On a terminal the bar is the last line, redrawn in place; any other line
    first clears it and then draws it again, so log lines, notes and folder
    lines never run into the bar.  One lock: several threads write.
    """

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._status = ""  # the bar as last drawn ("" when none is shown)

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns

    def line(self, text: str) -> None:
        with self._lock:
            out = self.stream
            try:
                if self._status:
                    out.write("\r\x1b[K")
                out.write(text + "\n")
                if self._status:
                    out.write(self._status)
                out.flush()
            except (OSError, ValueError):
                pass  # stderr gone (a closed pipe): nothing to show it on

    def status(self, text: str) -> None:
        """Draw ``text`` as the bar ("" removes it)."""
        with self._lock:
            out = self.stream
            try:
                out.write("\r" + text + "\x1b[K" if text else "\r\x1b[K")
                out.flush()
            except (OSError, ValueError):
                pass
            self._status = text

    def end_status(self) -> None:
        """Leave the bar as it is (the final figures) and go to a new line."""
        with self._lock:
            if self._status:
                try:
                    self.stream.write("\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self._status = ""


def progress_interval(environ: Optional[dict[str, str]] = None) -> float:
    """Seconds between plain progress lines: ``$ARCHIVER_PROGRESS_INTERVAL`` or 5."""
    value = (environ if environ is not None else os.environ).get(INTERVAL_ENV, "")
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_INTERVAL
    return seconds if seconds > 0 else DEFAULT_INTERVAL


class TerminalProgress:
    """The CLI's view of a run: a bar on a terminal, a line every few seconds elsewhere.

    ``mode`` is ``"bar"`` (stderr is a terminal), ``"lines"`` (a pipe, a log,
    cron) or ``"off"`` (``--quiet``).  ``folder_lines``: print a line when a
    folder's work starts (on a terminal, and always with ``-v``).  A ticker
    thread redraws the bar (so elapsed time and ETA move during a stall) or
    prints the periodic line, and samples the rate.
    """

    def __init__(self, console: Optional[Console] = None, mode: str = "off",
                 folder_lines: bool = False, quiet: bool = False,
                 interval: Optional[float] = None, verbose: bool = False) -> None:
        self.console = console or Console()
        self.mode = mode
        self.folder_lines = folder_lines
        self.verbose = verbose
        self._quiet = quiet
        self.interval = interval if interval is not None else progress_interval()
        self._lock = threading.Lock()
        self.total_messages = 0
        self.total_bytes = 0
        self.done_messages = 0
        self.done_bytes = 0
        self._folder = ""
        self._rate = RateMeter()
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        self._last_line = time.monotonic()
        if mode in ("bar", "lines"):
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    # ------------------------------------------------------------ what the engines call

    def add_total(self, messages: int, nbytes: int) -> None:
        with self._lock:
            self.total_messages += messages
            self.total_bytes += nbytes

    def advance(self, messages: int, nbytes: int) -> None:
        with self._lock:
            self.done_messages += messages
            self.done_bytes += nbytes

    def transferred(self, nbytes: int) -> None:
        with self._lock:
            self.done_bytes += nbytes

    def folder(self, name: str, messages: Optional[int] = None,
               nbytes: Optional[int] = None) -> None:
        with self._lock:
            self._folder = name
        if messages is None:
            text = _("folder {name}").format(name=name)
        elif messages:
            text = ngettext("{name}: {n} new message ({size})",
                            "{name}: {n} new messages ({size})", messages).format(
                name=name, n=messages, size=human_size(nbytes or 0))
        else:
            text = _("{name}: nothing new").format(name=name)
        log.info("%s", text)  # for --log (the console's log handler leaves these out)
        if self.folder_lines and not self._quiet and (messages != 0 or self.verbose):
            self.console.line(text)

    def note(self, text: str) -> None:
        if not self._quiet:
            self.console.line(text)

    def say(self, text: str) -> None:
        """A line that must be seen even with --quiet (a server's [ALERT]), above the bar."""
        self.console.line(text)

    def close(self) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
            if self.mode == "bar":
                self.console.status(self.render(self.console.width()))
                self.console.end_status()

    # ------------------------------------------------------------ drawing

    def snapshot(self) -> tuple[int, int, int, int]:
        """(done bytes, total bytes, done messages, total messages), done within total."""
        with self._lock:
            total_b, total_m = max(0, self.total_bytes), max(0, self.total_messages)
            done_b = min(max(0, self.done_bytes), total_b) if total_b else max(0, self.done_bytes)
            done_m = min(self.done_messages, total_m) if total_m else self.done_messages
            return done_b, total_b, done_m, total_m

    def _eta(self, done_b: int, total_b: int) -> str:
        eta = self._rate.eta(total_b - done_b) if total_b else None
        return human_duration(eta) if eta is not None else "--:--"

    def render(self, width: int) -> str:
        """The bar: folder, messages, percent, bar, bytes, rate, ETA (cut to ``width``)."""
        done_b, total_b, done_m, total_m = self.snapshot()
        with self._lock:
            name = _tail(self._folder, 24)
        share = done_b / total_b if total_b else (done_m / total_m if total_m else 0.0)
        left = _("{folder} {done}/{total} msgs").format(folder=name, done=done_m,
                                                       total=total_m).strip()
        right = _("{done}/{total} {rate} ETA {eta}").format(
            done=human_size(done_b), total=human_size(total_b),
            rate=human_rate(self._rate.rate), eta=self._eta(done_b, total_b))
        pct = f"{int(share * 100):3d}%"
        # columns, not characters: a Japanese folder name takes two per character, and a
        # bar one column too wide wraps and is drawn again on a new line at every tick
        room = width - columns(left) - columns(right) - len(pct) - 5
        if room >= 10:
            filled = int(room * share)
            return f"{left} {pct}|{'█' * filled}{' ' * (room - filled)}| {right}"
        return _head(f"{left} {pct} {right}", max(1, width - 1))

    def line_text(self) -> str:
        """The plain line for a log: bytes, messages, rate, ETA."""
        done_b, total_b, done_m, total_m = self.snapshot()
        share = done_b / total_b if total_b else 0.0
        return _("progress: {done} of {total} ({pct}%), {m} of {mt} messages, {rate}, "
                 "about {eta} left").format(
            done=human_size(done_b), total=human_size(total_b), pct=int(share * 100),
            m=done_m, mt=total_m, rate=human_rate(self._rate.rate),
            eta=self._eta(done_b, total_b))

    def _tick(self) -> None:
        step = 0.25 if self.mode == "bar" else min(0.5, self.interval)
        while not self._stop.wait(step):
            with self._lock:
                done = self.done_bytes
            self._rate.update(done)
            if self.mode == "bar":
                self.console.status(self.render(self.console.width()))
            elif time.monotonic() - self._last_line >= self.interval:
                self._last_line = time.monotonic()
                self.console.line(self.line_text())


def columns(text: str) -> int:
    """Terminal columns of ``text`` (East Asian wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _tail(text: str, width: int) -> str:
    """The end of ``text`` in at most ``width`` columns, "…" first when cut."""
    if columns(text) <= width:
        return text
    out: list[str] = []
    used = 1
    for ch in reversed(text):
        used += columns(ch)
        if used > width:
            break
        out.append(ch)
    return "…" + "".join(reversed(out))


def _head(text: str, width: int) -> str:
    """The start of ``text`` in at most ``width`` columns."""
    out: list[str] = []
    used = 0
    for ch in text:
        used += columns(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(out)


def terminal_progress(console: Console, quiet: bool, verbose: bool = False) -> TerminalProgress:
    """A bar on a terminal, plain lines on a pipe or log, nothing with ``--quiet``.

    Folder lines on a terminal, and with ``-v`` always (``--json`` changes
    nothing here: all of this is on stderr, stdout keeps only the JSON).
    """
    tty = console.isatty()
    mode = "off" if quiet else ("bar" if tty else "lines")
    return TerminalProgress(console, mode, folder_lines=(tty or verbose) and not quiet,
                            quiet=quiet, verbose=verbose)
