"""mboxrd quoting: whole messages, and streams cut at arbitrary points.

A line (split at LF) that matches ``>*From `` gets one more ``>`` when a
message goes into an mbox file, and loses exactly one when it is read back;
docs/FORMAT.md describes it.  :func:`quote` and :func:`unquote` work on a
whole message.  :class:`StreamQuoter` does the same to a message read (or
written) in chunks, so a large message is never held whole: the transform
works line by line, and a chunk may end inside a line, so the start of a line
that could still become a ``>*From `` line is carried over to the next chunk.
That carry stays a few bytes long: a long run of ``>`` is passed on early,
because adding or removing one ``>`` anywhere in the run gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
# The start of a line that may still turn out to match ``>*From ``: undecided.
_UNDECIDED = re.compile(rb">*(?:F(?:r(?:o(?:m)?)?)?)?")


def quote(data: bytes) -> bytes:
    """mboxrd quoting: every line matching ``>*From `` gets one more ``>``.

    Most messages have no ``From `` at all: a substring test (C speed) skips
    the regex, which is most of the cost of writing an mbox.
    """
    if b"From " not in data:
        return data
    return _QUOTE.sub(rb">\1", data)


def unquote(data: bytes) -> bytes:
    """Reverse :func:`quote` exactly."""
    if b">From " not in data:
        return data
    return _UNQUOTE.sub(rb"\1", data)


class StreamQuoter:
    """:func:`quote` or :func:`unquote` applied to a stream of chunks.

    ``b"".join(feed(c) for c in chunks) + end()`` equals the whole-message
    transform of ``b"".join(chunks)``, however the chunks are cut.  What is
    held back between calls is at most a few bytes, so memory follows the
    chunk size, not the message size.
    """

    def __init__(self, whole: Callable[[bytes], bytes]) -> None:
        self._whole = whole
        self._carry = b""  # the start of an undecided line (a few bytes)
        self._midline = False  # inside a line already decided: pass it on up to its LF

    @classmethod
    def quoting(cls) -> StreamQuoter:
        return cls(quote)

    @classmethod
    def unquoting(cls) -> StreamQuoter:
        return cls(unquote)

    def feed(self, data: bytes) -> bytes:
        """The transformed bytes that ``data`` completes (some may be held back)."""
        if not self._carry and b"From" not in data:
            return self._plain(data)
        head = b""
        if self._midline:
            nl = data.find(b"\n")
            if nl < 0:
                return data
            head, data = data[: nl + 1], data[nl + 1 :]
            self._midline = False
        if self._carry:
            data, self._carry = self._carry + data, b""
        cut = data.rfind(b"\n") + 1  # data[:cut] is whole lines, starting at a line start
        if cut == len(data):
            return head + self._whole(data)
        lines, part = data[:cut], data[cut:]
        done = self._whole(lines) if lines else b""
        return head + done + self._last_line(part)

    def _plain(self, data: bytes) -> bytes:
        """``data`` holds no ``From``: nothing in it changes, only its end may be held.

        The common case (a chunk of base64 or text), so it copies nothing: the
        bytes go back as they came unless the chunk ends in an undecided line start.
        """
        cut = data.rfind(b"\n") + 1
        if cut == 0 and self._midline:
            return data
        if cut == len(data):
            self._midline = False
            return data
        part = data[cut:]
        if not _UNDECIDED.fullmatch(part):
            self._midline = True
            return data
        self._midline = False
        return data[:cut] + self._last_line(part)

    def _last_line(self, part: bytes) -> bytes:
        """The start of the last, unfinished line: hold it if still undecided."""
        if _UNDECIDED.fullmatch(part):
            run = len(part) - len(part.lstrip(b">"))
            keep = max(run - 1, 0)  # the rest of a '>' run commutes with the '>' added/removed
            self._carry = part[keep:]
            return part[:keep]
        self._midline = True
        return self._whole(part)

    def end(self) -> bytes:
        """What is still held back: an unfinished last line, which cannot match."""
        carry, self._carry = self._carry, b""
        self._midline = False
        return carry

    def stream(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` passed through this quoter: :meth:`feed` each, then :meth:`end`."""
        for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
        rest = self.end()
        if rest:
            yield rest
