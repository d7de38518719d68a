"""`genpipe completion bash|zsh|tcsh`: the shell's completion of the command line, written by
shtab from the parser itself (so it never falls behind it), importing nothing else: a shell runs
it as it starts."""

from __future__ import annotations

import argparse

from pipelines.cli.output import EXIT_OK
from pipelines.cli.parser import build_parser


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell), flush=True)
    return EXIT_OK
