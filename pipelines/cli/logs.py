"""Where a command's log lines go: everything (library INFO lines, Python warnings) to a log file,
and to the console only genpipe's own warnings and errors, unless `-v` asks for all of it."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from storage import redact

HANDLER_NAME = "genpipe-cli"  # the handlers this module adds, replaced when a process runs main() again


class RedactingFormatter(logging.Formatter):
    """Log lines (a library's too: an error quoting a URL) without credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_folder() -> Path:
    return Path(os.environ.get("GENPIPE_LOG_DIR") or Path(tempfile.gettempdir()) / "genpipe-logs")


def set_up_logging(verbose: bool) -> Path:
    """Send log records to a new file (returned) and, `verbose` or not, the console's share of them."""
    folder = log_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"genpipe-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    to_file = logging.FileHandler(path)
    to_file.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        to_console.setLevel(logging.WARNING)
        to_console.addFilter(lambda record: record.name.startswith("genpipe") or record.levelno >= logging.ERROR)
    for handler in (to_file, to_console):
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library's warnings are log records too: in the file, not on the console
    return path
