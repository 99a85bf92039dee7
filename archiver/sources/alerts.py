"""IMAP ``[ALERT]`` response codes: what the server says must reach the user (RFC 3501 7.1).

An alert can come anywhere: in the greeting, untagged (``* OK [ALERT] …``,
``* NO [ALERT] …``) after any command, or in a tagged answer
(``a1 NO [ALERT] Password expired``).  imaplib forgets untagged OK/NO lines
at the start of the next command and keeps no text for the ALERT code, and
the pipelined APPEND writer reads the socket itself, so the one place that
sees every response line is the connection's ``readline``: :class:`AlertWatch`
wraps it.  Each distinct alert is reported once per session (a reconnect
repeats the greeting), its text cleaned of control characters, so a server
cannot move the cursor or rewrite the terminal line.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable, Optional

from archiver.i18n import _

_ALERT = re.compile(rb"^(?:\*|[^\s*+]+) (?:OK|NO|BAD|BYE|PREAUTH) \[ALERT\] ?(.*?)\r?\n?$",
                    re.IGNORECASE | re.DOTALL)
MAX_TEXT = 500  # characters of one alert kept; a server may send a line of megabytes
_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(raw: bytes, limit: int = MAX_TEXT) -> str:
    """Server text safe for one terminal line: control and format characters become '?'."""
    text = raw[: limit * 4].decode("utf-8", errors="replace")
    clean = "".join("?" if unicodedata.category(c) in _UNSAFE else c for c in text)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def alert_text(line: bytes) -> Optional[str]:
    """The text of an ``[ALERT]`` response line (greeting, untagged or tagged), else None."""
    m = _ALERT.match(line)
    if m is None:
        return None
    return printable(m.group(1)) or "(no text)"


def alert_notes(session: object) -> list[str]:
    """The [ALERT]s a session heard (``server alert from HOST: TEXT``); POP3 has none."""
    notes = getattr(session, "alert_notes", None)
    return list(notes()) if callable(notes) else []


class AlertWatch:
    """Collects a session's alerts from every response line it reads."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.alerts: list[str] = []  # distinct texts, in arrival order
        self.heard: list[str] = []  # every alert line's text (repeats too), for login errors
        self.on_alert: Optional[Callable[[str], None]] = None
        # From the greeting until the login is accepted alerts are held: a refused login
        # says them in its one-line error instead (:meth:`connected`, :meth:`since_connect`).
        self._held: Optional[list[str]] = None
        self._mark = 0

    def line(self, text: str) -> str:
        """How an alert is shown and kept in a summary's notes."""
        return _("server alert from {host}: {text}").format(host=self.host, text=text)

    def notes(self) -> list[str]:
        return [self.line(text) for text in self.alerts]

    def seen(self, raw: bytes) -> None:
        text = alert_text(raw)
        if text is None:
            return
        if len(self.heard) < 100:
            self.heard.append(text)
        if text in self.alerts:
            return
        self.alerts.append(text)
        if self._held is not None:
            self._held.append(text)
        elif self.on_alert is not None:
            self.on_alert(self.line(text))

    def since_connect(self) -> list[str]:
        """Every alert text of this connection so far (for a refused login's error)."""
        return self.heard[self._mark:]

    def connected(self) -> None:
        """The login was accepted: show the alerts held since the greeting."""
        held, self._held = self._held or [], None
        if self.on_alert is not None:
            for text in held:
                self.on_alert(self.line(text))

    def watch(self, imap: Any) -> None:
        """Look at the greeting, then at every line ``imap`` (an imaplib.IMAP4) reads."""
        self._held, self._mark = [], len(self.heard)
        welcome = getattr(imap, "welcome", None)
        if isinstance(welcome, bytes):
            self.seen(welcome)
        # imaplib's constructor already sent CAPABILITY and read its answer: an alert
        # right after the greeting (Cyrus sends its motd so) is only in the untagged
        # responses it kept, as the text after "OK" (the ALERT code's own entry is empty).
        untagged = getattr(imap, "untagged_responses", None)
        if isinstance(untagged, dict):
            for kind in ("OK", "NO", "BAD"):
                for text in untagged.get(kind, ()):
                    if isinstance(text, bytes) and text[:7].upper() == b"[ALERT]":
                        self.seen(b"* " + kind.encode() + b" " + text)
        read = imap.readline

        def readline() -> bytes:
            raw: bytes = read()
            if raw[:1] != b"+":
                self.seen(raw)
            return raw

        imap.readline = readline
