#!/usr/bin/env python3
"""scripts/link.py LISTEN_PORT TARGET_PORT DELAY_MS MBIT -- a home line on 127.0.0.1.

A TCP proxy for benchmarks: every byte is held DELAY_MS in each direction
(round trip 2 x DELAY_MS) and each direction carries at most MBIT megabits
per second **in total, over all connections**, as one home line does.

Why not ../shared/bench/link.py: that proxy caps each *connection* at MBIT,
so a client with three connections gets three lines' worth of bandwidth and
can "beat" the link floor without compressing anything.  archiver opens
several connections over a slow link (``--connections``), so its figures
must come from a link whose capacity is shared; single-connection tools
(mbsync, rawfetch) see the same link either way.

Usage: ``python3 scripts/link.py 27993 10993 20 100`` then point the client
at 127.0.0.1:27993.
"""

from __future__ import annotations

import asyncio
import sys
import time


class Line:
    """One direction of the line: a FIFO whose bytes leave at RATE, then fly DELAY."""

    def __init__(self, rate: float, delay: float) -> None:
        self.rate = rate
        self.delay = delay
        self.free_at = time.monotonic()

    def schedule(self, nbytes: int) -> float:
        """When the chunk's last byte arrives at the far end."""
        self.free_at = max(self.free_at, time.monotonic()) + nbytes / self.rate
        return self.free_at + self.delay


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: Line) -> None:
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def receive() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                await queue.put((time.monotonic() + line.delay, None))
                return
            await queue.put((line.schedule(len(data)), data))

    async def deliver() -> None:
        while True:
            when, data = await queue.get()
            wait = when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(receive(), deliver(), return_exceptions=True)


async def main(listen: int, target: int, delay_ms: float, mbit: float) -> None:
    rate = mbit * 1e6 / 8
    down, up = Line(rate, delay_ms / 1000), Line(rate, delay_ms / 1000)

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(cr, sw, up), pipe(sr, cw, down), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                     float(sys.argv[4])))
