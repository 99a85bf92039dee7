"""One archived message copied out in chunks, and its mbox framing, for every export form.

An export never holds a whole message: :class:`Message` reads the archive
through :meth:`archiver.stores.base.Store.message_chunks` (mbox archives are
unquoted on the fly), keeps only the first chunk (the header, the line end
and the envelope sender come from there) and hands the rest on as it comes.
A failure to *read* is :class:`Unreadable`, so the export can report that
message and go on, while a failure to *write* stays an OSError and ends the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Optional

from archiver.state import MessageEntry
from archiver.stores.base import CHUNK, Store
from archiver.stores.mboxrd import StreamQuoter

Chunks = Callable[[], Iterable[bytes]]
COPY_CHUNK = CHUNK  # bytes read from the archive at a time


class Unreadable(Exception):
    """The archive could not give a message's bytes (missing file, I/O error, no offset)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(getattr(cause, "strerror", None) or str(cause))
        self.cause = cause


class Message:
    """An archived message, read once from the start; ``first`` is its first chunk."""

    def __init__(self, read: Chunks) -> None:
        self._read = read
        self._rest = self._guarded(read())
        self.first = next(self._rest, b"")
        self.copied = 0  # bytes handed on by chunks()

    @classmethod
    def archived(cls, store: Store, entry: MessageEntry) -> Message:
        return cls(lambda: store.message_chunks(entry, COPY_CHUNK))

    @classmethod
    def of(cls, data: bytes) -> Message:
        return cls(lambda: (data,))

    @staticmethod
    def _guarded(chunks: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if chunk:
                    yield chunk
        except (OSError, ValueError) as exc:
            raise Unreadable(exc) from exc

    def chunks(self) -> Iterator[bytes]:
        """The message's bytes in order (once)."""
        pieces = self._rest
        chunk = self.first
        while chunk:
            self.copied += len(chunk)
            yield chunk
            chunk = next(pieces, b"")

    def line_end(self) -> bytes:
        """The message's own line end: CRLF if its first LF follows a CR, else LF.

        Decided from the first chunk; only a first line longer than a chunk
        makes it read the start of the message again.
        """
        found = _first_lf(self.first, b"")
        if found is None and len(self.first) >= 1:
            prev = b""
            for chunk in self._guarded(self._read()):
                found = _first_lf(chunk, prev)
                if found is not None:
                    break
                prev = chunk[-1:]
        return found or b"\n"


def _first_lf(chunk: bytes, prev: bytes) -> Optional[bytes]:
    """The line end the first LF in ``chunk`` makes (``prev``: the byte before the chunk)."""
    i = chunk.find(b"\n")
    if i < 0:
        return None
    before = chunk[i - 1 : i] if i > 0 else prev
    return b"\r\n" if before == b"\r" else b"\n"


_LF_EMPTY_LINE = re.compile(rb"(?:^|\n)\n")


def write_mbox_entry(write: Callable[[bytes], None], from_line: str, msg: Message,
                     extra_headers: Iterable[str] = (), *, lf_blank_line: bool = False) -> None:
    """One mbox entry: the ``From `` line (LF), ``extra_headers`` (in the message's own
    line ends), the mboxrd-quoted message, its final line end if it lacked one, and
    the separating empty line (LF).

    ``lf_blank_line``: if the message has no LF-only empty line (every CRLF
    message), add a second empty line.  GNU mailutils ends a header only at an
    LF-only empty line and does not look for ``From `` lines before that, so it
    would take the next message for part of this one.
    """
    eol = msg.line_end()
    head = b"".join(h.encode("utf-8") + eol for h in extra_headers)
    write(from_line.encode("ascii", "replace") + b"\n" + head)
    quoter = StreamQuoter.quoting()
    # an LF "before" the entry, so that an empty line at its very start counts
    tail = head[-1:] or b"\n"
    empty_line = not lf_blank_line or _LF_EMPTY_LINE.search(head) is not None
    last = b""
    for piece in quoter.stream(msg.chunks()):
        if not empty_line:
            empty_line = b"\n\n" in tail + piece[:1] or b"\n\n" in piece
        tail = last = piece[-1:]
        write(piece)
    if last and last != b"\n":
        write(eol)
    write(b"\n\n" if lf_blank_line and not empty_line else b"\n")


def mbox_entry(from_line: str, data: bytes, extra_headers: Iterable[str] = (), *,
               lf_blank_line: bool = False) -> bytes:
    """:func:`write_mbox_entry` of a message held in memory, as bytes."""
    out: list[bytes] = []
    write_mbox_entry(out.append, from_line, Message.of(data), extra_headers,
                     lf_blank_line=lf_blank_line)
    return b"".join(out)
