"""How the model client shares Triton requests between rows when something fails (pure logic:
Triton is a stand-in here; tests/integration/test_reasoner_inference_rows.py runs the real
one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from opentelemetry.sdk.trace import TracerProvider
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.models import ModelInputs, load_adapter
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelRequestFailed, ModelUnavailable, ModelVersionClient
from cdsflow.telemetry import MetricsRegistry

ADAPTER = Path(__file__).parents[3] / "adapters" / "deterioration-risk.yaml"


class Answer:
    def __init__(self, rows: int, first_value: float) -> None:
        self._rows = rows
        self._first = first_value

    def as_numpy(self, name: str) -> npt.NDArray[Any]:
        width = 15 if name == "contributions" else 1
        column = np.arange(self._rows, dtype=np.float32).reshape(-1, 1) + self._first
        return np.repeat(column, width, axis=1)


class StandIn:
    """Answers each request's rows with the row's first feature value; `refuse(rows, call)`
    says which requests fail, and how."""

    def __init__(self, refuse: Callable[[int, int], str | None] = lambda rows, call: None) -> None:
        self.requests: list[int] = []
        self._refuse = refuse

    async def infer(self, model_name: str, inputs: list[InferInput], **_: Any) -> Answer:
        rows = int(inputs[0].shape()[0])
        call = len(self.requests)
        self.requests.append(rows)
        await asyncio.sleep(0)
        status = self._refuse(rows, call)
        if status is not None:
            raise InferenceServerException("refused", status=f"StatusCode.{status}")
        return Answer(rows, float(call) * 100)


def row(value: float) -> ModelInputs:
    features = np.full((1, 15), value, dtype=np.float32)
    present = np.ones((1, 15), dtype=np.bool_)
    return ModelInputs(
        extracted=cast(Any, None), tensors={"features": features, "present": present}
    )


def output(answer: dict[str, npt.NDArray[Any] | None], name: str) -> npt.NDArray[Any]:
    array = answer[name]
    assert array is not None
    return array


def client(stand_in: StandIn, max_rows: int = 8) -> ModelVersionClient:
    metrics = ReasonerMetrics.register(MetricsRegistry("reasoner"))
    return ModelVersionClient(
        cast(InferenceServerClient, stand_in),
        load_adapter(ADAPTER),
        "1",
        "active",
        TracerProvider().get_tracer("test"),
        metrics.inference_seconds,
        timeout_s=1,
        server_url="127.0.0.1:8001",
        max_rows=max_rows,
        rows_per_request=metrics.inference_rows,
    )


async def test_rows_asked_in_one_turn_share_a_request_of_at_most_max_rows() -> None:
    stand_in = StandIn()
    model = client(stand_in, max_rows=4)
    answers = await asyncio.gather(*(model.infer(row(n)) for n in range(10)))
    assert stand_in.requests == [4, 4, 2]
    # row i of request k: each caller got its own row (the stand-in numbers them)
    firsts = [float(output(answer, "deterioration_risk")[0, 0]) for answer in answers]
    assert firsts == [0, 1, 2, 3, 100, 101, 102, 103, 200, 201]
    assert all(output(answer, "contributions").shape == (1, 15) for answer in answers)


async def test_a_refused_request_is_sent_again_one_row_at_a_time() -> None:
    # the request of three rows is refused, and so is the second row sent alone
    stand_in = StandIn(lambda rows, call: "INVALID_ARGUMENT" if rows > 1 or call == 2 else None)
    model = client(stand_in)
    answers = await asyncio.gather(*(model.infer(row(n)) for n in range(3)), return_exceptions=True)
    assert stand_in.requests == [3, 1, 1, 1]
    assert isinstance(answers[1], ModelRequestFailed)
    assert str(answers[1]) == "INVALID_ARGUMENT"
    answered = [a for a in answers if not isinstance(a, BaseException)]
    assert len(answered) == 2


async def test_an_outage_fails_every_row_of_the_request_as_unavailable() -> None:
    stand_in = StandIn(lambda rows, call: "UNAVAILABLE")
    model = client(stand_in)
    answers = await asyncio.gather(*(model.infer(row(n)) for n in range(3)), return_exceptions=True)
    assert stand_in.requests == [3]  # not sent again row by row: Triton is down
    assert all(isinstance(answer, ModelUnavailable) for answer in answers)


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    stand_in = StandIn()
    model = client(stand_in)
    leaving = asyncio.create_task(model.infer(row(0)))
    staying = asyncio.create_task(model.infer(row(1)))
    await asyncio.sleep(0)
    leaving.cancel()
    answer = await staying
    assert float(output(answer, "deterioration_risk")[0, 0]) == 1
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert stand_in.requests == [2]
