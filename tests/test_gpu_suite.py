"""benchmarks/gpu_suite.py's dry run: the GPU suite at tiny sizes on the CPU, so the script a lent
GPU machine runs (issue 35) is known to work before the machine is."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow


def test_the_gpu_suite_runs_every_part_at_tiny_sizes_on_the_cpu(ray_session, tmp_path):
    from benchmarks.gpu_suite import DRY, PARTS, prepare_data

    prepare_data(tmp_path / "data", DRY)  # here, as benchmarks/gpu_carry.sh does before the device
    report_path = tmp_path / "suite.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_suite.py",
            "--dry-run",
            "--data",
            str(tmp_path / "data"),
            "--json",
            str(report_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert list(report["parts"]) == list(PARTS) and report["device"].startswith("CPU")
    rows = {row["what"]: row for part in report["parts"].values() for row in part["rows"]}
    measured = [value for row in rows.values() for key, value in row.items() if key.endswith(("_per_s", "ratio"))]
    assert len(measured) >= 20 and all(value > 0 and math.isfinite(value) for value in measured)
    assert rows["GPT, pipeline loop"]["mfu"] is None  # a CPU has no bf16 peak to divide by
    assert [rows[f"engine, ZeRO-{stage}"]["zero_stage"] for stage in range(4)] == [0, 1, 2, 3]
    assert rows["DDPM, pipeline engine"]["parameters"] > 0
    printed = done.stdout
    assert all(f"> {part} ..." in printed for part in PARTS) and "KV cache, batch 8" in printed
