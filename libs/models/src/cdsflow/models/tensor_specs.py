"""The tensors an adapter sends and expects (name, Triton datatype, dims per row), and how
they differ from what a served model declares: checked once when a model is loaded, so a
mismatched adapter fails at start, not on the first patient."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cdsflow.models.adapter_schema import ModelAdapter


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton's: FP32, BOOL, BYTES, ...
    dims: tuple[int, ...]  # per row, without the batch dimension


def declared_inputs(adapter: ModelAdapter) -> list[TensorSpec]:
    specs = []
    for tensor in adapter.inputs.tensors:
        width = (len(tensor.columns),)
        specs.append(TensorSpec(tensor.name, tensor.datatype, width))
        if tensor.presence_tensor is not None:
            specs.append(TensorSpec(tensor.presence_tensor, "BOOL", width))
    if adapter.inputs.prompt is not None:
        specs.append(TensorSpec(adapter.inputs.prompt.tensor, "BYTES", (1,)))
    return specs


def declared_outputs(adapter: ModelAdapter) -> list[TensorSpec]:
    outputs = adapter.outputs
    specs = []
    if outputs.score is not None:
        specs.append(TensorSpec(outputs.score.tensor, "FP32", (1,)))
    specs += [TensorSpec(named.tensor, "FP32", (1,)) for named in outputs.values]
    if outputs.contributions is not None:
        tensor = next(
            t for t in adapter.inputs.tensors if t.name == outputs.contributions.input_tensor
        )
        specs.append(TensorSpec(outputs.contributions.tensor, "FP32", (len(tensor.columns),)))
    if outputs.generated_text is not None:
        specs.append(TensorSpec(outputs.generated_text.tensor, "BYTES", (1,)))
    return specs


def contract_mismatches(
    adapter: ModelAdapter, inputs: Iterable[TensorSpec], outputs: Iterable[TensorSpec]
) -> list[str]:
    """What the served model (its `inputs` and `outputs`) lacks or declares otherwise.

    Output datatypes are not compared: any numeric output is read as a float.
    """
    served_inputs = {spec.name: spec for spec in inputs}
    served_outputs = {spec.name: spec for spec in outputs}
    problems = []
    for spec in declared_inputs(adapter):
        served = served_inputs.get(spec.name)
        if served is None:
            problems.append(f"the model has no input {spec.name}")
        elif (served.datatype, served.dims) != (spec.datatype, spec.dims):
            problems.append(
                f"input {spec.name} is {served.datatype} {list(served.dims)}, the adapter "
                f"sends {spec.datatype} {list(spec.dims)}"
            )
    for name in sorted(set(served_inputs) - {spec.name for spec in declared_inputs(adapter)}):
        problems.append(f"the model's input {name} is not declared by the adapter")
    for spec in declared_outputs(adapter):
        served = served_outputs.get(spec.name)
        if served is None:
            problems.append(f"the model has no output {spec.name}")
        elif served.dims != spec.dims:
            problems.append(
                f"output {spec.name} has dims {list(served.dims)}, the adapter reads "
                f"{list(spec.dims)}"
            )
    return problems
