"""`genpipe config show`: what a config resolves to."""

from __future__ import annotations

import argparse

from pipelines.cli.output import EXIT_OK, say, say_json
from pipelines.config import dump_config, load_config


def cmd_config_show(args: argparse.Namespace) -> int:
    """The config a run of CONFIG with these `--set`s gets, every default filled in and validated
    (exit 2 naming the field otherwise): YAML that `genpipe run` takes back, or JSON."""
    config = load_config(args.config, args.set, storage=args.storage, tracking_uri=args.tracking_uri)
    if args.json:
        say_json(config.model_dump(mode="json"))
    else:
        say(dump_config(config).rstrip("\n"))
    return EXIT_OK
