"""PipelineConfig: the YAML a user writes, validated by pydantic before anything starts.

An invalid config becomes `ConfigError` whose lines each name a field (`train.batch_size: must be
> 0`); the CLI prints them and exits 2 without starting Ray or MLflow.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

import models
from data_prep.config import DataConfig, DigitsSource, ImageFolderSource, ParquetSource, Strict
from pipelines.cluster_config import ClusterConfig, without_credentials
from pipelines.family_metrics import metric_names
from pipelines.sweep_config import TuneSection

__all__ = ["ConfigError", "DataConfig", "DigitsSource", "ImageFolderSource", "ParquetSource", "PipelineConfig",
           "load_config"]


class ConfigError(ValueError):
    """One or more problems with a config, each a line that starts with the field's path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class ModelSection(Strict):
    family: str = "ddpm"
    preset: str = "tiny"
    params: dict[str, Any] = Field(default_factory=dict, description="overrides of the preset")

    @model_validator(mode="after")
    def _known_family_and_preset(self) -> ModelSection:
        try:
            cls = models.family_class(self.family)
        except ValueError as exc:
            raise ValueError(f"family: {exc}") from None
        if self.preset not in cls.presets:
            raise ValueError(f"preset: {self.preset!r} is not one of {', '.join(cls.presets)}")
        unknown = set(self.params) - set(cls.config_class.model_fields)
        if unknown:
            raise ValueError(f"params: unknown field(s) {', '.join(sorted(unknown))} for {self.family}")
        from_data = {"image_shape": (1, 8, 8), "vocab_size": 257}  # placeholders: the data has the real ones
        placeholder = {k: v for k, v in from_data.items() if k in cls.config_class.model_fields}
        try:
            cls.config_class(**{**cls.presets[self.preset], **placeholder, **self.params})
        except ValidationError as exc:
            problems = [f"params.{'.'.join(map(str, e['loc']))}: {_describe(e)}" for e in exc.errors()]
            raise ValueError("; ".join(problems)) from None
        return self


class TrainConfig(Strict):
    num_workers: int = Field(2, gt=0)
    cpus_per_worker: float = Field(0.5, gt=0, description="fractional leaves CPUs for Ray Data")
    use_gpu: bool | Literal["auto"] = "auto"
    batch_size: int = Field(64, gt=0, description="per worker")
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="on weight matrices only")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="GANs: 0.5 (DCGAN) or 0 (WGAN-GP)")
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    zero_stage: int = Field(2, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast"] = Field(
        "auto", description="auto: fp32 on CPU; on GPU the model's choice (GPT bf16, U-Nets bf16-autocast)")
    checkpoint_every: int = Field(200, gt=0, description="optimizer steps between checkpoints")
    log_every: int = Field(20, gt=0)
    max_failures: int = Field(1, ge=-1, description="worker-group restarts; -1 means forever")
    seed: int = 0
    warm_start: bool = Field(False, description="start from the registered champion's weights")
    grad_accum_steps: int = Field(1, gt=0, description="micro-batches per optimizer step")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: optimizer state in CPU memory (GPU)")
    offload_params: bool = Field(False, description="ZeRO-Infinity: parameters in CPU memory (stage 3, GPU)")
    activation_checkpointing: bool = Field(False, description="recompute activations in backward")
    compile: bool = Field(False, description="torch.compile each network through DeepSpeed")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK", description="how Ray places the workers on nodes; STRICT_SPREAD: one per node")
    peak_tflops: float | None = Field(None, gt=0, description="device peak for MFU; known GPUs are looked up")

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> TrainConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"offload_params: needs zero_stage 3, not {self.zero_stage}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer: needs zero_stage 1, 2 or 3")
        return self


class EvaluateConfig(Strict):
    num_samples: int = Field(500, gt=1, description="images: generated for classifier-FID; text: val blocks scored")
    grid_size: int = Field(64, gt=0)
    classifier_epochs: int = Field(15, gt=0)
    num_cpus: float = Field(2, gt=0)
    num_gpus: float = Field(0, ge=0, description="evaluate on a GPU when the cluster has one")
    seed: int = 0
    iw_samples: int = Field(50, gt=0, description="VAEs: posterior samples per image for the NLL estimate")
    prompts: list[str] = Field(default_factory=lambda: ["def ", "import ", "class "],
                               description="text: prompts whose completions become an artifact")
    max_new_tokens: int = Field(200, gt=0)
    temperature: float = Field(0.8, ge=0)
    top_k: int | None = Field(50, gt=0)


class GateConfig(Strict):
    """When a new version may take the alias from the current champion: it must beat it on
    `metric`, evaluated on the same split, by more than `min_improvement`."""

    metric: str = "eval/classifier_fid"
    mode: Literal["min", "max"] = "min"
    min_improvement: float = Field(0.0, ge=0)


class RegisterConfig(Strict):
    model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    alias: str = "champion"
    gate: GateConfig = Field(default_factory=GateConfig)


