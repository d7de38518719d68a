"""`genpipe run|prepare|train|evaluate|tune`, `genpipe resume` and `genpipe status`."""

from __future__ import annotations

import argparse
import shlex

from models.zoo import family_class
from pipelines.cli.output import EXIT_FAILED, EXIT_OK, say, say_json, warn
from pipelines.config import default_storage
from pipelines.workflow import api
from pipelines.workflow.results import (
    CompareResult,
    EvaluateResult,
    PrepareResult,
    RegisterResult,
    StepResult,
    TuneResult,
)
from pipelines.workflow.runner import Workflow, WorkflowFailed
from pipelines.workflow.step_order import COMPARE_STEPS, RUN_STEPS, SWEEP_STEPS
from storage import normalize

# The steps each command runs: `genpipe train` runs prepare too where it is not done yet.
STEPS_OF_COMMAND = {
    "run": RUN_STEPS,
    "tune": SWEEP_STEPS,
    **{step: RUN_STEPS[: index + 1] for index, step in enumerate(RUN_STEPS[:-1])},
}


def cmd_steps(args: argparse.Namespace) -> int:
    """`genpipe run|prepare|train|evaluate|tune`."""
    steps = STEPS_OF_COMMAND[args.command]
    if args.dry_run:
        from pipelines.cli.plan import print_plan

        return print_plan(args, steps)
    return run_workflow(args, steps)


def cmd_compare(args: argparse.Namespace) -> int:
    """`genpipe compare`: its flags are settings of the `compare:` section (a config without one
    gets its defaults: pipelines.workflow.api.run)."""
    flags = {
        "families": args.families,
        "budget_s": args.budget,
        "budget_flops": args.budget_flops,
        "seeds": args.seeds,
        "register_winner": False if args.no_register else None,
    }
    args.set = [*args.set, *(f"compare.{key}={value}" for key, value in flags.items() if value is not None)]
    if args.dry_run:
        from pipelines.cli.plan import print_plan

        return print_plan(args, COMPARE_STEPS)
    return run_workflow(args, COMPARE_STEPS)


def run_workflow(args: argparse.Namespace, steps: tuple[str, ...]) -> int:
    """The config is validated and the services checked before anything starts."""
    try:
        outcome = api.run(
            args.config,
            sets=args.set,
            steps=steps,
            storage=args.storage,
            tracking_uri=args.tracking_uri,
            address=args.address,
            workflow_id=args.workflow_id,
            when=args.when,
            echo=say,
        )
    except WorkflowFailed as failure:
        return _failed(failure, getattr(args, "log_file", None))
    assert isinstance(outcome, api.Outcome)  # waited for: not a RunHandle
    if outcome.skipped:
        say(f"workflow {outcome.workflow.id} skipped: {outcome.skipped}")
        return EXIT_OK
    _summarise(outcome.workflow, outcome.results)
    return EXIT_OK


def _failed(failure: WorkflowFailed, log_file: str | None) -> int:
    """On stderr, as every error of the CLI: a script reading stdout gets results only."""
    warn(f"FAILED: {failure}")
    record = failure.record or "not written (the storage did not take it)"
    warn(f"traceback: {record}" + (f"; log: {log_file}" if log_file else ""))
    warn(f"fix the cause, then: genpipe resume {failure.workflow_id} --storage {failure.storage}")
    return EXIT_FAILED


def _summarise(workflow: Workflow, results: dict[str, StepResult]) -> None:
    prep, sweep = results.get("prepare"), results.get("tune") or results.get("compare")
    evaluation, reg = results.get("evaluate"), results.get("register")
    if isinstance(prep, PrepareResult):
        say(
            f"dataset {prep.fingerprint} ({'cache hit' if prep.cache_hit else 'prepared'}): "
            f"{prep.rows} rows, {prep.rejects} rejected"
        )
    if isinstance(sweep, TuneResult):
        say(
            f"sweep: {sweep.trials} trials, {sweep.stopped_early} stopped early; best {sweep.best_trial} "
            f"({sweep.family}): {sweep.best_params}"
        )
    if isinstance(sweep, CompareResult):
        _show_leaderboard(sweep)
    if isinstance(evaluation, EvaluateResult):
        shown = ", ".join(f"{k.removeprefix('eval/')}={v:.3g}" for k, v in evaluation.metrics.items())
        say(f"evaluation: {shown}")
        say(f"samples: {evaluation.samples_uri}")
    if isinstance(reg, RegisterResult):
        say(f"registered {reg.model_name} version {reg.version}: {reg.model_uri}")
        say(f"gate: {reg.decision}: {reg.reason}; @{reg.alias} -> version {reg.alias_version}")
    say(f"workflow {workflow.id} succeeded")
    if isinstance(reg, RegisterResult):
        config = workflow.config()
        prompt = shlex.quote(config.evaluate.prompts[0]) if config.evaluate.prompts else "''"
        # What to ask the registered model for, by the data's modality (images: a grid).
        asked = {
            "text": f"--prompt {prompt}",
            "music": "-n 4 --out piece.mid",
            "audio": "-n 4 --out clip.wav",
            "video": f"--input CLIP.gif --horizon {config.data.clip_frames - config.data.context_frames} "
            "--out prediction.gif",
        }.get(config.data.modality, "-n 16 --out samples.png")
        trained = sweep.family if isinstance(sweep, TuneResult | CompareResult) else config.model.family
        if family_class(trained).translates:
            asked = "--input IMAGE.png --direction a2b --out translated.png"
        registry = workflow.meta()["tracking_uri"]
        where = f"--storage {workflow.storage}" if registry == api.registry_uri(storage=workflow.storage) else ""
        say(f"next: genpipe sample {reg.model_uri} {asked} {where or f'--tracking-uri {registry}'}")


def _show_leaderboard(result: CompareResult) -> None:
    from pipelines.tune.leaderboard import table_lines

    say(f"leaderboard ({result.mode} {result.metric}, mean ± 95% interval over seeds):")
    for line in table_lines(result.leaderboard, result.metric):
        say(f"  {line}")
    agreement = (
        ""
        if result.seed_agreement is None
        else f"; seeds agree on the ranking: Kendall's tau {result.seed_agreement:.2f}"
    )
    say(f"winner: {result.family} (trial {result.best_trial}){agreement}")


def cmd_resume(args: argparse.Namespace) -> int:
    try:
        outcome = api.resume(args.workflow_id, sets=args.set, storage=args.storage, address=args.address, echo=say)
    except WorkflowFailed as failure:
        return _failed(failure, getattr(args, "log_file", None))
    _summarise(outcome.workflow, outcome.results)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    workflows = api.status(args.workflow_id, storage=args.storage)
    if args.json:
        say_json(
            [
                {"id": w.id, "skipped": w.skipped, "steps": w.states, "records": w.records, "errors": w.errors}
                for w in workflows
            ]
        )
        return EXIT_OK
    if not workflows:
        say(f"no workflows in {normalize(args.storage or default_storage())}")
    for workflow in workflows:
        if workflow.skipped:
            say(f"{workflow.id}  skipped: {workflow.skipped}")
            continue
        say(f"{workflow.id}  " + "  ".join(f"{step}:{state}" for step, state in workflow.states.items()))
        if args.workflow_id:
            for step in workflow.states:
                if step in workflow.records:
                    record = workflow.records[step]
                    say(f"  {step}: {record['duration_s']}s {record['result']}")
                elif step in workflow.errors:
                    say(f"  {step}: {workflow.errors[step]}")
    return EXIT_OK
