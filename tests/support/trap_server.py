"""A trap: a TCP listener on a free loopback port that records every connection made to it.

It records at the TCP level, before anything is read, so that a TLS handshake or a request
that is not HTTP at all is caught as well as a plain HTTP one. It answers whatever arrives with
a usable FHIR searchset, so that a caller that reached it would also get something it could use
(an SSRF that "worked" would not hide behind an error answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

SEARCHSET = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
    + f"Content-Length: {len(SEARCHSET)}\r\nConnection: close\r\n\r\n".encode()
    + SEARCHSET
)


@dataclass
class Trap:
    """The connections the trap received: the first line each sent ('' if it sent none)."""

    port: int
    visits: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1", scheme: str = "http", path: str = "/fhir") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def visited(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.visits)
        self.visits.append("")  # recorded on connect, before a byte is read
        try:
            async with asyncio.timeout(5):
                first = await reader.readline()
            self.visits[index] = first.decode("latin-1").strip()
            writer.write(ANSWER)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def trap_server() -> AsyncIterator[Trap]:
    """A `Trap` listening on 127.0.0.1 (a free port) while the block runs."""
    trap = Trap(port=0)
    server = await asyncio.start_server(trap.visited, "127.0.0.1", 0)
    trap.port = server.sockets[0].getsockname()[1]
    try:
        yield trap
    finally:
        server.close()
        await server.wait_closed()
