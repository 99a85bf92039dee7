"""The APPEND writer never completes a literal whose source turned out other than announced.

Against a scripted connection (what the client sends is recorded, every
APPEND is answered OK): a source shorter, longer or failing after the
``{n+}`` went out stops the writer before the literal's last byte, the
commands sent before it are answered and yielded, and nothing more is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from archiver.restore.target import AppendAborted, AppendItem, AppendResult, AppendWriter

CAPS = frozenset({"IMAP4rev1", "LITERAL+", "MULTIAPPEND", "UIDPLUS"})
_TAG = re.compile(rb"(ap\d+) APPEND ")


class ScriptedImap:
    """Records what is sent; answers each APPEND it has seen with OK, in order."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.answered = 0
        self.closed = False

    def send(self, data: bytes) -> None:
        assert not self.closed, "sent after the line was dropped"
        self.sent += data

    def readline(self) -> bytes:
        tags = _TAG.findall(bytes(self.sent))
        assert self.answered < len(tags), "the writer waits for an answer that cannot come"
        tag = tags[self.answered]
        self.answered += 1
        return tag + b" OK [APPENDUID 7 %d] done\r\n" % self.answered

    def read(self, n: int) -> bytes:
        raise AssertionError("no literal in an answer here")

    def shutdown(self) -> None:
        self.closed = True


def _source(data: bytes, fault: str) -> Iterator[bytes]:
    yield data[: len(data) // 2]
    if fault == "error":
        raise OSError(5, "Input/output error")
    if fault == "long":
        yield data[len(data) // 2:]
        yield b"one byte too many"


@pytest.mark.parametrize("fault", ["short", "long", "error"])
@pytest.mark.parametrize("group_count", [1, 50])
def test_a_source_unlike_its_announced_size_never_completes_its_literal(
        fault: str, group_count: int) -> None:
    imap = ScriptedImap()
    writer = AppendWriter(imap, CAPS, group_count=group_count)  # type: ignore[arg-type]
    good = [AppendItem.of(b"Subject: %d\r\n\r\nbody\r\n" % i, token=i) for i in range(3)]
    # big enough that its first half goes out at once (pieces over 256 KiB are not pooled)
    data = b"Subject: broken\r\n\r\n" + b"x" * 600_000 + b"\r\n"
    broken = AppendItem(len(data), (), None, "broken", read=lambda: _source(data, fault))
    results: list[AppendResult] = []
    with pytest.raises(AppendAborted) as caught:
        for batch in writer.append(b"INBOX", [*good, broken]):
            results.extend(batch)
    assert caught.value.item is broken and imap.closed
    head = b"{%d+}\r\n" % len(data)
    announced = bytes(imap.sent).rfind(head)
    if fault == "long":
        assert announced > 0  # its first half went out: a whole source, then one byte more
    if announced >= 0:
        literal = bytes(imap.sent)[announced + len(head):]
        assert len(literal) < len(data), "the literal was completed"
    if group_count == 1:  # the three before it went as their own commands: answered
        assert [r.item.token for r in results] == [0, 1, 2] and all(r.ok for r in results)
    else:  # one MULTIAPPEND with the broken one in it: abandoned whole
        assert results == []
