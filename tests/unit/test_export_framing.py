"""An mbox entry written from chunks equals the one the whole message gave (hypothesis).

The oracle is the whole-message framing export used before it streamed
(``_whole_entry``, kept here verbatim): line end from the first LF, mboxrd
quoting, a final line end if missing, and the second empty line for a
message without an LF-only empty line.  Chunks are cut anywhere: inside
``From`` lines, between CR and LF, between the two LFs of an empty line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from archiver.export.framing import Message, write_mbox_entry
from archiver.stores.mbox import quote

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
_LF_EMPTY_LINE = re.compile(rb"(?:^|\n)\n")


def _line_end(data: bytes) -> bytes:
    i = data.find(b"\n")
    return b"\r\n" if i > 0 and data[i - 1 : i] == b"\r" else b"\n"


def _whole_entry(from_line: str, data: bytes, extra_headers: Iterable[str] = (), *,
                 lf_blank_line: bool = False) -> bytes:
    eol = _line_end(data)
    head = b"".join(h.encode("utf-8") + eol for h in extra_headers)
    body = quote(data)
    if body and not body.endswith(b"\n"):
        body += eol
    sep = b"\n\n" if lf_blank_line and not _LF_EMPTY_LINE.search(head + body) else b"\n"
    return from_line.encode("ascii", "replace") + b"\n" + head + body + sep


TOKENS = st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"From ", b">From ", b">", b"x",
                          b"Subject: s", b" "])
MESSAGE = st.lists(TOKENS, max_size=40).map(b"".join)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@FUZZ
@given(MESSAGE, st.lists(st.integers(0, 200), max_size=10), st.booleans(),
       st.sampled_from([(), ("X-Mozilla-Status: 0001", "X-Mozilla-Keys: ")]))
@example(b"x\r\n\n\ny", [2, 3], True, ())
@example(b"\nFrom a", [1], True, ())
@example(b"xxxx\r\ny", [4], False, ("X-A: 1",))
def test_chunked_entry_equals_the_whole_message_entry(data: bytes, cuts: list[int],
                                                      lf_blank_line: bool,
                                                      extra: tuple[str, ...]) -> None:
    pieces = _pieces(data, cuts)
    out: list[bytes] = []
    write_mbox_entry(out.append, "From - x", Message(lambda: iter(pieces)), extra,
                     lf_blank_line=lf_blank_line)
    assert b"".join(out) == _whole_entry("From - x", data, extra, lf_blank_line=lf_blank_line)
