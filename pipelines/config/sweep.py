"""The `tune:` section: a search space over config paths, the Tune scheduler and search algorithm.

A space maps a dotted config path (what `--set` takes: `train.learning_rate`, `model.params.
latent_dim`, and `model.family` itself to sweep variants) to one distribution. Each entry is
checked before any trial starts: every value a trial could draw must give a valid config, and the
metric must be one every variant in the space reports.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from data_prep.config import Strict
from typed_errors import FieldError

SWEEPABLE = ("model.", "train.")


class Distribution(Strict):
    """Exactly one of: `choice: [a, b]`, `uniform: [lo, hi]`, `loguniform: [lo, hi]`,
    `randint: [lo, hi]` (hi excluded, as in Ray Tune)."""

    choice: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name in ("choice", "uniform", "loguniform", "randint") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of choice, uniform, loguniform, randint"
                + (f" (got {', '.join(given)})" if given else "")
            )
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise FieldError(given[0], f"the low bound {bounds[0]} must be below the high bound {bounds[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise FieldError("loguniform", "bounds must be > 0")
        return self

    def extremes(self) -> list[Any]:
        """The values that bound what a trial can draw: every choice, or both ends of a range."""
        if self.choice is not None:
            return list(self.choice)
        if self.randint is not None:
            return [self.randint[0], self.randint[1] - 1]
        return list(self.uniform or self.loguniform or ())

    def to_tune(self):
        from ray import tune

        if self.choice is not None:
            return tune.choice(self.choice)
        if self.randint is not None:
            return tune.randint(*self.randint)
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        return tune.loguniform(*self.loguniform)


class TuneSection(Strict):
    space: dict[str, Distribution] = Field(description="dotted config path -> distribution")
    metric: str = "eval/classifier_fid"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(8, gt=0, description="trials")
    max_concurrent: int = Field(2, gt=0)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, gt=0, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: 1/this of the trials go on at each rung")
    search: Literal["random", "optuna"] = "random"
    seed: int = 0
    max_trial_epochs: int | None = Field(
        None, gt=0, description="budget: stop the sweep after this many epochs summed over all trials"
    )

    @model_validator(mode="after")
    def _space_paths(self) -> TuneSection:
        if not self.space:
            raise FieldError(
                "space", "empty: give at least one path, e.g. train.learning_rate: {loguniform: [1e-4, 1e-2]}"
            )
        for path in self.space:
            if not path.startswith(SWEEPABLE) or path in SWEEPABLE:
                raise FieldError(f"space.{path}", "only model.* and train.* paths can be swept")
        return self

    def candidate_assignments(self) -> list[tuple[str, dict[str, Any]]]:
        """(space path, assignments) pairs that together try every extreme of every entry, each
        with every family in the space: what must validate before the sweep starts."""
        families = self.space["model.family"].extremes() if "model.family" in self.space else [None]
        candidates = []
        for family in families:
            base = {} if family is None else {"model.family": family}
            candidates.append(("model.family", base))
            for path, distribution in self.space.items():
                if path != "model.family":
                    candidates += [(path, {**base, path: value}) for value in distribution.extremes()]
        return candidates
