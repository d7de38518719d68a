"""What every command shares: the exit codes, the printer, and the usage error."""

from __future__ import annotations

import json
import sys
from typing import Any

from storage import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


class UsageError(Exception):
    """Bad usage: exit 2 with the message."""


def say(message: str) -> None:
    """One line for the user, on stdout, at once (a Ray job's log streams it); never a credential."""
    print(redact(message), flush=True)


def warn(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)


def say_json(document: Any) -> None:
    """`--json`: one JSON document on stdout (for jq and scripts), never a credential."""
    say(json.dumps(document, indent=2, default=str))
