"""What a server may make of an archived message, and one normal form to compare the two.

IMAP servers do not keep every byte they are given on APPEND, so the copy
on the target can differ from the archived bytes although it *is* that
message.  The rewrites seen in practice:

* **Dovecot** stores LF line ends and serves CRLF: every CRLF becomes LF on
  the way in and every LF not preceded by CR becomes CRLF on the way out.
  So a bare LF gains a CR, ``CR CR LF`` loses one CR, a lone CR elsewhere is
  kept, and a CR at the very end of the message is dropped.  NUL bytes are
  served as 0x80.
* **Courier** adds CRLF to a message that does not end in a newline.
* Some servers (and mail programs that copied mail across by hand) turn
  every bare CR and bare LF into CRLF.

Two tools, computed in one pass over the bytes (:class:`Profiler`, fed in
chunks so that a big message need not be in memory at once):

* ``sizes`` -- every RFC822.SIZE the target may report for the message
  under those rewrites (alone and combined with Courier's final CRLF), so
  the deduplication can compare sizes without downloading anything;
* ``norm`` -- the SHA-256 of the message's **normal form**, which a
  downloaded target copy is compared with (``restore --verify``, or when a
  size match is ambiguous).  The normal form is: NUL -> 0x80; every line end
  -- a run of CRs followed by LF, a lone LF, or a lone CR -- becomes one LF;
  the line ends at the very end are dropped and one LF is added.  It is the
  same for every rewrite above, with one exception that cannot be helped: a
  bare CR right before a line end (``CR CR LF``) is one line end for Dovecot
  (it drops the CR) and two for a server that makes the bare CR a CRLF.

``head`` is the identity of a message without Message-ID: a hash of the
first :data:`IDENT_BYTES` of the normal form (so it, too, survives the
rewrites).  docs/FORMAT.md ("The restore journal") documents these rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

IDENT_BYTES = 1000  # of the normal form, hashed as the identity of a message without Message-ID
_LINE_END = re.compile(rb"\r*\n|\r")
_FLUSH = 1 << 16


@dataclass(frozen=True)
class Profile:
    """What matching needs to know about one message's bytes."""

    size: int
    sizes: frozenset[int]  # the sizes a target may report for it (``size`` included)
    norm: str  # hex SHA-256 of the normal form
    head: str  # "h:" + hash of the normal form's first IDENT_BYTES
    sha256: str  # hex SHA-256 of the exact bytes


