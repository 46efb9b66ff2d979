"""What each output tensor means (`outputs:`)."""

from __future__ import annotations

from pydantic import Field

from cdsflow.models.data_schema import Declared, Name, TensorName


class ScoreOutput(Declared):
    """The model's score (probability, risk), one number per row; bands are cut from it."""

    tensor: TensorName
    meaning: str
    # the closed interval a valid score lies in; anything else is a broken model contract
    range: tuple[float, float] | None = None


class ContributionsOutput(Declared):
    """One number per column of `input_tensor`: how much that input moved the score."""

    tensor: TensorName
    input_tensor: TensorName
    meaning: str


class NamedOutput(Declared):
    """Another number per row worth keeping with the recommendation (e.g. log-odds)."""

    name: Name
    tensor: TensorName
    meaning: str


class GeneratedTextOutput(Declared):
    """A generative model's answer: a BYTES tensor of UTF-8 text, the card's rationale."""

    tensor: TensorName
    max_chars: int = Field(default=4000, ge=1)


class OutputsDeclaration(Declared):
    score: ScoreOutput | None = None
    contributions: ContributionsOutput | None = None
    values: list[NamedOutput] = Field(default_factory=list)
    generated_text: GeneratedTextOutput | None = None
