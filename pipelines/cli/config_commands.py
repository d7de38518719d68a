"""`genpipe config show` and `genpipe completion`: what a config resolves to, and the shell's
completion of the command line."""

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


def cmd_completion(args: argparse.Namespace) -> int:
    """The completion script shtab writes from the parser itself, so it never falls behind it."""
    import shtab

    from pipelines.cli.parser import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), flush=True)
    return EXIT_OK
