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
from starlette.types import Receive, Scope, Send

from cdsflow.fhir import EhrClient
from tests.support.asgi import serve_app

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


async def _ehr(scope: Scope, receive: Receive, send: Send) -> None:
    """An EHR that answers every request with an empty transaction-response."""
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/fhir+json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


async def test_a_transaction_to_the_ehr_searches_for_no_module() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    searches = ImportSearches()
    async with serve_app(_ehr) as base_url, httpx.AsyncClient() as http:
        ehr = EhrClient(f"{base_url}/fhir", http)
        await ehr.transaction(bundle)  # first use: whatever is imported lazily, once
        sys.meta_path.insert(0, searches)
        try:
            answers = await asyncio.gather(*(ehr.transaction(bundle) for _ in range(4)))
        finally:
            sys.meta_path.remove(searches)
    assert [answer["type"] for answer in answers] == ["transaction-response"] * 4
    assert searches.searched == []
