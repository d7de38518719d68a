"""`genpipe`: the command line (the README's CLI reference), built on the Python API
(pipelines/workflow/api.py).

Exit codes: 0 success, 1 a failed run, 2 bad usage or an invalid config (nothing started).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading

from pipelines.cli import cluster_commands
from pipelines.cli.logs import set_up_logging
from pipelines.cli.model_commands import cmd_models, cmd_promote, cmd_sample
from pipelines.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, warn
from pipelines.cli.schedule_commands import (
    cmd_schedule_add,
    cmd_schedule_export,
    cmd_schedule_list,
    cmd_schedule_remove,
    cmd_schedule_toggle,
    cmd_schedule_update,
    cmd_scheduler,
)
from pipelines.cli.workflow_commands import cmd_resume, cmd_status, run_workflow
from pipelines.cluster.jobs import JobsError
from pipelines.config import ConfigError
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.registry.tracking import COMMAND_VARIABLE
from pipelines.workflow.steps import RUN_STEPS, SWEEP_STEPS
from storage import redact
from typed_errors import first_line


def _leave_a_jobs_working_directory() -> None:
    """A Ray job's driver starts inside the job's unpacked working_dir, which Ray may unpack again
    in place while the job runs (seen on the second job of a cluster, a few seconds in): the
    driver's current directory is then a deleted copy and every os.getcwd() fails (MLflow calls
    it). Imports are unaffected (they go by path); genpipe's own paths are absolute. So a job's
    driver works from the temp directory instead."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # set by Ray's job supervisor for the driver
        os.chdir(tempfile.gettempdir())


