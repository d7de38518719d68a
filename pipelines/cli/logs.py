"""Where a command's log lines go: everything (library INFO lines, Python warnings) to a log file,
and to the console only genpipe's own warnings and errors, unless `-v` asks for all of it. The
folder keeps the newest KEPT_LOGS files; older ones and empty ones go, once their process has."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from storage import redact

HANDLER_NAME = "genpipe-cli"  # the handlers this module adds, replaced when a process runs main() again
KEPT_LOGS = int(os.environ.get("GENPIPE_LOG_KEEP", "100"))


class RedactingFormatter(logging.Formatter):
    """Log lines (a library's too: an error quoting a URL) without credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_folder() -> Path:
    return Path(os.environ.get("GENPIPE_LOG_DIR") or Path(tempfile.gettempdir()) / "genpipe-logs")


class JsonLinesFormatter(RedactingFormatter):
    """One JSON object per record, for log shippers (Fluent Bit, Vector, Loki's promtail) on a
    cluster. (Twelve lines here rather than one more dependency, python-json-logger.)"""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def _process_of(log: Path) -> int | None:
    """The pid a log file's name ends with (genpipe-DATE-TIME-PID.log)."""
    with contextlib.suppress(ValueError):
        return int(log.stem.rpartition("-")[2])
    return None


def prune(folder: Path, keep: int = KEPT_LOGS) -> list[Path]:
    """Remove the empty logs and those beyond the newest `keep`, of processes no longer running (a
    pid in use again only keeps a file longer); return what went."""
    sized = []
    for log in folder.glob("genpipe-*.log"):
        with contextlib.suppress(OSError):  # another process's prune took it meanwhile
            stat = log.stat()
            sized.append((stat.st_mtime, stat.st_size, log))
    written = sorted((entry for entry in sized if entry[1] > 0), key=lambda entry: entry[0], reverse=True)
    candidates = [log for _, size, log in sized if size == 0] + [log for _, _, log in written[keep:]]
    removed = []
    for log in candidates:
        pid = _process_of(log)
        if pid is not None and not psutil.pid_exists(pid):
            with contextlib.suppress(OSError):
                log.unlink()
                removed.append(log)
    return removed


def set_up_logging(verbose: bool, level: str = "INFO", as_json: bool = False) -> Path:
    """Send log records from `level` up to a new file (returned) and, `verbose` or not, the
    console's share of them."""
    folder = log_folder()
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder)
    path = folder / f"genpipe-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    to_file = logging.FileHandler(path)
    to_file.setFormatter(
        JsonLinesFormatter() if as_json else RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        to_console.setLevel(logging.WARNING)
        to_console.addFilter(lambda record: record.name.startswith("genpipe") or record.levelno >= logging.ERROR)
    for handler in (to_file, to_console):
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
    to_file.setLevel(level)
    root.setLevel(min(logging.getLevelName(level), logging.WARNING))  # the console's warnings whatever the file keeps
    logging.captureWarnings(True)  # a library's warnings are log records too: in the file, not on the console
    return path
