"""PipelineConfig: the YAML a user writes, validated by pydantic before anything starts.

An invalid config becomes `ConfigError` whose lines each name a field (`train.batch_size: must be
> 0`); the CLI prints them and exits 2 without starting Ray or MLflow.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from data_prep.config import DataConfig, Strict
from models import check_runs_on, family_class
from models.base import GenerativeModel, metric_mode
from models.capabilities import counts_flops
from pipelines.config.cluster import ClusterConfig, without_credentials
from pipelines.config.compare import CompareSection
from pipelines.config.errors import field_error, in_pipeline_terms, problem_line
from pipelines.config.overrides import assign
from pipelines.config.sections import SAFE_NAME, EvaluateConfig, ModelSection, RegisterConfig, TrainConfig
from pipelines.config.sweep import TuneSection
from typed_errors import FieldError, first_line

DEFAULT_STORAGE = "./.genpipe"
# Validation context of a config as a user gives it (a file, --set, resume --set): only then is the
# model built for the data on the meta device (models.check_runs_on). A stored config, validated
# again by every step and worker, was checked when it entered; the check's first use in a process
# costs ~1 s (torch imports its compiler for the meta device's reference kernels).
AS_ENTERED = "as_entered"


def default_storage() -> str:
    """GENPIPE_STORAGE (which `genpipe local-cluster up` exports), else ./.genpipe."""
    return os.environ.get("GENPIPE_STORAGE") or DEFAULT_STORAGE


# `register` is the step's name (docs/architecture.md); pydantic only warns that it hides ABCMeta.register.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class PipelineConfig(Strict):
    name: str = Field(min_length=1, pattern=SAFE_NAME, description="letters, digits, . _ -; names workflows")
    experiment: str | None = None
    storage: str = Field(default_factory=default_storage, description="default: GENPIPE_STORAGE, else ./.genpipe")
    tracking_uri: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register: RegisterConfig = Field(description="model_name defaults to the config's name")
    tune: TuneSection | None = Field(None, description="`genpipe tune`: the sweep")
    compare: CompareSection | None = Field(None, description="`genpipe compare`: the families, their budget")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="`genpipe submit`: the Ray job")

    _no_credentials_in_uris = field_validator("storage", "tracking_uri")(without_credentials)

    @model_validator(mode="before")
    @classmethod
    def _register_defaults_to_the_name(cls, raw: Any) -> Any:
        """A config without `register:` registers under its own name."""
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            register = raw.get("register")
            if register is None:
                raw = {**raw, "register": {"model_name": raw["name"]}}
            elif isinstance(register, dict) and "model_name" not in register:
                raw = {**raw, "register": {**register, "model_name": raw["name"]}}
        return raw

    @model_validator(mode="after")
    def _sweep_is_valid(self, info: ValidationInfo) -> PipelineConfig:
        if self.tune is None:
            return self
        if "mode" not in self.tune.model_fields_set:
            self.tune.mode = metric_mode(self.tune.metric)  # type: ignore[assignment]  # "min" or "max"
        if self.train.max_steps is not None:
            raise FieldError("train.max_steps", "a sweep counts a trial's length in epochs (ASHA's unit); set epochs")
        base = self.model_dump(mode="json", exclude={"tune"})
        for field in {"metric", "mode"} - self.register.gate.model_fields_set:
            base["register"]["gate"].pop(field)  # unset: each candidate's family gives its own
        for path, assignments in self.tune.candidate_assignments():
            try:
                PipelineConfig.model_validate(assign(base, assignments), context=info.context)
            except ValidationError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in assignments.items())
                raise FieldError(
                    f"tune.space.{path}", f"{shown} gives an invalid config: {problem_line(exc.errors()[0])}"
                ) from None
        for family in self._families():
            if self.tune.metric not in family.metrics_on(self.data.modality):
                raise FieldError(
                    "tune.metric",
                    f"{self.tune.metric!r} is not reported by {family.family} trials; "
                    f"they report {', '.join(family.metrics_on(self.data.modality))}",
                )
        return self

    @model_validator(mode="after")
    def _model_fits_data(self, info: ValidationInfo) -> PipelineConfig:
        cls = family_class(self.model.family)
        if not cls.learns(self.data.modality):
            learned = " or ".join((cls.modality, *cls.also_learns))
            raise FieldError(
                "model.family",
                f"{self.model.family} learns {learned}, but data.source "
                f"{self.data.source.kind} is {self.data.modality} data",
            )
        if "modality" in self.model.params:
            raise FieldError("model.params.modality", "comes from the data (data.source); leave it out")
        fits = {
            "image": self._model_runs_on_the_images,
            "text": self._blocks_fit,
            "music": self._blocks_fit,
            "series": self._context_fits,
            "video": self._frames_fit,
        }
        check = fits.get(self.data.modality)  # the modality's own checks, where it has some
        if check is not None:
            check(cls, (info.context or {}).get(AS_ENTERED, False))
        if cls.translates and self.data.source.domains is None:
            raise FieldError(
                "model.family",
                f"{self.model.family} translates between two image domains; set data.source "
                "to kind: domains (a and b, or a and b_from_a)",
            )
        if self.train.activation_checkpointing and not cls.supports_activation_checkpointing:
            raise FieldError("train.activation_checkpointing", f"the {self.model.family} family does not support it")
        return self

    def _blocks_fit(self, cls: type[GenerativeModel], as_entered: bool) -> None:
        """A block of tokens (text or music) fits the model's context."""
        block_size = {**cls.presets[self.model.preset], **self.model.params}.get("block_size")
        if block_size is not None and self.data.seq_len > block_size:
            raise FieldError(
                "data.seq_len",
                f"{self.data.seq_len} tokens do not fit the model's block_size "
                f"{block_size}; lower data.seq_len or raise model.params.block_size",
            )

    def _context_fits(self, cls: type[GenerativeModel], as_entered: bool) -> None:
        """A forecaster takes the series' context length with its params."""
        try:
            cls.config_class(
                **{**cls.presets[self.model.preset], "context_len": self.data.seq_len, **self.model.params}
            )
        except ValidationError as exc:
            raise field_error(exc.errors()[0], within="model.params") from None

    def _frames_fit(self, cls: type[GenerativeModel], as_entered: bool) -> None:
        """A video family takes the clips' frames and context with its params."""
        data = self.data
        clips = {
            "frame_shape": (data.frame_channels, data.frame_size, data.frame_size),
            "clip_frames": data.clip_frames,
            "context_frames": data.context_frames,
        }
        try:
            cls.config_class(**{**cls.presets[self.model.preset], **clips, **self.model.params})
        except ValidationError as exc:
            error = field_error(exc.errors()[0])
            raise in_pipeline_terms(FieldError(error.field.split(".")[-1], error.reason)) from None

    def _model_runs_on_the_images(self, cls: type[GenerativeModel], as_entered: bool) -> None:
        """The model, built for the images the data will have, runs (models.check_runs_on): a
        family that cannot take that size is exit 2 naming the field, before anything starts.
        Only for a config as a user gives it: a stored one was checked when it entered."""
        if not as_entered:
            return
        data = self.images_as_configured()
        if data is None or (self.data.source.domains is None and cls.translates):
            return  # no size yet (a check of its own names it), or a translation config that is refused anyway
        side = data["image_shape"][-1]
        try:
            check_runs_on(self.model.family, self.model.preset, self.model.params, data)
        except ValidationError as exc:
            raise field_error(exc.errors()[0], within="model.params") from None
        except FieldError as exc:  # the family named the field
            raise in_pipeline_terms(exc) from None
        except Exception as exc:  # a layer that cannot take the size (RuntimeError from a convolution)
            raise self._cannot_run(side, exc) from None

    def images_as_configured(self) -> dict[str, Any] | None:
        """What an image model takes from its data, as far as the config tells before the data is
        read (10 classes assumed: the classes are known once prepared); None without a size."""
        if self.data.modality != "image":
            return None
        images = self.data.images
        side = self.data.image_size or images.image_side
        if side is None:
            return None
        return {
            "image_shape": (images.image_channels, side, side),
            "num_classes": 10,
            "pixel_levels": images.pixel_levels,
            "class_names": [str(i) for i in range(10)],
        }

    def _cannot_run(self, side: int, exc: Exception) -> FieldError:
        reason = f"{self.model.family} ({self.model.preset}) cannot run on {side}x{side} images: {first_line(exc)}"
        return FieldError("data.image_size", reason)

    @model_validator(mode="after")
    def _comparison_is_valid(self, info: ValidationInfo) -> PipelineConfig:
        """The metric every compared family reports (the first of them, unless set), a FLOPs
        budget only for families that count FLOPs; as entered, at least one family must fit."""
        compare = self.compare
        if compare is None:
            return self
        modality = self.data.modality
        learners = [family_class(name) for name in compare.named_families() if family_class(name).learns(modality)]
        if not learners:
            raise FieldError("compare.families", f"none of them learns {modality} data (data.source)")
        if compare.metric is None:
            shared = [m for m in learners[0].metrics_on(modality) if all(m in c.metrics_on(modality) for c in learners)]
            if not shared:
                raise FieldError("compare.metric", "the families report no metric in common: set one")
            compare.metric = shared[0]
        if not any(compare.metric in c.metrics_on(modality) for c in learners):
            first = learners[0]
            reported = ", ".join(first.metrics_on(modality))
            raise FieldError("compare.metric", f"no compared family reports it ({first.family} reports {reported})")
        if compare.mode is None:
            compare.mode = metric_mode(compare.metric)  # type: ignore[assignment]  # "min" or "max"
        if compare.budget_flops is not None:
            uncounted = [c.family for c in learners if not counts_flops(c)]
            if uncounted:
                raise FieldError(
                    "compare.budget_flops",
                    f"{', '.join(uncounted)} do not count their FLOPs: compare them by compare.budget_s",
                )
        if (info.context or {}).get(AS_ENTERED, False):
            fitting, unfit = self.compare_entrants()
            if not fitting:
                shown = "; ".join(f"{family}: {reason}" for family, reason in unfit.items())
                raise FieldError("compare.families", f"no family fits the data ({shown})")
        return self

    def compare_entrants(self) -> tuple[list[str], dict[str, str]]:
        """The families of `compare:` that can train on this data with the compared preset, and
        why each other one cannot (the check a config with that family alone gets)."""
        compare = self.compare
        assert compare is not None  # only asked of a comparison
        base = self.model_dump(mode="json", exclude={"tune", "compare"})
        base["register"]["gate"] = {}  # each entrant's own; the comparison's metric is checked here
        fitting, unfit = [], {}
        for family in compare.named_families():
            cls = family_class(family)
            if not cls.learns(self.data.modality):  # the same words for each: the leaderboard groups them
                unfit[family] = f"learns {' or '.join((cls.modality, *cls.also_learns))}, not {self.data.modality}"
                continue
            if compare.metric not in cls.metrics_on(self.data.modality):
                unfit[family] = f"does not report {compare.metric} (compare.metric)"
                continue
            candidate = {**base, "model": {"family": family, "preset": compare.preset, "params": {}}}
            try:
                PipelineConfig.model_validate(candidate, context={AS_ENTERED: True})
            except ValidationError as exc:
                unfit[family] = problem_line(exc.errors()[0]).removeprefix("model.family: ")
                continue
            fitting.append(family)
        return fitting, unfit

    @model_validator(mode="after")
    def _gate_defaults_to_the_family(self) -> PipelineConfig:
        """An unset gate metric is the family's own (what every model of it reports), with its mode."""
        gate = self.register.gate
        if "metric" in gate.model_fields_set:
            if "mode" not in gate.model_fields_set:
                gate.mode = metric_mode(gate.metric)  # type: ignore[assignment]  # "min" or "max"
            for family in self._families():
                if gate.metric not in family.metrics_on(self.data.modality):
                    raise FieldError(
                        "register.gate.metric",
                        f"{family.family} models do not report {gate.metric!r}; "
                        f"they report {', '.join(family.metrics_on(self.data.modality))}",
                    )
        else:
            # A comparison's winner is gated on what the comparison ranks by, whatever its family.
            compare = self.compare
            metric, mode = family_class(self.model.family).default_gate
            if compare is not None and compare.metric is not None and compare.mode is not None:
                metric, mode = compare.metric, compare.mode
            gate.metric = metric
            if "mode" not in gate.model_fields_set:
                gate.mode = mode  # type: ignore[assignment]  # a family declares "min" or "max"
        return self

    @model_validator(mode="after")
    def _truth_metrics_need_a_known_map(self) -> PipelineConfig:
        """L1 to the true translation exists only when B was made from A by a known map."""
        domains = self.data.source.domains
        if domains is not None and domains.b_from_a:
            return self
        chosen = [("register.gate.metric", self.register.gate.metric)]
        if self.tune is not None:
            chosen.append(("tune.metric", self.tune.metric))
        for field, metric in chosen:
            if metric.endswith("l1_to_truth"):
                raise FieldError(
                    f"{field}",
                    f"{metric} needs the true translation, known only for data.source.b_from_a; "
                    "gate on eval/classifier_fid or eval/class_accuracy instead",
                )
        return self

    def _families(self) -> list[type[GenerativeModel]]:
        """The families this config trains: the model's, each one a sweep chooses from, or those
        a comparison can rank."""
        compare = self.compare
        if compare is not None:
            named = [family_class(name) for name in compare.named_families()]
            return [
                c for c in named if c.learns(self.data.modality) and compare.metric in c.metrics_on(self.data.modality)
            ]
        if self.tune is not None and "model.family" in self.tune.space:
            return [family_class(f) for f in self.tune.space["model.family"].choice or []]
        return [family_class(self.model.family)]

    @property
    def sweep(self) -> TuneSection:
        """The `tune:` section, which `genpipe tune` requires."""
        if self.tune is None:
            raise FieldError("tune", "missing: genpipe tune needs a tune: section with a space")
        return self.tune

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name
