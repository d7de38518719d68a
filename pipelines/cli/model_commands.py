"""`genpipe sample`, `genpipe models [history NAME]` and `genpipe promote`: the registry side."""

from __future__ import annotations

import argparse
import inspect
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from pipelines.cli.output import EXIT_FAILED, EXIT_OK, UsageError, say, say_json, warn
from pipelines.workflow import api
from typed_errors import NOT_GIVEN, OptionError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    ROOT / name for name in ("pipelines", "serving", "models", "tokens", "typed_errors", "data_prep", "storage")
]


def cmd_sample(args: argparse.Namespace) -> int:
    """Images into a PNG grid, or text completions printed; bad options exit 2."""
    options: dict[str, Any] = {
        "prompt": args.prompt,
        "label": args.label,
        "guidance": args.guidance,
        "sampler": args.sampler,
        "steps": args.steps,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "inputs": args.input,
        "direction": args.direction,
        "horizon": args.horizon,
    }
    options["family_options"] = _family_options(args.option)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            samples = api.sample(
                args.model_uri, args.n, seed=args.seed, tracking_uri=args.tracking_uri, storage=args.storage, **options
            )
    except api.ModelUnavailable as exc:
        say(str(exc))
        return EXIT_FAILED
    except OptionError as exc:
        raise UsageError(f"{flag(exc, options['family_options'])}: {exc.reason} ({args.model_uri})") from None
    except ValueError as exc:
        raise UsageError(f"{exc} ({args.model_uri})") from None
    for warning in caught:
        where = Path(warning.filename).resolve()
        if any(where.is_relative_to(package) for package in PACKAGES):  # ours (a long prompt), not a library's
            warn(f"warning: {warning.message}")
    if isinstance(samples, list) and samples and not isinstance(samples[0], str):  # pieces, audio clips, videos
        return _write_files(samples, args.out or samples[0].default_file, args.model_uri)
    if isinstance(samples, list):  # a language model's completions
        for index, text in enumerate(samples):
            if index:
                say("-" * 40)
            say(str(text))
        return EXIT_OK
    if samples.dim() == 2:  # a forecaster's paths: (n, horizon)
        from pipelines.evaluate.forecasts import save_paths

        picture, table = save_paths(samples.numpy(), args.out or "samples.png")
        say(f"wrote {len(samples)} forecast paths of {samples.shape[1]} steps from {args.model_uri}")
        say(f"  {table} (median, 95% band, each path) and {picture}")
        return EXIT_OK
    from pipelines.evaluate.pictures import save_grid

    path = save_grid(samples, args.out or "samples.png")
    say(f"wrote {len(samples)} samples from {args.model_uri} to {path}")
    return EXIT_OK


def _write_files(samples: list[Any], out: str, model_uri: str) -> int:
    """Each sample (a piece, a clip) as the file `out` names (.mid, .wav, .png): `out` itself for
    one sample, else numbered (piece-0.mid, piece-1.mid, ...)."""
    target = Path(out)
    paths = [target] if len(samples) == 1 else [target.with_stem(f"{target.stem}-{i}") for i in range(len(samples))]
    try:
        contents = [sample.file_bytes(target.suffix) for sample in samples]
    except OptionError as exc:
        raise UsageError(f"--out {out}: {exc.reason}") from None
    for path, content in zip(paths, contents, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    say(f"wrote {len(samples)} sample(s) from {model_uri}: {', '.join(map(str, paths))}")
    return EXIT_OK


def flag(error: OptionError, family_options: dict[str, Any]) -> str:
    """The flag a user typed for the option an OptionError names: `--option NAME=VALUE` for the
    family's own options, else the command's flag (`-n`, `--max-new-tokens`)."""
    if error.option in family_options:
        value = family_options[error.option] if error.value is NOT_GIVEN else error.value
        return f"--option {error.option}={value}"
    if len(error.option) == 1:
        return f"-{error.option}"
    return f"--{error.option.replace('_', '-')}"


def _family_options(assignments: list[str]) -> dict[str, Any]:
    """`--option key=value` pairs, values parsed as YAML (numbers, booleans)."""
    options: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--option {assignment}: expected KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def cmd_promote(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from pipelines.registry.registration import promote

    try:
        previous = promote(api.registry_uri(args.tracking_uri, args.storage), args.name, args.version, args.alias)
    except MlflowException as exc:
        raise UsageError(f"NAME/VERSION: {args.name} version {args.version}: {exc.message}") from None
    say(f"{args.name}@{args.alias}: version {previous} -> version {args.version}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from pipelines.registry.registration import history

    try:
        rows = history(api.registry_uri(args.tracking_uri, args.storage), args.name)
    except MlflowException as exc:
        raise UsageError(f"NAME: {exc.message}") from None
    if args.json:
        say_json(rows)
        return EXIT_OK
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["created"] / 1000))
        scores = " ".join(f"{k.removeprefix('eval/')}={v:.4g}" for k, v in sorted(row["metrics"].items()))
        marker = f"@{row['alias']}" if row["alias"] else ""
        say(
            f"v{row['version']:<3} {marker:<10} {created}  {row['decision'] or '-':<9} {scores}  "
            f"data={row['dataset']} workflow={row['workflow']}"
        )
        if row["reason"]:
            say(f"      {row['reason']}")
    return EXIT_OK


def _summary(cls: type) -> str:
    lines = (inspect.getdoc(cls) or "").splitlines()
    return lines[0] if lines else ""


def cmd_models(args: argparse.Namespace) -> int:
    if getattr(args, "history_name", None):
        args.name = args.history_name
        return cmd_history(args)
    import models

    if args.json:
        say_json(
            {
                family: {
                    "modality": cls.modality,
                    "learns": [cls.modality, *cls.also_learns],
                    "summary": _summary(cls),
                    "presets": cls.presets,
                }
                for family, cls in models.FAMILIES.items()
            }
        )
        return EXIT_OK
    for family, cls in models.FAMILIES.items():
        say(f"{family} ({' or '.join((cls.modality, *cls.also_learns))}): {_summary(cls)}")
        for preset, params in cls.presets.items():
            say(f"  {preset}: {', '.join(f'{k}={v}' for k, v in params.items())}")
    return EXIT_OK
