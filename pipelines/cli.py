"""`genpipe`: the command line (DESIGN.md's CLI contract).

Exit codes: 0 success, 1 a failed run, 2 bad usage or an invalid config (nothing started).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.jobs import JobsError
from pipelines.storage import normalize, read_json

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


def _leave_a_jobs_working_directory() -> None:
    """A Ray job's driver starts inside the job's unpacked working_dir, which Ray may unpack again
    in place while the job runs (seen on the second job of a cluster, a few seconds in): the
    driver's current directory is then a deleted copy and every os.getcwd() fails (MLflow calls
    it). Imports are unaffected (they go by path); genpipe's own paths are absolute. So a job's
    driver works from the temp directory instead."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # set by Ray's job supervisor for the driver
        os.chdir(tempfile.gettempdir())


def _load(args: argparse.Namespace) -> PipelineConfig:
    config = load_config(args.config, args.set, storage=args.storage, tracking_uri=args.tracking_uri)
    return config.model_copy(update={"storage": normalize(config.storage)})


def _run_workflow(args: argparse.Namespace, steps: tuple[str, ...]) -> int:
    from pipelines import tracking
    from pipelines.workflow import Workflow, new_workflow_id

    config = _load(args)  # validated before anything starts
    if "tune" in steps and config.tune is None:
        raise ConfigError(["tune: missing: genpipe tune needs a tune: section with a space "
                           "(see the built-in gan-sweep-digits)"])
    _check_services(config, args.address)
    workflow = Workflow(config.storage, args.workflow_id or new_workflow_id(config.name))
    if args.workflow_id and workflow.exists():
        config = workflow.config()  # a workflow keeps the config it was started with
    if args.when == "data-changed" and not workflow.exists():  # a started workflow is not re-decided
        unchanged = _data_unchanged(config)
        if unchanged:
            workflow.skip(config, f"data unchanged: {unchanged}")
            _say(f"workflow {workflow.id} skipped: data unchanged: {unchanged}")
            return EXIT_OK
    connect_ray(args.address)
    meta = workflow.create(config, tracking.tracking_uri(config), steps)
    _say(f"workflow {workflow.id}")
    _say(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return _execute(workflow, steps)


def _check_services(config: PipelineConfig, address: str | None) -> None:
    """Fail in seconds on a wrong bucket, refused credentials or a server that is not there."""
    from pipelines import preflight

    preflight.check_storage(config.storage)
    _check_servers(config, address)


def _check_servers(config: PipelineConfig, address: str | None) -> None:
    from pipelines import preflight, tracking

    preflight.check_ray_address(address)
    preflight.check_tracking(tracking.tracking_uri(config))


def _data_unchanged(config: PipelineConfig) -> str | None:
    """Why training can be skipped: the champion was trained on exactly this dataset."""
    from data_prep.prepare import fingerprint
    from pipelines import tracking
    from pipelines.registry import aliased_version

    champion = aliased_version(tracking.tracking_uri(config), config.register.model_name, config.register.alias)
    key = fingerprint(config.data)
    if champion is not None and champion.tags.get("genpipe.dataset.fingerprint") == key:
        return f"dataset {key} is already in {champion.name} version {champion.version} (@{config.register.alias})"
    return None


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
    if "tune" in results:
        sweep = results["tune"]
        _say(f"sweep: {sweep['trials']} trials, {sweep['stopped_early']} stopped early; best {sweep['best_trial']} "
             f"({sweep['family']}): {sweep['best_params']}")
    if "evaluate" in results:
        shown = ", ".join(f"{k.removeprefix('eval/')}={v:.3g}" for k, v in results["evaluate"]["metrics"].items())
        _say(f"evaluation: {shown}")
        _say(f"samples: {results['evaluate']['samples_uri']}")
    if "register" in results:
        reg = results["register"]
        _say(f"registered {reg['model_name']} version {reg['version']}: {reg['model_uri']}")
        _say(f"gate: {reg['decision']}: {reg['reason']}; @{reg['alias']} -> version {reg['alias_version']}")
    _say(f"workflow {workflow.id} succeeded")


def cmd_resume(args: argparse.Namespace) -> int:
    from pipelines import preflight
    from pipelines.workflow import Workflow

    workflow = Workflow(normalize(args.storage or DEFAULT_STORAGE), args.workflow_id)
    preflight.check_storage(workflow.storage)  # before reading the workflow's records from it
    if not workflow.exists():
        raise UsageError(f"WORKFLOW_ID: no workflow {args.workflow_id!r} in {workflow.storage}")
    meta = workflow.meta()
    _check_servers(workflow.config(), args.address)
    connect_ray(args.address)
    _say(f"workflow {workflow.id} (resuming)")
    _say(f"mlflow run {meta['run_id']}: {meta['run_url']}")
    return _execute(workflow, tuple(meta["steps"]))


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines import preflight
    from pipelines.workflow import Workflow, list_workflows

    storage = normalize(args.storage or DEFAULT_STORAGE)
    preflight.check_storage(storage, field="--storage", write=False)
    workflows = [Workflow(storage, args.workflow_id)] if args.workflow_id else list_workflows(storage)
    if args.workflow_id and not workflows[0].exists():
        raise UsageError(f"WORKFLOW_ID: no workflow {args.workflow_id!r} in {storage}")
    if not workflows:
        _say(f"no workflows in {storage}")
    for workflow in workflows:
        meta = workflow.meta()
        if meta.get("skipped"):
            _say(f"{workflow.id}  skipped: {meta['skipped']}")
            continue
        states = workflow.step_states()
        steps = meta["steps"]
        shown = "  ".join(f"{step}:{states[step]}" for step in steps)
        _say(f"{workflow.id}  {shown}")
        if args.workflow_id:
            for step in steps:
                record = workflow.record(step)
                if record:
                    _say(f"  {step}: {record['duration_s']}s {record['result']}")
                elif states[step] == "failed":
                    _say(f"  {step}: {read_json(workflow.error_uri(step))['error']}")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    import tempfile

    from models.weights import load_model
    from pipelines.registry import download

    if args.n is not None and args.n <= 0:
        raise UsageError("-n: must be > 0")
    uri = _registry_uri(args)
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = download(args.model_uri, uri, folder)
        except Exception as exc:
            _say(f"MODEL_URI: cannot load {args.model_uri} from {uri}: {exc}".splitlines()[0])
            return EXIT_FAILED
        model = load_model(local)
        if model.modality == "text":
            return _sample_text(model, Path(local), args)
    return _sample_images(model, args)


def _sample_images(model, args: argparse.Namespace) -> int:
    import torch

    from pipelines.grids import save_grid
    from pipelines.image_sampling import sampling_options

    count = args.n or 16
    try:
        options = sampling_options(model, count, args.prompt, args.label, args.guidance, args.sampler, args.steps)
    except ValueError as exc:
        raise UsageError(f"{exc} ({args.model_uri})") from None
    samples = model.sample(count, generator=torch.Generator().manual_seed(args.seed), **options)
    path = save_grid(samples, args.out)
    _say(f"wrote {count} samples from {args.model_uri} to {path}")
    return EXIT_OK


def _sample_text(model, folder: Path, args: argparse.Namespace) -> int:
    """Print completions of --prompt; a prompt longer than the context is cut with a warning."""
    import warnings

    import torch

    from data_prep.text_tokenizer import TOKENIZER_FILE, TextTokenizer
    from pipelines.text_metrics import complete

    if args.max_new_tokens <= 0:
        raise UsageError("--max-new-tokens: must be > 0")
    if args.top_k is not None and args.top_k <= 0:
        raise UsageError("--top-k: must be > 0")
    tokenizer = TextTokenizer.load(str(folder / TOKENIZER_FILE))
    generator = torch.Generator().manual_seed(args.seed)
    for index in range(args.n or 1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = complete(model, tokenizer, args.prompt or "", args.max_new_tokens, args.temperature, args.top_k,
                            generator)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        if index:
            _say("-" * 40)
        _say(text)
    return EXIT_OK


def _schedules(args: argparse.Namespace):
    from pipelines.schedule import ScheduleStore

    return ScheduleStore(normalize(args.storage or DEFAULT_STORAGE))


def cmd_schedule_add(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipelines.schedule import Schedule

    store = _schedules(args)
    load_config(args.config, args.set)  # a broken config is refused now, not at 3 a.m.
    config = str(Path(args.config).resolve()) if Path(args.config).is_file() else args.config
    try:
        schedule = Schedule(name=args.name, config=config, sets=args.set, cron=args.cron, timezone=args.timezone,
                            address=args.address, when=args.when, overlap=args.overlap, created_at=time.time())
    except ValidationError as exc:
        raise ConfigError([f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                           for e in exc.errors()]) from None
    if args.name in store.names():
        raise UsageError(f"NAME: a schedule named {args.name!r} exists; remove it first")
    store.put(schedule)
    _say(f"schedule {args.name}: {args.cron} ({args.timezone}), next {_when(schedule.next_slot(time.time()))}")
    return EXIT_OK


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def cmd_schedule_list(args: argparse.Namespace) -> int:
    store = _schedules(args)
    names = store.names()
    if not names:
        _say(f"no schedules in {store.storage}")
    now = time.time()
    for name in names:
        schedule, state = store.get(name), store.state(name)
        nxt = "paused" if schedule.paused else f"next {_when(schedule.next_slot(now))}"
        running = f", running {state.running.workflow_id}" if state.running else ""
        where = f"  on {schedule.address}" if schedule.address else ""
        _say(f"{name}  '{schedule.cron}' {schedule.timezone}  {nxt}  when={schedule.when}{where}{running}")
        _say(f"  last: {state.last_outcome or 'never fired'}"
             + (f" ({state.last_workflow_id})" if state.last_workflow_id else ""))
    return EXIT_OK


def cmd_schedule_toggle(args: argparse.Namespace) -> int:
    store = _schedules(args)
    try:
        schedule = store.get(args.name)
    except KeyError as exc:
        raise UsageError(f"NAME: {exc.args[0]}") from None
    store.put(schedule.model_copy(update={"paused": args.schedule_command == "pause"}))
    _say(f"schedule {args.name} {'paused' if args.schedule_command == 'pause' else 'resumed'}")
    return EXIT_OK


def cmd_schedule_remove(args: argparse.Namespace) -> int:
    try:
        _schedules(args).remove(args.name)
    except KeyError as exc:
        raise UsageError(f"NAME: {exc.args[0]}") from None
    _say(f"schedule {args.name} removed")
    return EXIT_OK


def cmd_scheduler(args: argparse.Namespace) -> int:
    import signal
    import socket
    import threading
    import uuid

    from pipelines.schedule import Scheduler
    from pipelines.schedule_runner import Launchers

    store = _schedules(args)
    holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    scheduler = Scheduler(store, Launchers(store.storage), holder, echo=_say)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _say(f"[scheduler] {holder} watching {store.root} every {args.tick}s")
    while not stop.is_set():
        scheduler.tick(time.time())
        stop.wait(args.tick)
    scheduler.shutdown(time.time())
    _say("[scheduler] stopped")
    return EXIT_OK


def _registry_uri(args: argparse.Namespace) -> str:
    from pipelines import tracking

    return args.tracking_uri or tracking.default_tracking_uri(normalize(args.storage or DEFAULT_STORAGE))


def cmd_promote(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from pipelines.registry import promote

    try:
        previous = promote(_registry_uri(args), args.name, args.version, args.alias)
    except MlflowException as exc:
        raise UsageError(f"NAME/VERSION: {args.name} version {args.version}: {exc.message}") from None
    _say(f"{args.name}@{args.alias}: version {previous} -> version {args.version}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from pipelines.registry import history

    try:
        rows = history(_registry_uri(args), args.name)
    except MlflowException as exc:
        raise UsageError(f"NAME: {exc.message}") from None
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["created"] / 1000))
        scores = " ".join(f"{k.removeprefix('eval/')}={v:.4g}" for k, v in sorted(row["metrics"].items()))
        marker = f"@{row['alias']}" if row["alias"] else ""
        _say(f"v{row['version']:<3} {marker:<10} {created}  {row['decision'] or '-':<9} {scores}  "
             f"data={row['dataset']} workflow={row['workflow']}")
        if row["reason"]:
            _say(f"      {row['reason']}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    if getattr(args, "history_name", None):
        args.name = args.history_name
        return cmd_history(args)
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
    parser.add_argument("--when", choices=["always", "data-changed"], default="always",
                        help="data-changed: skip (exit 0) when the champion was trained on the same dataset")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--storage", help=f"fsspec URI for shards, checkpoints, records (default {DEFAULT_STORAGE})")


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help=f"where the embedded MLflow lives (default {DEFAULT_STORAGE})")
    parser.add_argument("--tracking-uri", help="MLflow tracking/registry URI")


def cmd_tune(args: argparse.Namespace) -> int:
    from pipelines.steps import SWEEP_STEPS

    return _run_workflow(args, SWEEP_STEPS)


def build_parser() -> argparse.ArgumentParser:
    from pipelines.steps import RUN_STEPS

    parser = argparse.ArgumentParser(prog="genpipe", description="Train generative models as workflows on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole workflow")
    _add_run_options(run)
    run.set_defaults(handler=lambda a: _run_workflow(a, RUN_STEPS))
    for index, step in enumerate(RUN_STEPS[:-1]):
        single = commands.add_parser(step, help=f"run {step} (and any earlier step not yet done)")
        _add_run_options(single)
        single.set_defaults(handler=lambda a, i=index: _run_workflow(a, RUN_STEPS[: i + 1]))
    tune = commands.add_parser("tune", help="sweep the config's tune.space with Ray Tune; the best trial "
                                            "is evaluated and registered")
    _add_run_options(tune)
    tune.set_defaults(handler=cmd_tune)
    resume = commands.add_parser("resume", help="re-run a workflow, skipping its finished steps")
    resume.add_argument("workflow_id")
    _add_cluster_options(resume)
    resume.set_defaults(handler=cmd_resume)
    status = commands.add_parser("status", help="list workflows, or one workflow's steps")
    status.add_argument("workflow_id", nargs="?")
    status.add_argument("--storage")
    status.set_defaults(handler=cmd_status)
    sample = commands.add_parser("sample", help="images from a registered model into a PNG grid, or text")
    sample.add_argument("model_uri", help="e.g. models:/quickstart-ddpm@champion")
    sample.add_argument("-n", type=int, default=None, help="images in the grid (16), or text completions (1)")
    sample.add_argument("--out", default="samples.png", help="image models: the PNG to write")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--prompt", help="language models: the text to continue; text-to-image: what to draw")
    sample.add_argument("--label", help="class-conditioned image models: a class, by index or name")
    sample.add_argument("--guidance", type=float, help="classifier-free guidance scale (the model's default)")
    sample.add_argument("--sampler", choices=["ancestral", "ddim"], help="diffusion: the model's default")
    sample.add_argument("--steps", type=int, help="DDIM: timesteps to visit")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 picks the likeliest token")
    sample.add_argument("--top-k", type=int, default=50)
    _add_registry_options(sample)
    sample.set_defaults(handler=cmd_sample)
    schedule = commands.add_parser("schedule", help="recurring runs: add, list, pause, resume, remove")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", required=True)
    add = schedule_commands.add_parser("add", help="run CONFIG on a cron schedule")
    add.add_argument("name")
    add.add_argument("config")
    add.add_argument("--cron", required=True, help="5 fields, or 6 with seconds first: '*/10 * * * * *'")
    add.add_argument("--timezone", default="UTC", help="IANA zone the cron expression is read in")
    add.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--when", choices=["always", "data-changed"], default="always")
    add.add_argument("--address", help="Ray dashboard address (http://HOST:8265): fire as Ray jobs there")
    add.add_argument("--overlap", choices=["skip", "queue"], default="skip",
                     help="when a slot comes while the previous run goes on")
    add.add_argument("--storage")
    add.set_defaults(handler=cmd_schedule_add)
    listing = schedule_commands.add_parser("list", help="schedules, next fire time, last outcome")
    listing.add_argument("--storage")
    listing.set_defaults(handler=cmd_schedule_list)
    for verb, handler in (("pause", cmd_schedule_toggle), ("resume", cmd_schedule_toggle),
                          ("remove", cmd_schedule_remove)):
        one = schedule_commands.add_parser(verb, help=f"{verb} a schedule")
        one.add_argument("name")
        one.add_argument("--storage")
        one.set_defaults(handler=handler)
    service = commands.add_parser("scheduler", help="fire due schedules until SIGTERM")
    service.add_argument("--storage")
    service.add_argument("--tick", type=float, default=5.0, help="seconds between passes")
    service.set_defaults(handler=cmd_scheduler)
    zoo = commands.add_parser("models", help="the model zoo with its presets; `models history NAME`")
    zoo_commands = zoo.add_subparsers(dest="models_command")
    past = zoo_commands.add_parser("history", help="a registered model's versions, scores and gate decisions")
    past.add_argument("history_name", metavar="NAME")
    _add_registry_options(past)
    zoo.set_defaults(handler=cmd_models)
    promote = commands.add_parser("promote", help="move the champion alias to a version (override, rollback)")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default="champion")
    _add_registry_options(promote)
    promote.set_defaults(handler=cmd_promote)
    from pipelines import cluster_cli

    cluster_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    _leave_a_jobs_working_directory()
    try:
        return args.handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, JobsError) as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
