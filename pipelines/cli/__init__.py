"""`genpipe`: the command line. Parsing, printing and exit codes; the work is the Python API's."""

from pipelines.cli.app import main

__all__ = ["main"]
