"""The sources a backup reads from: IMAP (imap.py) and POP3 (pop3.py)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from archiver.account import Endpoint


def make_source(endpoint: Endpoint, password: str, timeout: float = 60.0, trace: bool = False,
                compress: str = "auto", allow_seen: bool = False,
                on_alert: Optional[Callable[[str], None]] = None) -> Any:
    """An IMAP or POP3 source for a parsed endpoint (not yet connected).

    One place for the choice, so the CLI and the web page build the same
    source from the same settings; ``on_alert`` shows an IMAP [ALERT] at
    once (RFC 3501 7.1).  Imported lazily: a command needs one protocol.
    """
    if endpoint.protocol == "pop3":
        from archiver.sources.pop3 import Pop3Source

        return Pop3Source(endpoint, password, timeout=timeout, allow_seen=allow_seen)
    from archiver.sources.imap import ImapSource

    src = ImapSource(endpoint, password, timeout=timeout, trace=trace, compress=compress)
    if on_alert is not None:
        src.alert_watch.on_alert = on_alert
    return src