class Profiler:
    """Feed a message's bytes in chunks (:meth:`update`); :meth:`finish` gives its Profile.

    Line ends can straddle two chunks, so a run of CR/LF bytes at a chunk's
    end is held (as counts, not bytes) until the next chunk shows how it ends.
    """

    def __init__(self) -> None:
        self._exact = hashlib.sha256()
        self._norm = hashlib.sha256()
        self._head = bytearray()
        self._lfs = 0  # line ends of the pending CR/LF run that are complete
        self._crs = 0  # CRs at the end of the pending run (one line end each unless LF follows)
        self._n = 0
        self._crlf = 0
        self._lf = 0
        self._cr = 0
        self._crcrlf = 0
        self._tail = b""  # the last two bytes seen
        self._trailing_crs = 0
        self._before_crs = b""  # the last byte that is not a CR

    # ------------------------------------------------------------ feeding

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._exact.update(chunk)
        self._count(chunk)
        rest = chunk.lstrip(b"\r\n")
        if not rest:
            self._run(chunk)
            return
        lead = len(chunk) - len(rest)
        self._run(chunk[:lead])
        self._flush()
        body = rest.rstrip(b"\r\n")
        self._emit(_line_ends(body).replace(b"\0", b"\x80"))
        self._run(rest[len(body):])

    def head_so_far(self) -> str:
        """The identity from what was fed, when that is only the start of the message."""
        return _head_ident(bytes(self._head))

    def finish(self) -> Profile:
        self._lfs = self._crs = 0  # line ends at the very end do not count ...
        self._emit(b"\n")  # ... one is added
        return Profile(self._n, self._sizes(), self._norm.hexdigest(),
                       _head_ident(bytes(self._head)), self._exact.hexdigest())

    # ------------------------------------------------------------ the normal form

    def _run(self, run: bytes) -> None:
        """Fold a run of CR/LF bytes into the pending line-end counts."""
        if not run:
            return
        if b"\n" in run:
            # CRs followed by LF belong to that LF's line end: only those after the last count
            self._lfs += run.count(b"\n")
            self._crs = len(run) - len(run.rstrip(b"\r"))
        else:
            self._crs += len(run)

    def _flush(self) -> None:
        pending = self._lfs + self._crs
        self._lfs = self._crs = 0
        while pending:
            step = min(pending, _FLUSH)
            self._emit(b"\n" * step)
            pending -= step

    def _emit(self, data: bytes) -> None:
        self._norm.update(data)
        if len(self._head) < IDENT_BYTES:
            self._head += data[:IDENT_BYTES - len(self._head)]

    # ------------------------------------------------------------ the sizes

    def _count(self, chunk: bytes) -> None:
        both = self._tail + chunk  # a CRLF or CR CR LF may straddle the chunks

        def new(pattern: bytes) -> int:
            return both.count(pattern) - self._tail.count(pattern)

        self._n += len(chunk)
        self._crlf += new(b"\r\n")
        self._crcrlf += new(b"\r\r\n")
        self._lf += chunk.count(b"\n")
        self._cr += chunk.count(b"\r")
        self._tail = both[-2:]
        stripped = chunk.rstrip(b"\r")
        if stripped:
            self._trailing_crs = len(chunk) - len(stripped)
            self._before_crs = stripped[-1:]
        else:
            self._trailing_crs += len(chunk)

    def _sizes(self) -> frozenset[int]:
        n, tail = self._n, self._tail
        bare_lf = self._lf - self._crlf
        bare_cr = self._cr - self._crlf
        ends_lf = tail.endswith(b"\n")
        ends_cr = tail.endswith(b"\r")
        variants = [
            (n, ends_lf),  # kept as it is
            (n + bare_lf, ends_lf),  # bare LF -> CRLF
            (n - self._trailing_crs + bare_lf, self._before_crs == b"\n"),  # and final CRs gone
            # Dovecot: CRLF -> LF, a final CR dropped, then LF -> CRLF
            (n - self._crlf - ends_cr + self._lf - self._crcrlf, ends_lf or tail == b"\n\r"),
            (n + bare_lf + bare_cr, ends_lf or ends_cr),  # every line end CRLF
        ]
        out = {size for size, _ in variants}
        out.update(size + 2 for size, newline in variants if not newline)  # Courier
        return frozenset(out)


def _line_ends(text: bytes) -> bytes:
    """Every run of CRs followed by LF, and every lone CR, as one LF.

    ``bytes.replace`` is about ten times faster than the regex; a run of more
    than two CRs before an LF (rare) needs more passes, so the regex takes over.
    """
    for _ in range(3):
        shorter = text.replace(b"\r\n", b"\n")
        if len(shorter) == len(text):
            return shorter.replace(b"\r", b"\n")
        text = shorter
    return _LINE_END.sub(b"\n", text)


def _head_ident(normal_prefix: bytes) -> str:
    return "h:" + hashlib.sha256(normal_prefix[:IDENT_BYTES]).hexdigest()[:32]


def profile(chunks: Iterable[bytes]) -> Profile:
    """The Profile of a message given as chunks (or a one-element list of its bytes)."""
    p = Profiler()
    for chunk in chunks:
        p.update(chunk)
    return p.finish()


def head_ident(served_head: bytes, complete: bool) -> str:
    """Identity of a message without Message-ID from its first bytes (``complete``: all of it)."""
    p = Profiler()
    p.update(served_head)
    return p.finish().head if complete else p.head_so_far()


def normal_form(data: bytes) -> bytes:
    """The normal form itself (for tests and docs; matching uses the streamed hash)."""
    text = _LINE_END.sub(b"\n", data.replace(b"\0", b"\x80"))
    return text.rstrip(b"\n") + b"\n"
