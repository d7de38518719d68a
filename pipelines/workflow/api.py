"""genpipe's Python API for workflows, for notebooks and scripts (`import genpipe` re-exports it
with jobs and schedules); the `genpipe` CLI is a thin layer over it.

    import genpipe

    outcome = genpipe.run("quickstart", sets=["train.max_steps=30"])
    genpipe.status(outcome.workflow.id)
    images = genpipe.sample("models:/quickstart-ddpm@champion", n=16)

Defaults come from the environment as Ray and MLflow users expect: storage from GENPIPE_STORAGE
(else ./.genpipe), the tracking server from MLFLOW_TRACKING_URI (else sqlite in the storage), the
Ray cluster from RAY_ADDRESS (else a local Ray in this process).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.base import GenerativeModel
from pipelines.config import ConfigError, PipelineConfig, default_storage, load_config
from pipelines.registry import tracking
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.train.startup import EMBEDDED_RAY_VARIABLE, embedded_ray_defaults
from pipelines.workflow import preflight
from pipelines.workflow.handle import RunHandle
from pipelines.workflow.results import StepResult
from pipelines.workflow.runner import Workflow, list_workflows, new_workflow_id
from pipelines.workflow.step_order import RUN_STEPS
from storage import normalize
from typed_errors import OptionError, first_line

if TYPE_CHECKING:
    from serving.audio import Clip
    from serving.music import Piece
    from serving.video import Video

Printer = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default printer of the API: silent (the CLI passes its own)."""


@dataclass
class Outcome:
    """A workflow that ran (its results), or that decided not to (`skipped` says why)."""

    workflow: Workflow
    results: dict[str, StepResult] = field(default_factory=dict)
    skipped: str | None = None


class ModelUnavailable(RuntimeError):
    """A registered model that cannot be found or downloaded; the message names the URI."""


def connect_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS; `auto` joins the one `ray start` last
    started on this machine), else start Ray in this process. The output of Ray's processes stays
    in Ray's session logs (the steps report progress through pipelines/workflow/progress.py)
    unless GENPIPE_VERBOSE=1 (`genpipe -v`)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    joins = (address or os.environ.get("RAY_ADDRESS") or "local") != "local"
    if joins:
        os.environ.pop(EMBEDDED_RAY_VARIABLE, None)  # from a parent that ran its own Ray: this one joins a cluster
    if not joins:
        # Ray's own default (address None) joins whatever cluster wrote ray_current_cluster in
        # Ray's temp folder last, alive or not: a run then dies with someone else's cluster.
        address = "local"
        # A Ray started here, for this process only, warns either way about token auth (on when
        # ~/.ray/auth_token exists, off when not); a cluster's own setting is docs/cluster.md's topic.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    verbose = os.environ.get("GENPIPE_VERBOSE") == "1"
    own_handler = signal.getsignal(signal.SIGTERM)
    options: dict[str, Any] = {}
    if not joins and os.environ.get("GENPIPE_RAY_DASHBOARD") != "1":
        # A Ray that lives as long as this command: its dashboard's processes took ~3% of a
        # 2-core machine that training would use, for pages no one opens (GENPIPE_RAY_DASHBOARD=1).
        options["include_dashboard"] = False
    if not joins:
        embedded_ray_defaults()
    ray.init(
        address=address,
        logging_level=logging.INFO if verbose else logging.WARNING,
        log_to_driver=verbose,
        **options,
    )
    # ray.init replaces the SIGTERM handler (its core worker then aborts the process): a caller that
    # handles SIGTERM itself (the CLI ends the MLflow run KILLED) keeps its handler.
    if callable(own_handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, own_handler)


def resolve_config(
    config: str | PipelineConfig,
    sets: Sequence[str] = (),
    storage: str | None = None,
    tracking_uri: str | None = None,
    sections: tuple[str, ...] = (),
) -> PipelineConfig:
    """A config by name or path (validated, `sets` applied, `sections` given their defaults where
    it has none), with its storage made absolute."""
    if isinstance(config, str):
        config = load_config(config, list(sets), sections, storage=storage, tracking_uri=tracking_uri)
    elif sets or storage or tracking_uri:
        raise ValueError("sets, storage and tracking_uri apply to a config given by name or path")
    return config.model_copy(update={"storage": normalize(config.storage)})


def check_services(config: PipelineConfig, address: str | None = None) -> None:
    """Fail in seconds on a wrong bucket, refused credentials or a server that is not there."""
    preflight.check_storage(config.storage)
    preflight.check_ray_address(address)
    preflight.check_tracking(tracking.tracking_uri(config))


