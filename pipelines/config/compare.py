"""The `compare:` section: which families `genpipe compare` trains on the config's data, with what
compute each, over how many seeds, scored by which metric.

Every family trains with the same preset name and the config's `train:` section, for the same
budget: wall-clock seconds on the same resources (`budget_s`, fair for any two families: it
charges each for what its steps cost here), or training FLOPs (`budget_flops`, fair across
hardware, but only for families that count their FLOPs: the language models).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from data_prep.config import Strict
from models import family_class

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600}


def duration_seconds(value: Any) -> float:
    """`90`, `90s`, `2m` or `1.5h` as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration: give seconds (90), or 90s, 2m, 1h")
    return float(match.group(1)) * SECONDS_PER_UNIT[match.group(2) or "s"]


class CompareSection(Strict):
    families: list[str] | Literal["all"] = Field(
        "all", description="the families to compare, or all: every family of the zoo that fits the data"
    )
    preset: str = Field("tiny", description="the preset every family trains with")
    budget_s: float = Field(60.0, gt=0, description="training seconds each family gets (`--budget 2m`)")
    budget_flops: float | None = Field(
        None, gt=0, description="training FLOPs each family gets instead (families that count FLOPs only)"
    )
    seeds: int = Field(1, ge=1, le=20, description="trainings per family, seeds train.seed, +1, ...")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    metric: str | None = Field(None, description="default: the first metric every compared family reports")
    mode: Literal["min", "max"] | None = None
    register_winner: bool = Field(True, description="evaluate the winner and register it through the gate")

    @field_validator("families", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        """`a,b` (what `--families` and `--set` give) as a list."""
        if isinstance(value, str) and value != "all":
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list):
            if not value:
                raise ValueError("empty: name at least one family, or all")
            for name in value:
                family_class(name)  # a ValueError naming the zoo's families
            if len(set(value)) != len(value):
                raise ValueError(f"{value}: a family is named twice")
        return value

    @field_validator("budget_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return duration_seconds(value)

    def named_families(self) -> list[str]:
        """The families asked for: as listed, or the whole zoo (those that cannot learn the data
        are then listed with the reason, as any other that does not fit)."""
        from models.zoo import FAMILIES

        return list(FAMILIES) if self.families == "all" else list(self.families)