# `register` is the step's name in DESIGN.md; pydantic only warns that it hides ABCMeta.register.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class PipelineConfig(Strict):
    name: str = Field(min_length=1)
    experiment: str | None = None
    storage: str = "./.genpipe"
    tracking_uri: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register: RegisterConfig
    tune: TuneSection | None = Field(None, description="`genpipe tune`: the sweep")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="`genpipe submit`: the Ray job")

    _no_credentials_in_uris = field_validator("storage", "tracking_uri")(without_credentials)

    @model_validator(mode="after")
    def _sweep_is_valid(self) -> PipelineConfig:
        if self.tune is None:
            return self
        if self.data.modality != "image":
            raise ValueError("tune: sweeps are for image families (GANs, autoencoders, diffusion), "
                             f"not {self.data.modality} data")
        base = self.model_dump(mode="json", exclude={"tune"})
        for path, assignments in self.tune.candidate_assignments():
            try:
                PipelineConfig.model_validate(assign(base, assignments))
            except ValidationError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in assignments.items())
                raise ValueError(f"tune.space.{path}: {shown} gives an invalid config: "
                                 f"{_problem(exc.errors()[0])}") from None
        families = ([models.family_class(f) for f in self.tune.space["model.family"].choice or []]
                    if "model.family" in self.tune.space else [models.family_class(self.model.family)])
        for family in families:
            if self.tune.metric not in metric_names(family):
                raise ValueError(f"tune.metric: {self.tune.metric!r} is not reported by {family.family} trials; "
                                 f"they report {', '.join(metric_names(family))}")
        return self

    @model_validator(mode="after")
    def _model_fits_data(self) -> PipelineConfig:
        cls = models.family_class(self.model.family)
        if cls.modality != self.data.modality:
            raise ValueError(f"model.family: {self.model.family} learns {cls.modality}, but data.source "
                             f"{self.data.source.kind} is {self.data.modality} data")
        block_size = {**cls.presets[self.model.preset], **self.model.params}.get("block_size")
        if self.data.modality == "text" and block_size is not None and self.data.seq_len > block_size:
            raise ValueError(f"data.seq_len: {self.data.seq_len} tokens do not fit the model's block_size "
                             f"{block_size}; lower data.seq_len or raise model.params.block_size")
        if self.train.activation_checkpointing and "set_activation_checkpointing" not in vars(cls):
            raise ValueError(f"train.activation_checkpointing: the {self.model.family} family does not support it")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


BUILTIN_PACKAGE = "pipelines.configs"
ENV_CONFIG_PREFIX = "env:"


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUILTIN_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def read_config_source(name_or_path: str) -> dict[str, Any]:
    """The raw mapping from a YAML file, a built-in config of that name, or `env:NAME`: the YAML
    in environment variable NAME (how `genpipe submit` hands a job its config)."""
    path = Path(name_or_path)
    if name_or_path.startswith(ENV_CONFIG_PREFIX):
        variable = name_or_path.removeprefix(ENV_CONFIG_PREFIX)
        if variable not in os.environ:
            raise ConfigError([f"CONFIG: environment variable {variable} is not set"])
        text, origin = os.environ[variable], name_or_path
    elif path.is_file():
        text, origin = path.read_text(), str(path)
    elif name_or_path in builtin_configs():
        text = resources.files(BUILTIN_PACKAGE).joinpath(f"{name_or_path}.yaml").read_text()
        origin = f"built-in {name_or_path}"
    else:
        raise ConfigError([f"CONFIG: {name_or_path!r} is neither a file nor a built-in config "
                           f"({', '.join(builtin_configs())})"])
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"CONFIG: {origin} is not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"CONFIG: {origin} must hold a mapping at the top level"])
    return raw


def assign(raw: dict[str, Any], assignments: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with each dotted path set to its value (a sweep trial's config)."""
    result = copy.deepcopy(raw)
    for path, value in assignments.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """`a.b=value` assignments; values are parsed as YAML (numbers, booleans, lists)."""
    result = copy.deepcopy(raw)
    problems = []
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {assignment}: expected KEY.PATH=VALUE")
            continue
        *parents, leaf = key.strip().split(".")
        node = result
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{key}: {part} is not a section")
                break
            node = child
        else:
            try:
                node[leaf] = yaml.safe_load(value)
            except yaml.YAMLError:
                node[leaf] = value
    if problems:
        raise ConfigError(problems)
    return result


def _describe(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if error["type"] in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[error['type']]} {limit}"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required"
    return error["msg"].removeprefix("Value error, ")


def validate_config(raw: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_problem(error) for error in exc.errors()]) from None


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as `field.path: message`."""
    # Drop the union tag pydantic inserts for discriminated unions (data.source.digits.x).
    loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and p in _SOURCE_KINDS)]
    message = _describe(error)
    nested = re.match(r"^([\w.]+): (.*)$", message)  # a model validator naming a sub-field
    if nested:
        loc, message = [*loc, nested.group(1)], nested.group(2)
    return f"{'.'.join(loc) or 'config'}: {message}"


_SOURCE_KINDS = {"digits", "image_folder", "parquet", "python_stdlib", "text_files"}


def load_config(name_or_path: str, assignments: list[str] | None = None,
                **top_level: str | None) -> PipelineConfig:
    """Read, override (`--set`, then CLI options such as storage), validate."""
    raw = apply_overrides(read_config_source(name_or_path), assignments or [])
    raw.update({key: value for key, value in top_level.items() if value is not None})
    return validate_config(raw)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
