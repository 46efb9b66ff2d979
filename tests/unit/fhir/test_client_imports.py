"""A request to the EHR searches for no module: httpcore asks `sniffio` which event loop runs,
importing it on every request and connection, and without it installed each ask was a failed
import, a search of every `sys.path` entry (about 0.15 ms each here; 17 % of the writeback's
CPU while it wrote back, in a py-spy profile of the fault matrix). `sniffio` is a dependency of
cdsflow-fhir for that reason; this test fails if it goes, or if another failed import appears
on the request path."""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import httpx

from cdsflow.fhir import EhrClient

ANSWER = b'{"resourceType":"Bundle","type":"transaction-response","entry":[]}'


class ImportSearches(importlib.abc.MetaPathFinder):
    """Records each module searched for (a module already imported is not searched)."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        self.searched.append(fullname)
        return None  # the finders after this one decide


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server answering every request with a transaction-response."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
            )
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass  # the client closed its connection
    finally:
        writer.close()


async def test_a_transaction_to_the_ehr_searches_for_no_module() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    searches = ImportSearches()
    try:
        async with httpx.AsyncClient() as http:
            ehr = EhrClient(f"http://127.0.0.1:{port}/fhir", http)
            await ehr.transaction(bundle)  # first use: whatever is imported lazily, once
            sys.meta_path.insert(0, searches)
            try:
                answers = await asyncio.gather(*(ehr.transaction(bundle) for _ in range(4)))
            finally:
                sys.meta_path.remove(searches)
    finally:
        server.close()
        await server.wait_closed()
    assert [answer["type"] for answer in answers] == ["transaction-response"] * 4
    assert searches.searched == []
