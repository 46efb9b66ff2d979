"""The bench's chained ceiling on the real broker and Triton: every PUT to its bare endpoint
comes out of its bare consume -> Triton -> produce loop on the sink topic, keyed by the
resource's id, and the out-of-process load generator's runs (closed and open loop) measure it
like the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.ceiling import Ceiling, peak_rss_mb
from bench.pipeline_load import LoadGenerator, fixed_rate, saturated
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


async def test_every_put_is_answered_on_the_sink_topic(ceiling: Ceiling, tmp_path: Path) -> None:
    generator = LoadGenerator("ceiling", ceiling.url, "unused-by-the-bare-endpoint", tmp_path)
    closed_loop = await saturated(generator, ceiling.watch, PATIENTS, 40, in_flight=8)
    open_loop = await fixed_rate(generator, ceiling.watch, PATIENTS, per_s=20, seconds=1)
    assert closed_loop["events"] == 40
    assert closed_loop["rejected"] == 0
    assert closed_loop["events_per_s"] > 0
    assert closed_loop["load_generator"]["connections"] == 8
    assert closed_loop["load_generator"]["requests"] == 40
    assert open_loop["events"] == 20
    assert open_loop["not_sent"] == 0
    assert open_loop["latency"]["count"] == 20
    # the send stamps (the generator's process) come before the arrival stamps (this one's)
    assert 0 < open_loop["latency"]["p50_ms"] < 60_000
    assert len(ceiling.watch.arrived) == 60  # one answer per resource, none lost
    for part in ceiling.processes().values():
        assert (peak_rss_mb(part.process.pid) or 0) > 0
