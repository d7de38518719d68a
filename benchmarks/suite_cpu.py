"""Where the test suite's CPU goes, by kind of process: the budget of issue 28 (`make test` under
15 minutes on 2 cores) is a CPU budget, since the suite keeps both cores busy.

Run as root on a machine with Debian's `acct` package (`apt-get install acct`):
`python benchmarks/suite_cpu.py [--record] [-- PYTEST_ARGS...]` (default: the suite as `make test`
runs it).

How: the kernel's process accounting (`accton`) records the CPU time of every process that exits,
however short its life, children of Ray's daemons included, which no sampling of /proc catches; a
sampler beside it notes each process's command line (Ray renames its workers `ray::<Actor>`), and
the two are joined by process id. A process whose command line was never seen (it lived less than
a sampling interval) is counted by its kernel name. The sampler itself costs ~0.3% of a core.
`--record` appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DEFAULT_PYTEST = ["-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider"]

# (pattern over the command line, kind), first match wins; `ray::X` is its own kind.
KINDS = [
    (r"gcs_server", "Ray: GCS"),
    (r"/raylet ", "Ray: raylet"),
    (r"log_monitor", "Ray: log monitor"),
    (r"dashboard/agent|ray::DashboardAgent", "Ray: dashboard agent"),
    (r"runtime_env/agent|ray::RuntimeEnvAgent", "Ray: runtime env agent"),
    (r"dashboard/dashboard\.py|ray-dashboard-", "Ray: dashboard (head)"),
    (r"autoscaler/_private/monitor\.py", "Ray: autoscaler monitor"),
    (r"bin/ray start", "Ray: `ray start`"),
    (r"execnet|xdist|exec\(eval\(sys\.stdin", "pytest-xdist worker (the tests' own process)"),
    (r"bin/pytest", "pytest (controller)"),
    (r"mlflow server|mlflow\.server|uvicorn|scoring_server", "MLflow server"),
    (r"moto", "moto (S3)"),
    (r"-m pip |ensurepip", "pip (fresh environments)"),
    (r"pipelines\.cli (run|resume|tune|submit|prepare|train|evaluate)", "genpipe CLI: a workflow's driver"),
    (r"pipelines\.cli", "genpipe CLI: other commands"),
    (r"/bin/genpipe", "genpipe CLI: other commands"),
]


def kind_of(command: str, kernel_name: str) -> str:
    if not command:
        return f"(unseen) {kernel_name}"
    if command.startswith("ray::"):
        return "Ray actor/task: " + command.split()[0].removeprefix("ray::").split(".")[0]
    for pattern, kind in KINDS:
        if re.search(pattern, command):
            return kind
    return "other: " + re.sub(r"\s+", " ", re.sub(r"/tmp/\S+", "<tmp>", command))[:70]


class CommandLines(threading.Thread):
    """Every process's last non-empty command line, read from /proc every `interval` seconds."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.seen, self.stopped = interval, {}, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if raw:
                    self.seen[int(pid)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()


def accounted(path: Path) -> list[tuple[int, str, float]]:
    """(pid, kernel name, CPU seconds) of each process that exited while accounting was on."""
    dump = subprocess.run(["dump-acct", str(path)], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in dump.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) > 10:  # name|version|utime|stime|etime|uid|gid|mem|io|pid|ppid|... (in ticks of 1/100 s)
            rows.append((int(fields[9]), fields[0], (float(fields[2]) + float(fields[3])) / 100))
    return rows


def table(rows: list[tuple[int, str, float]], seen: dict[int, str], top: int) -> tuple[str, float]:
    cpu, count = collections.Counter(), collections.Counter()
    for pid, name, seconds in rows:
        kind = kind_of(seen.get(pid, ""), name)
        cpu[kind] += seconds
        count[kind] += 1
    total = sum(cpu.values())
    lines = ["| kind of process | processes | CPU s | share | s each |", "| --- | --- | --- | --- | --- |"]
    for kind, seconds in cpu.most_common(top):
        lines.append(
            f"| {kind} | {count[kind]} | {seconds:.0f} | {seconds / total:.1%} | {seconds / count[kind]:.2f} |"
        )
    rest = total - sum(seconds for _, seconds in cpu.most_common(top))
    lines.append(f"| everything else | | {rest:.0f} | {rest / total:.1%} | |")
    return "\n".join(lines), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: as `make test`)")
    args = parser.parse_args()
    if not shutil.which("accton") or os.geteuid() != 0:
        sys.exit("needs root and process accounting: apt-get install acct")
    pytest = [str(REPO / ".venv" / "bin" / "pytest"), *(args.pytest_args or DEFAULT_PYTEST)]
    with tempfile.TemporaryDirectory() as folder:
        accounting = Path(folder) / "pacct"
        accounting.touch()
        sampler = CommandLines()
        sampler.start()
        subprocess.run(["accton", str(accounting)], check=True, capture_output=True)
        started = time.monotonic()
        try:
            done = subprocess.run(pytest, cwd=REPO)
        finally:
            wall = time.monotonic() - started
            subprocess.run(["accton", "off"], check=True, capture_output=True)
            sampler.stopped.set()
        rows = accounted(accounting)
    text, total = table(rows, sampler.seen, args.top)
    heading = (
        f"### Test suite CPU by process, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.machine()}, "
        f"{os.cpu_count()} cores\n\n`python benchmarks/suite_cpu.py {' '.join(args.pytest_args)}`".rstrip()
        + f": pytest exit {done.returncode}, wall {wall / 60:.1f} min, {total:.0f} s of CPU in {len(rows)} "
        f"processes ({total / wall:.2f} cores busy on average).\n"
    )
    print(heading + "\n" + text)
    if args.record:
        with RESULTS.open("a") as results:
            results.write("\n" + heading + "\n" + text + "\n")


if __name__ == "__main__":
    main()
