"""cdsflow model adapters: one declared file per model, and the engine that uses it.

    adapter = load_adapter(Path("adapters/deterioration-risk.yaml"))
    inputs = build_model_inputs(adapter, patient_resources, as_of)   # tensors for Triton
    result = interpret_outputs(adapter, inputs, output_tensors)      # score, band, basis
    cards = render_cards(adapter, inputs, result, CardRendering(...))

Pure: no Kafka, no Triton client, no HTTP. The format is documented in libs/models/README.md.
"""

from cdsflow.models.adapter_file import AdapterFileError, load_adapter, parse_adapter
from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.adapter_set import load_adapter_set
from cdsflow.models.card_templates import CardRendering, RenderedCard, render_cards
from cdsflow.models.evaluation_gate import MeasuredPerformance, gate_failures
from cdsflow.models.feature_extraction import ExtractedInputs, RefusedValue, extract_inputs
from cdsflow.models.outputs import ModelContractError, ModelResult, interpret_outputs
from cdsflow.models.plausible_ranges import RefusalReason
from cdsflow.models.resource_readings import ResourceReader, ResourceReadings
from cdsflow.models.tensors import (
    MissingRequiredInputs,
    ModelInputs,
    build_model_inputs,
    inputs_from_readings,
)

__all__ = [
    "AdapterFileError",
    "CardRendering",
    "ExtractedInputs",
    "MeasuredPerformance",
    "MissingRequiredInputs",
    "ModelAdapter",
    "ModelContractError",
    "ModelInputs",
    "ModelResult",
    "RefusalReason",
    "RefusedValue",
    "RenderedCard",
    "ResourceReader",
    "ResourceReadings",
    "build_model_inputs",
    "extract_inputs",
    "gate_failures",
    "inputs_from_readings",
    "interpret_outputs",
    "load_adapter",
    "load_adapter_set",
    "parse_adapter",
    "render_cards",
]
