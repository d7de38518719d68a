"""What answering the command line costs: `genpipe --help`, `--version`, a usage error, a shell's
completion script, `import genpipe`, against the baseline of the same process importing what the
CLI imported up front before its grammar was split from its work (every command module: torch,
Ray, MLflow, DeepSpeed's config, pydantic), measured in the same run.

Run: `python benchmarks/cli_bench.py [--repeats 7] [--record]` (wall seconds of a fresh process,
median of the repeats; `--record` appends the table to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from results_table import append_table  # noqa: E402

EAGER = "import pipelines.cli.workflow_commands, pipelines.cli.model_commands, pipelines.cli.schedule_commands, "
EAGER += "pipelines.cli.cluster_commands"
HELP = "from pipelines.cli.app import main; main(['--help'])"
CASES = {
    "genpipe --help": HELP,
    "genpipe --version": "from pipelines.cli.app import main; main(['--version'])",
    "genpipe run (usage error)": "from pipelines.cli.app import main; main(['run'])",
    "genpipe completion bash": "from pipelines.cli.app import main; main(['completion', 'bash'])",
    "import genpipe": "import genpipe",
    "baseline: the command modules imported, then --help": f"{EAGER}; {HELP}",
}


def seconds(code: str, repeats: int) -> float:
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, check=False)
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, code in CASES.items():
        took = seconds(code, args.repeats)
        rows.append(f"| {name} | {took:.2f} |")
        print(f"{name:<55} {took:.2f} s", flush=True)
    if args.record:
        append_table(
            "The command line's start-up (issue 33)",
            [
                f"`python benchmarks/cli_bench.py --repeats {args.repeats}`: wall seconds of a fresh Python process,",
                "median of the repeats; the baseline imports every command module first, as the CLI did.",
            ],
            ["what", "seconds"],
            rows,
        )


if __name__ == "__main__":
    main()
