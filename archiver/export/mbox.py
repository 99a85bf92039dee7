"""mboxrd files, one per folder, in the same tree shape as the Thunderbird export.

Each message: ``From <Return-Path address, else MAILER-DAEMON> <INTERNALDATE as
asctime, UTC>`` (never the current time), then the message bytes exactly,
mboxrd-quoted (a line matching ``^>*From `` gets one more ``>``), its final
line end if it lacked one, and an empty line -- two for a message without an
LF-only empty line (CRLF mail), so GNU mailutils finds the next message too.
Flags are not written (plain mbox has no standard place for them; the
Thunderbird and Maildir exports keep them).
"""

from __future__ import annotations

import re

from archiver.export.common import asctime_utc, received
from archiver.export.framing import Message, write_mbox_entry
from archiver.export.thunderbird import ThunderbirdWriter
from archiver.headers import header_block
from archiver.offline.catalog import Item

_RETURN_PATH = re.compile(rb"(?im)^return-path[ \t]*:[ \t]*<?([^<>\s]*)>?")


def envelope_sender(data: bytes) -> str:
    """The Return-Path address (one printable ASCII word), else ``MAILER-DAEMON``."""
    match = _RETURN_PATH.search(header_block(data))
    if match:
        addr = match.group(1)
        if addr and all(0x21 <= b <= 0x7E for b in addr):
            return addr.decode("ascii")
    return "MAILER-DAEMON"


class MboxWriter(ThunderbirdWriter):
    def add(self, item: Item, msg: Message) -> None:
        # the first chunk holds the header (a chunk is 1 MiB; the store itself takes
        # the sender from the first 256 KiB)
        with self.files.entry():
            write_mbox_entry(self.files.write, f"From {envelope_sender(msg.first)} "
                             f"{asctime_utc(received(item))}", msg, lf_blank_line=True)
