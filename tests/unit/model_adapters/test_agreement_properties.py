"""Property: for any charted history (values in their plausible ranges, at any time up to
30 h before), the adapter's tensors equal the training reference's."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cdsflow.models import build_model_inputs
from cdsflow.training.evaluation_set import model_inputs_of

from .adapter_fixtures import AS_OF, deterioration_adapter
from .test_deterioration_agreement import fhir_context

RANGES = {
    "respiratory_rate": (0, 150),
    "oxygen_saturation": (0, 100),
    "inhaled_oxygen_concentration": (0, 100),
    "systolic_blood_pressure": (0, 500),
    "heart_rate": (0, 600),
    "body_temperature": (10, 50),
}
ADAPTER = deterioration_adapter()


def _charted(low: float, high: float, whole: bool = False) -> Any:
    tenths = st.integers(int(low * 10), int(high * 10)).map(lambda v: v / 10)
    value = st.integers(int(low), int(high)).map(float) if whole else tenths
    hours = st.integers(0, 300).map(lambda v: v / 10)
    return st.lists(st.tuples(hours, value), max_size=4).map(
        lambda pairs: [list(p) for p in sorted(pairs, key=lambda p: -p[0])]
    )


RECORDS = st.fixed_dictionaries(
    {
        "patient": st.just("p"),
        "age": st.one_of(st.none(), st.integers(18, 105)),
        "sex": st.just("female"),
        "observations": st.fixed_dictionaries(
            {},
            optional={
                **{name: _charted(*bounds) for name, bounds in RANGES.items()},
                "glasgow_coma_score": _charted(3, 15, whole=True),
            },
        ),
        "deteriorated_within_24h": st.just(False),
    }
)


@settings(max_examples=150, deadline=None)
@given(RECORDS)
def test_any_charted_history_gives_the_reference_tensors(record: dict[str, Any]) -> None:
    features, present = model_inputs_of(record)
    inputs = build_model_inputs(ADAPTER, fhir_context(record, AS_OF), AS_OF)
    np.testing.assert_array_equal(inputs.tensors["present"][0], np.array(present))
    np.testing.assert_array_equal(
        inputs.tensors["features"][0], np.array(features, dtype=np.float32)
    )
