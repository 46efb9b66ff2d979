"""The listener's bare baseline: an HTTP endpoint that parses each request body with orjson
(the resource's `id` becomes the message key) and publishes the body to the same broker with the
same producer settings (`acks="all"`), answering once it is acked — no authentication, no FHIR
validation, no dedupe, no tracing, no product code. It is also the first hop of the chained
ceiling (`bench.ceiling`).

Run as `python -m bench.bare_listener PORT BOOTSTRAP TOPIC`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def bare_app(bootstrap: str, topic: str) -> Starlette:
    producers: list[AIOKafkaProducer] = []  # made in the lifespan, inside the event loop

    async def publish(request: Request) -> Response:
        body = await request.body()
        resource = orjson.loads(body)
        key = str(resource.get("id") or request.path_params["resource_id"]).encode()
        await producers[0].send_and_wait(topic, body, key=key)
        return Response(b"{}", media_type="application/json")

    async def ready(_request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        producers.append(producer)
        try:
            yield
        finally:
            await producer.stop()

    return Starlette(
        routes=[
            Route("/fhir/notifications/rest-hook/{type}/{resource_id}", publish, methods=["PUT"]),
            Route("/readyz", ready),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    port, bootstrap, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(
        bare_app(bootstrap, topic),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="httptools",
    )


if __name__ == "__main__":
    main()