def run(
    config: str | PipelineConfig,
    *,
    sets: Sequence[str] = (),
    steps: tuple[str, ...] = RUN_STEPS,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    workflow_id: str | None = None,
    when: str = "always",
    echo: Printer = _quiet,
    wait: bool = True,
) -> Outcome | RunHandle:
    """Run `steps` of the workflow for `config` (a name, a YAML path or a PipelineConfig).

    An existing `workflow_id` continues that workflow with the config it started with. With
    `when="data-changed"` a new workflow is skipped when the champion was trained on this very
    dataset. Raises ConfigError (bad config, unreachable service) before anything starts, and
    WorkflowFailed when a step fails. With `wait=False` the config is validated, the services
    checked and Ray joined or started here, then the workflow runs in a thread: a RunHandle
    (pipelines/workflow/handle.py) comes back at once."""
    apply_mlflow_defaults()
    config = resolve_config(config, sets, storage, tracking_uri, ("compare",) if "compare" in steps else ())
    if not wait:
        check_services(config, address)
        connect_ray(address)  # from this thread: Ray sets its signal handlers in the main thread only
        checked, chosen = config, workflow_id or new_workflow_id(config.name)
        return RunHandle.start(
            chosen,
            checked.storage,
            lambda: run(checked, steps=steps, address=address, workflow_id=chosen, when=when, echo=echo),
            lambda: status(chosen, storage=checked.storage)[0],
        )
    if "tune" in steps and config.tune is None:
        raise ConfigError(
            ["tune: missing: genpipe tune needs a tune: section with a space (see the built-in gan-sweep-digits)"]
        )
    if "compare" in steps and config.compare is None:
        raise ConfigError(["compare: missing: genpipe compare needs a compare: section (or --families, --budget)"])
    if "compare" in steps and config.compare is not None and not config.compare.register_winner:
        steps = tuple(step for step in steps if step not in ("evaluate", "register"))  # rank only
    check_services(config, address)
    workflow = Workflow(config.storage, workflow_id or new_workflow_id(config.name))
    if workflow_id and workflow.exists():
        config = workflow.config()  # a workflow keeps the config it was started with
    if workflow.record("prepare") is None:
        preflight.check_source(config.data)
    if when == "data-changed" and not workflow.exists():  # a started workflow is not re-decided
        unchanged = data_unchanged(config)
        if unchanged:
            workflow.skip(config, f"data unchanged: {unchanged}")
            return Outcome(workflow, skipped=f"data unchanged: {unchanged}")
    connect_ray(address)
    preflight.check_resources(config, steps)
    meta = workflow.create(config, tracking.tracking_uri(config), steps)
    echo(f"workflow {workflow.id}")
    echo(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return Outcome(workflow, workflow.run(steps, echo=echo))


def data_unchanged(config: PipelineConfig) -> str | None:
    """Why training can be skipped: the champion was trained on exactly this dataset."""
    from data_prep.prepare import fingerprint
    from pipelines.registry.versions import aliased_version

    champion = aliased_version(tracking.tracking_uri(config), config.register.model_name, config.register.alias)
    key = fingerprint(config.data)
    if champion is not None and champion.tags.get("genpipe.dataset.fingerprint") == key:
        return f"dataset {key} is already in {champion.name} version {champion.version} (@{config.register.alias})"
    return None


def open_workflow(workflow_id: str, storage: str | None = None, write: bool = True) -> Workflow:
    """An existing workflow; a ConfigError names the id when the storage has none. The storage
    is probed first: for writing (resume), or only for reading (status)."""
    workflow = Workflow(normalize(storage or default_storage()), workflow_id)
    preflight.check_storage(workflow.storage, write=write)  # before reading the workflow's records
    if not workflow.exists():
        raise ConfigError([f"WORKFLOW_ID: no workflow {workflow_id!r} in {workflow.storage}"])
    return workflow


def resume(
    workflow_id: str,
    *,
    sets: Sequence[str] = (),
    storage: str | None = None,
    address: str | None = None,
    echo: Printer = _quiet,
) -> Outcome:
    """Re-run a workflow with the config it started with, skipping its finished steps. `sets`
    change the config for the steps not yet done (a gate metric that failed register), and are
    recorded in the workflow."""
    apply_mlflow_defaults()
    workflow = open_workflow(workflow_id, storage)
    config = workflow.amend(list(sets)) if sets else workflow.config()
    meta = workflow.meta()
    if workflow.record("prepare") is None:
        preflight.check_source(config.data)
    preflight.check_ray_address(address)
    preflight.check_tracking(tracking.tracking_uri(config))
    connect_ray(address)
    preflight.check_resources(config, tuple(meta["steps"]))
    echo(f"workflow {workflow.id} (resuming)")
    echo(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return Outcome(workflow, workflow.run(tuple(meta["steps"]), echo=echo))


@dataclass(frozen=True)
class WorkflowStatus:
    id: str
    skipped: str | None
    states: dict[str, str]  # step -> succeeded, failed or pending, in the workflow's order
    records: dict[str, dict[str, Any]]  # step -> its record, for the steps that succeeded
    errors: dict[str, str]  # step -> why it failed


def status(workflow_id: str | None = None, *, storage: str | None = None) -> list[WorkflowStatus]:
    """Every workflow in the storage (or the one named), with each step's state."""
    storage = normalize(storage or default_storage())
    if workflow_id:
        workflows = [open_workflow(workflow_id, storage, write=False)]
    else:
        preflight.check_storage(storage, field="--storage", write=False)
        workflows = list_workflows(storage)
    found = []
    for workflow in workflows:
        meta = workflow.meta()
        if meta.get("skipped"):
            found.append(WorkflowStatus(workflow.id, meta["skipped"], {}, {}, {}))
            continue
        states = workflow.step_states()
        records = {step: record for step in states if (record := workflow.record(step)) is not None}
        errors = {step: workflow.error(step) for step, state in states.items() if state == "failed"}
        found.append(WorkflowStatus(workflow.id, None, states, records, errors))
    return found


def registry_uri(tracking_uri: str | None = None, storage: str | None = None) -> str:
    """The MLflow registry: the one given, MLFLOW_TRACKING_URI, or sqlite in the storage."""
    return tracking_uri or tracking.default_tracking_uri(normalize(storage or default_storage()))


def _download(model_uri: str, tracking_uri: str, folder: str) -> Path:
    from pipelines.registry.versions import download

    try:
        return Path(download(model_uri, tracking_uri, folder))
    except Exception as exc:
        raise ModelUnavailable(f"MODEL_URI: cannot load {model_uri} from {tracking_uri}: {first_line(exc)}") from exc


def load_model(model_uri: str, *, tracking_uri: str | None = None, storage: str | None = None) -> GenerativeModel:
    """A registered model (`models:/NAME@ALIAS` or `models:/NAME/VERSION`) from its safetensors
    weights, in eval mode on the CPU; no pickled code runs."""
    from models.weights import load_model as load_weights

    apply_mlflow_defaults()
    with tempfile.TemporaryDirectory() as folder:
        return load_weights(_download(model_uri, registry_uri(tracking_uri, storage), folder))


def sample(
    model_uri: str,
    n: int | None = None,
    *,
    seed: int = 0,
    tracking_uri: str | None = None,
    storage: str | None = None,
    prompt: str | None = None,
    label: str | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    family_options: dict[str, Any] | None = None,
    inputs: list[str] | None = None,
    direction: str | None = None,
    horizon: int | None = None,
) -> torch.Tensor | list[str] | list[Piece] | list[Clip] | list[Video]:
    """Samples from a registered model: images (n, C, H, W) in [-1, 1] (16 by default), or for a
    language model `n` completions of `prompt` (1 by default), or of music `n` pieces (`Piece`:
    notes, and their MIDI, WAV or piano roll), or for an audio model `n` clips (`Clip`: samples,
    and their WAV or spectrogram). `family_options` are sampling options of the model's own family
    (`GenerativeModel.sample_options`). An image-to-image model translates the image files
    `inputs` (paths or URIs; `n` defaults to their number) in `direction` (a2b or b2a). A video
    model continues the clips `inputs` (GIF, MP4, or a folder of frames; `n` defaults to their
    number, more draws several futures of each) by `horizon` frames (`Video`: context and
    prediction, as GIF, MP4 or PNG). An OptionError (a ValueError) names the option that does not
    fit the model; ModelUnavailable, a model that cannot be loaded."""
    from models.weights import load_model as load_weights
    from pipelines.workflow.sampling import SampleRequest, draw

    request = SampleRequest(
        n=n,
        seed=seed,
        prompt=prompt,
        label=label,
        guidance=guidance,
        sampler=sampler,
        steps=steps,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        family_options=family_options or {},
        inputs=inputs or [],
        direction=direction,
        horizon=horizon,
    )
    if n is not None and n <= 0:
        raise OptionError("n", "must be > 0")
    apply_mlflow_defaults()
    with tempfile.TemporaryDirectory() as folder:
        local = _download(model_uri, registry_uri(tracking_uri, storage), folder)
        return draw(load_weights(local), local, request)
