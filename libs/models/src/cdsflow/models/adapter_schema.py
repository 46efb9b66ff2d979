"""The model adapter file, as validated data: one file per model, declared, not coded."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from cdsflow.models.card_schema import (
    CardTemplate,
    Evaluation,
    HookService,
    RiskBand,
    Subscriptions,
    SystemActionTemplate,
)
from cdsflow.models.data_schema import (
    DataFeed,
    Declared,
    InputsDeclaration,
    Name,
    TensorColumn,
    TensorName,
    text_from_number,
)
from cdsflow.models.outputs_schema import OutputsDeclaration

FORMAT = "cdsflow.model-adapter/v1"
VersionName = Annotated[str, BeforeValidator(text_from_number), Field(pattern=r"^[1-9][0-9]{0,8}$")]


class ModelVersion(Declared):
    """A Triton model version directory and whether clinicians see its results."""

    version: VersionName
    mode: Literal["shadow", "active"]


class ModelDeclaration(Declared):
    kind: Literal["predictive", "generative"] = "predictive"
    triton_name: TensorName
    versions: list[ModelVersion] = Field(min_length=1)
    model_card: str | None = None


class ModelAdapter(Declared):
    format: Literal["cdsflow.model-adapter/v1"]
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    title: str
    description: str
    model: ModelDeclaration
    data: dict[Name, DataFeed] = Field(min_length=1)
    inputs: InputsDeclaration
    outputs: OutputsDeclaration
    risk_bands: list[RiskBand] = Field(default_factory=list)
    cards: list[CardTemplate] = Field(default_factory=list)
    # CDS Hooks systemActions offered with an active recommendation (optional)
    system_actions: list[SystemActionTemplate] = Field(default_factory=list)
    hooks: list[HookService] = Field(min_length=1)
    subscriptions: Subscriptions
    evaluation: Evaluation | None = None

    @property
    def is_generative(self) -> bool:
        return self.model.kind == "generative"

    def columns(self) -> list[TensorColumn]:
        """Every declared column: the tensors' in order, then the prompt's."""
        columns = [column for tensor in self.inputs.tensors for column in tensor.columns]
        if self.inputs.prompt is not None:
            columns += self.inputs.prompt.columns
        return columns

    def mode_of(self, version: str) -> Literal["shadow", "active"] | None:
        """The declared mode of a version; None for a version the adapter does not run."""
        return next((v.mode for v in self.model.versions if v.version == version), None)

    def band_named(self, name: str) -> RiskBand | None:
        return next((band for band in self.risk_bands if band.name == name), None)
