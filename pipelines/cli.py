"""`genpipe`: the command line (DESIGN.md's CLI contract).

Exit codes: 0 success, 1 a failed run, 2 bad usage or an invalid config (nothing started).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.storage import normalize

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_STORAGE = "./.genpipe"


class UsageError(Exception):
    """Bad usage: exit 2 with the message."""


def _say(message: str) -> None:
    print(message, flush=True)


def connect_ray(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start Ray in this process."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(address=address, logging_level="WARNING", log_to_driver=True)


def _load(args: argparse.Namespace) -> PipelineConfig:
    config = load_config(args.config, args.set, storage=args.storage, tracking_uri=args.tracking_uri)
    return config.model_copy(update={"storage": normalize(config.storage)})


def _run_workflow(args: argparse.Namespace, steps: tuple[str, ...]) -> int:
    from pipelines import tracking
    from pipelines.workflow import Workflow, new_workflow_id

    config = _load(args)  # validated before anything starts
    workflow = Workflow(config.storage, args.workflow_id or new_workflow_id(config.name))
    if args.workflow_id and workflow.exists():
        config = workflow.config()  # a workflow keeps the config it was started with
    connect_ray(args.address)
    meta = workflow.create(config, tracking.tracking_uri(config), steps)
    _say(f"workflow {workflow.id}")
    _say(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return _execute(workflow, steps)


def _execute(workflow, steps: tuple[str, ...]) -> int:
    from pipelines.workflow import WorkflowFailed

    try:
        results = workflow.run(steps, echo=_say)
    except WorkflowFailed as failure:
        _say(f"FAILED: {failure}")
        _say(f"fix the cause, then: genpipe resume {workflow.id} --storage {workflow.storage}")
        return EXIT_FAILED
    _summarise(workflow, results)
    return EXIT_OK


def _summarise(workflow, results: dict[str, dict[str, Any]]) -> None:
    if "prepare" in results:
        prep = results["prepare"]
        _say(f"dataset {prep['fingerprint']} ({'cache hit' if prep['cache_hit'] else 'prepared'}): "
             f"{prep['rows']} rows, {prep['rejects']} rejected")
    if "evaluate" in results:
        shown = ", ".join(f"{k.removeprefix('eval/')}={v:.3g}" for k, v in results["evaluate"]["metrics"].items())
        _say(f"evaluation: {shown}")
        _say(f"sample grid: {results['evaluate']['grid_uri']}")
    if "register" in results:
        reg = results["register"]
        _say(f"registered {reg['model_name']} version {reg['version']} "
             f"(@{reg['alias']} -> version {reg['alias_version']}): {reg['model_uri']}")
    _say(f"workflow {workflow.id} succeeded")


def cmd_resume(args: argparse.Namespace) -> int:
    from pipelines.workflow import Workflow

    workflow = Workflow(normalize(args.storage or DEFAULT_STORAGE), args.workflow_id)
    if not workflow.exists():
        raise UsageError(f"WORKFLOW_ID: no workflow {args.workflow_id!r} in {workflow.storage}")
    meta = workflow.meta()
    connect_ray(args.address)
    _say(f"workflow {workflow.id} (resuming)")
    _say(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return _execute(workflow, tuple(meta["steps"]))


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.workflow import Workflow, list_workflows

    storage = normalize(args.storage or DEFAULT_STORAGE)
    workflows = [Workflow(storage, args.workflow_id)] if args.workflow_id else list_workflows(storage)
    if args.workflow_id and not workflows[0].exists():
        raise UsageError(f"WORKFLOW_ID: no workflow {args.workflow_id!r} in {storage}")
    if not workflows:
        _say(f"no workflows in {storage}")
    for workflow in workflows:
        states = workflow.step_states()
        steps = workflow.meta()["steps"]
        shown = "  ".join(f"{step}:{states[step]}" for step in steps)
        _say(f"{workflow.id}  {shown}")
        if args.workflow_id:
            for step in steps:
                record = workflow.record(step)
                if record:
                    _say(f"  {step}: {record['duration_s']}s {record['result']}")
                elif states[step] == "failed":
                    from pipelines.storage import read_json

                    _say(f"  {step}: {read_json(workflow.error_uri(step))['error']}")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from models.weights import load_model
    from pipelines import tracking
    from pipelines.grids import save_grid
    from pipelines.registry import download

    if args.n <= 0:
        raise UsageError("-n: must be > 0")
    storage = normalize(args.storage or DEFAULT_STORAGE)
    uri = args.tracking_uri or tracking.default_tracking_uri(storage)
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = download(args.model_uri, uri, folder)
        except Exception as exc:
            _say(f"MODEL_URI: cannot load {args.model_uri} from {uri}: {exc}".splitlines()[0])
            return EXIT_FAILED
        model = load_model(local)
    samples = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    path = save_grid(samples, args.out)
    _say(f"wrote {args.n} samples from {args.model_uri} to {path}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    import models

    for family, cls in models.FAMILIES.items():
        summary = (inspect.getdoc(cls) or "").splitlines()
        _say(f"{family}: {summary[0] if summary else ''}")
        for preset, params in cls.presets.items():
            _say(f"  {preset}: {', '.join(f'{k}={v}' for k, v in params.items())}")
    return EXIT_OK


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file or a built-in config name (e.g. quickstart)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=5 (repeatable)")
    _add_cluster_options(parser)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in the storage)")
    parser.add_argument("--workflow-id", help="continue or name this workflow")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--storage", help=f"fsspec URI for shards, checkpoints, records (default {DEFAULT_STORAGE})")


def build_parser() -> argparse.ArgumentParser:
    from pipelines.steps import STEP_ORDER

    parser = argparse.ArgumentParser(prog="genpipe", description="Train generative models as workflows on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole workflow")
    _add_run_options(run)
    run.set_defaults(handler=lambda a: _run_workflow(a, STEP_ORDER))
    for index, step in enumerate(STEP_ORDER[:-1]):
        single = commands.add_parser(step, help=f"run {step} (and any earlier step not yet done)")
        _add_run_options(single)
        single.set_defaults(handler=lambda a, i=index: _run_workflow(a, STEP_ORDER[: i + 1]))
    resume = commands.add_parser("resume", help="re-run a workflow, skipping its finished steps")
    resume.add_argument("workflow_id")
    _add_cluster_options(resume)
    resume.set_defaults(handler=cmd_resume)
    status = commands.add_parser("status", help="list workflows, or one workflow's steps")
    status.add_argument("workflow_id", nargs="?")
    status.add_argument("--storage")
    status.set_defaults(handler=cmd_status)
    sample = commands.add_parser("sample", help="sample a registered model into a PNG grid")
    sample.add_argument("model_uri", help="e.g. models:/quickstart-ddpm@champion")
    sample.add_argument("-n", type=int, default=16, help="number of samples")
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--storage")
    sample.add_argument("--tracking-uri")
    sample.set_defaults(handler=cmd_sample)
    zoo = commands.add_parser("models", help="list the model zoo with its presets")
    zoo.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
