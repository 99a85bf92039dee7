"""IMAP COMPRESS=DEFLATE (RFC 4978): the connection's bytes deflated both ways.

Mail is mostly text, and a home link is slower than either end's CPU: with
the stream compressed, a backup over a 100 Mbit/s line can finish faster
than the line could carry the uncompressed bytes.  On loopback or a LAN it
only costs CPU on both ends, so the session asks for it only when the link
is slow (see :meth:`archiver.sources.session.ImapSession._maybe_compress`).

imaplib reads through ``self.file`` (``readline``/``read``) and writes with
``self.send``; :func:`enable` swaps both for a raw-deflate layer over the
same socket, so everything above (imapclient, the pipelined fetch) is
unchanged.  The socket itself (timeouts, shutdown) stays as it was.
"""

from __future__ import annotations

import imaplib
import io
import socket
import zlib
from typing import Any

_CHUNK = 256 << 10

# imaplib refuses a command it does not know; imapclient registers its own
# extensions (XLIST, ID, UNSELECT …) the same way.
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class _InflatingReader(io.RawIOBase):
    """The server's deflated byte stream, inflated (raw deflate, no zlib header)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._inflate = zlib.decompressobj(-15)
        self._out = b""  # inflated bytes not yet handed out

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._out:
            tail = self._inflate.unconsumed_tail
            if tail:
                self._out = self._inflate.decompress(tail, _CHUNK)
                continue
            data = self._sock.recv(_CHUNK)
            if not data:
                return 0  # EOF: imaplib turns it into an abort
            self._out = self._inflate.decompress(data, _CHUNK)
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


class _Deflater:
    """Commands deflated and flushed (Z_SYNC_FLUSH) so the server sees each at once."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def send(self, data: bytes) -> None:
        self._sock.sendall(self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH))


def enable(imap: Any) -> None:
    """Switch an imaplib connection whose ``COMPRESS DEFLATE`` was just accepted.

    The server starts compressing right after its tagged OK, and sends
    nothing unasked before our next command, so no compressed byte can be
    sitting in the old file's buffer.
    """
    sock = imap.sock
    imap.file = io.BufferedReader(_InflatingReader(sock), buffer_size=_CHUNK)
    imap.send = _Deflater(sock).send
