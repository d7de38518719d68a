"""`genpipe`: the command line (the README's CLI reference), built on the Python API
(pipelines/workflow/api.py).

Exit codes: 0 success, 1 a failed run, 2 bad usage or an invalid config (nothing started).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable

from pipelines.cli.logs import set_up_logging
from pipelines.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, warn
from pipelines.cli.parser import build_parser
from pipelines.registry.environment import COMMAND_VARIABLE, apply_mlflow_defaults
from storage import redact
from typed_errors import first_line

__all__ = ["build_parser", "main"]


def _leave_a_jobs_working_directory() -> None:
    """A Ray job's driver starts inside the job's unpacked working_dir, which Ray may unpack again
    in place while the job runs (seen on the second job of a cluster, a few seconds in): the
    driver's current directory is then a deleted copy and every os.getcwd() fails (MLflow calls
    it). Imports are unaffected (they go by path); genpipe's own paths are absolute. So a job's
    driver works from the temp directory instead."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # set by Ray's job supervisor for the driver
        os.chdir(tempfile.gettempdir())


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's timeout, `ray job stop`, Kubernetes) stops a command as Ctrl-C does:
    the workflow's MLflow run ends KILLED and the finished steps stay recorded for `resume`."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def handler_of(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function that does a command's work ("module:function" in pipelines.cli), imported now."""
    module, _, function = args.handler.partition(":")
    return getattr(importlib.import_module(f"pipelines.cli.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help, --version and usage errors end here, before any import
    apply_mlflow_defaults()
    # MLflow's INFO lines (database set-up) are not ours. MLflow sets its logger's level when it is
    # imported, which is now after this line (the CLI imports it with the command): by its variable.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ[COMMAND_VARIABLE] = shlex.join(["genpipe", *(sys.argv[1:] if argv is None else argv)])
    _leave_a_jobs_working_directory()
    _stop_on_sigterm()
    if args.verbose:
        os.environ["GENPIPE_VERBOSE"] = "1"  # Ray then forwards every process's output (api.connect_ray)
    if getattr(args, "keeps_log", False):
        args.log_file = set_up_logging(args.verbose, level=args.log_level, as_json=args.log_format == "json")
    try:
        return handler_of(args)(args)
    except KeyboardInterrupt:
        warn("interrupted: finished steps are kept; `genpipe status` shows them, `genpipe resume ID` goes on")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`genpipe models | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's docs advise
        return EXIT_OK
    except Exception as error:
        return _failed(args, error)


def _failed(args: argparse.Namespace, error: Exception) -> int:
    """The exit code and the lines of a command that raised. The error types are imported here,
    not before the command runs: `completion` and other light commands would pay for torch."""
    from pipelines.cluster.jobs import JobsError
    from pipelines.config import ConfigError

    if isinstance(error, ConfigError):
        for problem in error.problems:
            warn(problem)
        return EXIT_USAGE
    if isinstance(error, UsageError | JobsError):
        warn(str(error))
        return EXIT_USAGE
    # Unforeseen (storage gone mid-command): one line; the traceback in the log.
    if args.verbose:
        raise error
    logging.getLogger("genpipe.cli").info("the command failed", exc_info=error)  # the log file only
    log_file = getattr(args, "log_file", None)
    warn(redact(f"error: {type(error).__name__}: {first_line(error)}"))
    warn(f"traceback: {log_file}" if log_file else "run it again with -v for the traceback")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