def _add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file or a built-in config name (e.g. quickstart)")
    _add_set_option(parser, "override a config value, e.g. train.epochs=5 (repeatable)")
    _add_cluster_options(parser)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in the storage)")
    parser.add_argument("--workflow-id", help="continue or name this workflow")
    parser.add_argument(
        "--when",
        choices=["always", "data-changed"],
        default="always",
        help="data-changed: skip (exit 0) when the champion was trained on the same dataset",
    )


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help="Ray cluster address; auto: the one `ray start` runs here (default: RAY_ADDRESS, else a Ray of its own)",
    )
    parser.add_argument(
        "--storage", help="fsspec URI for shards, checkpoints, records (default: GENPIPE_STORAGE or ./.genpipe)"
    )


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="where the embedded MLflow lives (default: GENPIPE_STORAGE or ./.genpipe)")
    parser.add_argument("--tracking-uri", help="MLflow tracking/registry URI")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpipe", description="Train generative models as workflows on Ray.")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show every library's log lines too (Ray, Ray Train, DeepSpeed)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the whole workflow")
    _add_run_options(run)
    run.set_defaults(handler=lambda a: run_workflow(a, RUN_STEPS), keeps_log=True)
    for index, step in enumerate(RUN_STEPS[:-1]):
        single = commands.add_parser(step, help=f"run {step} (and any earlier step not yet done)")
        _add_run_options(single)
        single.set_defaults(handler=lambda a, i=index: run_workflow(a, RUN_STEPS[: i + 1]), keeps_log=True)
    tune = commands.add_parser(
        "tune", help="sweep the config's tune.space with Ray Tune; the best trial is evaluated and registered"
    )
    _add_run_options(tune)
    tune.set_defaults(handler=lambda a: run_workflow(a, SWEEP_STEPS), keeps_log=True)
    resume = commands.add_parser("resume", help="re-run a workflow, skipping its finished steps")
    resume.add_argument("workflow_id")
    _add_set_option(resume, "change the config of the steps not yet done, e.g. register.gate.metric=eval/val_loss")
    _add_cluster_options(resume)
    resume.set_defaults(handler=cmd_resume, keeps_log=True)
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
    sample.add_argument(
        "--input", action="append", metavar="IMAGE", help="image-to-image models: a PNG/JPEG to translate (repeatable)"
    )
    sample.add_argument("--direction", choices=["a2b", "b2a"], help="image-to-image models: the way to translate (a2b)")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 picks the likeliest token")
    sample.add_argument("--top-k", type=int, default=50)
    sample.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a sampling option of the model's own family (repeatable; values parsed as YAML)",
    )
    _add_registry_options(sample)
    sample.set_defaults(handler=cmd_sample)
    schedule = commands.add_parser("schedule", help="recurring runs: add, update, export, list, pause, resume, remove")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", required=True)
    add = schedule_commands.add_parser("add", help="run CONFIG on a cron schedule")
    add.add_argument("name")
    add.add_argument("config")
    add.add_argument("--cron", required=True, help="5 fields, or 6 with seconds first: '*/10 * * * * *' is every 10 s")
    add.add_argument("--timezone", default="UTC", help="IANA zone the cron expression is read in")
    add.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--when", choices=["always", "data-changed"], default="always")
    add.add_argument("--address", help="Ray dashboard address (http://HOST:8265): fire as Ray jobs there")
    add.add_argument(
        "--overlap", choices=["skip", "queue"], default="skip", help="when a slot comes while the previous run goes on"
    )
    add.add_argument(
        "--retries", type=int, default=2, help="times a failed or interrupted run is resumed from where it stopped"
    )
    add.add_argument(
        "--retry-delay", type=float, default=60, help="seconds before the first resume, doubled for each next one"
    )
    add.add_argument("--storage")
    add.add_argument("--tracking-uri", help="the runs' MLflow server (default: the config's, else MLFLOW_TRACKING_URI)")
    add.set_defaults(handler=cmd_schedule_add)
    update = schedule_commands.add_parser(
        "update", help="resolve a schedule's config again (runs fire the config as it was at add/update)"
    )
    update.add_argument("name")
    update.add_argument("config", nargs="?", help="a new config (default: the one it was added from)")
    update.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="replaces its --sets")
    update.add_argument("--storage")
    update.add_argument("--tracking-uri")
    update.set_defaults(handler=cmd_schedule_update)
    export = schedule_commands.add_parser("export", help="a schedule as a KubeRay RayCronJob (no scheduler needed)")
    export.add_argument("name")
    export.add_argument("--kubernetes", action="store_true", required=True, help="KubeRay RayCronJob YAML")
    export.add_argument("--cluster", default="genpipe", help="the RayCluster the jobs run on (default: genpipe)")
    export.add_argument("--out", help="write the manifest here (default: stdout)")
    export.add_argument("--storage")
    export.set_defaults(handler=cmd_schedule_export)
    listing = schedule_commands.add_parser("list", help="schedules, next fire time, last outcome")
    listing.add_argument("--storage")
    listing.set_defaults(handler=cmd_schedule_list)
    for verb, handler in (
        ("pause", cmd_schedule_toggle),
        ("resume", cmd_schedule_toggle),
        ("remove", cmd_schedule_remove),
    ):
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
    cluster_commands.add_commands(commands)
    return parser


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's timeout, `ray job stop`, Kubernetes) stops a command as Ctrl-C does:
    the workflow's MLflow run ends KILLED and the finished steps stay recorded for `resume`."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    apply_mlflow_defaults()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (database set-up) are not ours
    args = build_parser().parse_args(argv)
    os.environ[COMMAND_VARIABLE] = shlex.join(["genpipe", *(sys.argv[1:] if argv is None else argv)])
    _leave_a_jobs_working_directory()
    _stop_on_sigterm()
    if args.verbose:
        os.environ["GENPIPE_VERBOSE"] = "1"  # Ray then forwards every process's output (api.connect_ray)
    if getattr(args, "keeps_log", False):
        args.log_file = set_up_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        warn("interrupted: finished steps are kept; `genpipe status` shows them, `genpipe resume ID` goes on")
        return EXIT_INTERRUPTED
    except ConfigError as error:
        for problem in error.problems:
            warn(problem)
        return EXIT_USAGE
    except (UsageError, JobsError) as error:
        warn(str(error))
        return EXIT_USAGE
    except BrokenPipeError:  # the reader left (`genpipe models | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's docs advise
        return EXIT_OK
    except Exception as error:  # unforeseen (storage gone mid-command): one line; the traceback in the log
        if args.verbose:
            raise
        logging.getLogger("genpipe.cli").info("the command failed", exc_info=error)  # the log file only
        log_file = getattr(args, "log_file", None)
        warn(redact(f"error: {type(error).__name__}: {first_line(error)}"))
        warn(f"traceback: {log_file}" if log_file else "run it again with -v for the traceback")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
