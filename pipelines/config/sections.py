"""The sections of a pipeline config that each step reads: model, train, evaluate, register."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from data_prep.config import Strict
from data_prep.modalities.registry import modality_named
from models import family_class
from pipelines.config.errors import field_error
from typed_errors import FieldError


class ModelSection(Strict):
    family: str = "ddpm"
    preset: str = "tiny"
    params: dict[str, Any] = Field(default_factory=dict, description="overrides of the preset")

    @model_validator(mode="after")
    def _known_family_and_preset(self) -> ModelSection:
        try:
            cls = family_class(self.family)
        except ValueError as exc:
            raise FieldError("family", str(exc)) from None
        if self.preset not in cls.presets:
            raise FieldError("preset", f"{self.preset!r} is not one of {', '.join(cls.presets)}")
        unknown = set(self.params) - set(cls.config_class.model_fields)
        if unknown:
            raise FieldError("params", f"unknown field(s) {', '.join(sorted(unknown))} for {self.family}")
        # Placeholders of what the family's modalities give a model: the data has the real ones (a
        # series' context is checked against data.seq_len where the data section is known: PipelineConfig).
        placeholder = {
            field: value
            for name in (cls.modality, *cls.also_learns)
            for field, value in modality_named(name).placeholder_inputs.items()
            if field in cls.config_class.model_fields
        }
        try:
            cls.config_class(**{**cls.presets[self.preset], **placeholder, **self.params})
        except ValidationError as exc:
            first, *others = (field_error(e, within="params") for e in exc.errors())
            raise FieldError(first.field, "; ".join([first.reason, *map(str, others)])) from None
        return self


class TrainConfig(Strict):
    num_workers: int | tuple[int, int] = Field(
        2,
        description="workers; [min, max]: elastic (Ray Train starts with what the cluster has, at least min, "
        "grows to max as nodes come, and resumes from the last checkpoint on fewer when one goes)",
    )
    cpus_per_worker: float = Field(0.5, gt=0, description="fractional leaves CPU for the driver and Ray")
    use_gpu: bool | Literal["auto"] = "auto"
    batch_size: int = Field(64, gt=0, description="per worker")
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(
        None, gt=0, description="the run's length in optimizer steps; overrides epochs (as in the HF Trainer)"
    )
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="on weight matrices only")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="GANs: 0.5 (DCGAN) or 0 (WGAN-GP)")
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["cosine", "linear"] = Field(
        "cosine",
        description="after warm-up: cosine decay to 10% of the peak, or linear: the peak for half the run, "
        "then a straight line to 0 (CycleGAN)",
    )
    grad_clip: float = Field(1.0, ge=0)
    strategy: Literal["auto", "ddp", "zero1", "zero2", "zero3"] = Field(
        "auto",
        description="auto: the least ZeRO sharding under which the model fits (pipelines/train/strategy.py); "
        "ddp: every worker holds everything; zeroN: DeepSpeed ZeRO stage N",
    )
    zero_stage: int | None = Field(
        None, ge=0, le=3, exclude=True, description="the older spelling of strategy (0: ddp)"
    )
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast"] = Field(
        "auto", description="auto: fp32 on CPU; on GPU the model's choice (GPT bf16, U-Nets bf16-autocast)"
    )
    checkpoint_every: int = Field(200, gt=0, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(2, gt=0, description="checkpoints kept per run (train) or per trial (tune)")
    log_every: int = Field(20, gt=0)
    sample_every: int | None = Field(
        None,
        ge=0,
        description="steps between sample grids (text: completions) in MLflow; default checkpoint_every; 0: none",
    )
    system_metrics_every_s: float = Field(
        10, ge=0, description="seconds between CPU/memory/GPU samples logged per node; 0: none"
    )
    max_failures: int = Field(1, ge=-1, description="worker-group restarts; -1 means forever")
    seed: int = 0
    warm_start: bool = Field(False, description="start from the registered champion's weights")
    grad_accum_steps: int = Field(1, gt=0, description="micro-batches per optimizer step")
    shuffle_window: int = Field(
        16384, gt=0, description="samples shuffled together, after a seeded shard order per epoch"
    )
    lanes: int | None = Field(
        None,
        gt=0,
        le=65536,
        description="parts the epoch's order is dealt from, each worker reading only its own (MosaicML's canonical "
        "nodes); fixed at a run's start and kept by its checkpoints; default 8 per worker (of the maximum, if a range)",
    )
    cache_limit_mb: float = Field(
        16384,
        ge=0,
        description="a streamed dataset on an object store (s3://...) is kept on each node's disk up to this size, "
        "each shard fetched once per node and shared by its workers; 0: no cache",
    )
    cache_dir: str | None = Field(None, description="the node-local folder of that cache; default $TMPDIR")
    device_cache_mb: float = Field(
        1024, ge=0, description="a train split up to this size (decoded) is read once and kept on the device; 0: stream"
    )
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: optimizer state in CPU memory (GPU)")
    offload_params: bool = Field(False, description="ZeRO-Infinity: parameters in CPU memory (stage 3, GPU)")
    activation_checkpointing: bool = Field(False, description="recompute activations in backward")
    compile: bool = Field(False, description="torch.compile each network through DeepSpeed")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK", description="how Ray places the workers on nodes; STRICT_SPREAD: one per node"
    )
    peak_tflops: float | None = Field(None, gt=0, description="device peak for MFU; known GPUs are looked up")

    @model_validator(mode="after")
    def _zero_stage_is_a_strategy(self) -> TrainConfig:
        """`zero_stage: N`, the older spelling, reads as `strategy: zeroN` (0: ddp)."""
        if self.zero_stage is not None:
            stage = "ddp" if self.zero_stage == 0 else f"zero{self.zero_stage}"
            if self.strategy not in ("auto", stage):
                raise FieldError(
                    "zero_stage", f"{self.zero_stage} contradicts strategy {self.strategy}; set strategy alone"
                )
            self.strategy, self.zero_stage = stage, None  # type: ignore[assignment]
        return self

    @field_validator("num_workers", mode="before")
    @classmethod
    def _count_or_pair(cls, value: Any) -> Any:
        """One message for what is neither (pydantic's would name both halves of the union)."""
        whole = isinstance(value, int) and not isinstance(value, bool)
        pair = isinstance(value, list | tuple) and len(value) == 2
        if whole or (pair and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            return tuple(value) if pair else value
        raise ValueError(f"a number of workers (2) or a range [min, max] (e.g. [1, 4]), not {value!r}")

    @model_validator(mode="after")
    def _workers_are_a_count_or_a_range(self) -> TrainConfig:
        low, high = (self.num_workers, self.num_workers) if isinstance(self.num_workers, int) else self.num_workers
        if low < 1:
            raise FieldError("num_workers", f"{low} is fewer than 1 worker")
        if high < low:
            raise FieldError("num_workers", f"[{low}, {high}] has its maximum below its minimum")
        return self

    @property
    def min_workers(self) -> int:
        return self.num_workers if isinstance(self.num_workers, int) else self.num_workers[0]

    @property
    def max_workers(self) -> int:
        return self.num_workers if isinstance(self.num_workers, int) else self.num_workers[1]

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> TrainConfig:
        if self.offload_params and self.strategy not in ("auto", "zero3"):
            raise FieldError("offload_params", f"needs strategy zero3 (or auto), not {self.strategy}")
        if self.offload_optimizer and self.strategy == "ddp":
            raise FieldError("offload_optimizer", "needs a ZeRO strategy (zero1, zero2, zero3 or auto)")
        return self


class EvaluateConfig(Strict):
    num_samples: int = Field(500, gt=1, description="images: generated for classifier-FID; text: val blocks scored")
    grid_size: int = Field(64, gt=0)
    classifier_epochs: int = Field(15, gt=0)
    num_cpus: float = Field(2, gt=0)
    num_gpus: float = Field(0, ge=0, description="evaluate on a GPU when the cluster has one")
    seed: int = 0
    iw_samples: int = Field(50, gt=0, description="VAEs: posterior samples per image for the NLL estimate")
    prompts: list[str] = Field(
        default_factory=lambda: ["def ", "import ", "class "],
        description="text: prompts whose completions become an artifact",
    )
    max_new_tokens: int = Field(200, gt=0)
    temperature: float = Field(0.8, ge=0)
    top_k: int | None = Field(50, gt=0)


class GateConfig(Strict):
    """When a new version may take the alias from the current champion: it must beat it on
    `metric`, evaluated on the same split, by more than `min_improvement`."""

    metric: str = Field("eval/classifier_fid", description="in a pipeline: the model family's own when not set")
    mode: Literal["min", "max"] = Field(
        "min",
        description="in a pipeline: the family's when the metric is not set, else the metric's (max: precision...)",
    )
    min_improvement: float = Field(0.0, ge=0)


# A name that becomes a folder, a Ray job id or an MLflow name: no separators, no leading dot.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# MLflow keeps `latest` and `v<number>` for itself (models:/NAME@latest, @v3 name versions).
RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)


class RegisterConfig(Strict):
    model_name: str = Field(min_length=1, pattern=SAFE_NAME, description="default: the config's name")
    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, alias: str) -> str:
        if RESERVED_ALIAS.match(alias):
            raise ValueError(f"{alias!r} is reserved by MLflow (latest and v<number> name versions)")
        return alias
