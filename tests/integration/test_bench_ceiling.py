"""The bench's chained ceiling on the real broker and Triton: every PUT to its bare endpoint
comes out of its bare consume -> Triton -> produce loop on the sink topic, keyed by the
resource's id, and the load generator's runs measure it like the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.ceiling import Ceiling, peak_rss_mb
from bench.pipeline_load import Notifier, fixed_rate, saturated
from tests.conftest import KafkaEndpoint, TritonEndpoint

pytestmark = pytest.mark.integration

PATIENTS = ["Patient/ceiling-1", "Patient/ceiling-2"]


@pytest.fixture
async def ceiling(
    kafka: KafkaEndpoint, triton: TritonEndpoint, tmp_path: Path
) -> AsyncIterator[Ceiling]:
    running = Ceiling(tmp_path, kafka.bootstrap, triton.grpc_url, "deterioration_risk")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


async def test_every_put_is_answered_on_the_sink_topic(ceiling: Ceiling) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        notifier = Notifier(http, ceiling.url, "unused-by-the-bare-endpoint")
        closed_loop = await saturated(notifier, ceiling.watch, PATIENTS, 40, concurrency=8)
        open_loop = await fixed_rate(notifier, ceiling.watch, PATIENTS, per_s=20, seconds=1)
    assert closed_loop["events"] == 40
    assert closed_loop["rejected"] == 0
    assert closed_loop["events_per_s"] > 0
    assert open_loop["events"] == 20
    assert open_loop["latency"]["count"] == 20
    assert len(ceiling.watch.arrived) == 60  # one answer per resource, none lost
    for part in ceiling.processes().values():
        assert (peak_rss_mb(part.process.pid) or 0) > 0
