"""What each step returns: small, typed, JSON-serialisable. Heavy artefacts (shards, checkpoints,
weights) stay in storage; a result only points at them. A step's record on disk holds
`result.record()`, and `parse_result` reads it back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class StepResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def record(self) -> dict[str, Any]:
        """The JSON written to the step's record: only the fields this step set."""
        return self.model_dump(mode="json", exclude_unset=True)


class PrepareResult(StepResult):
    # A modality's own summary (data_prep's `Modality.summary`) rides along beside these fields: a
    # new modality reports what it counts (pieces, notes) without a field here.
    model_config = ConfigDict(extra="allow", frozen=True)

    dataset_uri: str
    fingerprint: str
    cache_hit: bool
    rows: dict[str, int]
    rejects: int
    tokens: dict[str, int] | None = None  # text: tokens in blocks, per split
    vocab_size: int | None = None  # text
    image_shape: list[int] | None = None  # images
    num_classes: int | None = None  # images
    series: str | None = None  # series: its name
    values: dict[str, int] | None = None  # series: values per split


class FitResult(StepResult):
    """Where a trained model is: the final checkpoint and the consolidated weights inside it."""

    checkpoint_uri: str
    model_uri: str
    metrics: dict[str, int | float]


class TrainResult(FitResult):
    warm_start: str | None = None


class ChosenResult(FitResult):
    """A model chosen among trials (a sweep's or a comparison's): its trial and its family."""

    best_trial: str
    family: str


class TuneResult(ChosenResult):
    best_params: dict[str, Any]
    trials: int
    stopped_early: int


class CompareResult(ChosenResult):
    metric: str
    mode: str
    leaderboard: list[dict[str, Any]]  # one row per family (pipelines/tune/leaderboard.py)
    seed_agreement: float | None  # Kendall's tau between the seeds' rankings


class ChampionScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    metrics: dict[str, int | float]
    rescored: bool


class EvaluateResult(StepResult):
    # What a modality's scorer tells beside its metrics rides along (`classifier_clips` for audio).
    model_config = ConfigDict(extra="allow", frozen=True)

    metrics: dict[str, int | float]
    samples_uri: str
    evaluation_key: str
    champion: ChampionScore | None
    model_id: str | None = None  # the logged model carrying the scores (MLflow 3)
    classifier_cached: bool | None = None  # images
    val_blocks: int | None = None  # text
    val_values: int | None = None  # series


class RegisterResult(StepResult):
    model_name: str
    version: int
    alias: str
    alias_version: int | None
    created: bool
    decision: str | None
    reason: str | None
    model_uri: str


RESULT_TYPES: dict[str, type[StepResult]] = {
    "prepare": PrepareResult,
    "train": TrainResult,
    "tune": TuneResult,
    "compare": CompareResult,
    "evaluate": EvaluateResult,
    "register": RegisterResult,
}


def parse_result(step: str, record: dict[str, Any]) -> StepResult:
    """A step's result as its record on disk holds it."""
    return RESULT_TYPES[step].model_validate(record)
