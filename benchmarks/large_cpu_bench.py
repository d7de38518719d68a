"""The large-model path for real where no GPU is (issue 35): the largest GPT and DDPM presets a
2-core, 24 GiB machine holds, each trained for a few steps under ZeRO-3 on 2 CPU Ray Train
workers through `genpipe run`, evaluated, registered and sampled from the registry in a new
process, with what each costs in memory and disk against the arithmetic of the train step.

`python benchmarks/large_cpu_bench.py [--models gpt,ddpm] [--steps 4] [--record]`

- gpt: `gpt-code-medium` (GPT-2 medium, T=1024, its BPE tokenizer) on the stdlib's email package.
- ddpm: `quickstart` at `model.preset=large` (the 360M U-Net at 64 px, v-prediction, DDIM):
  the digits upscaled to 64 px.

Per model: the peak resident memory of each training worker (VmHWM of the `ray::RayTrainWorker`
processes, sampled every 0.5 s), the final checkpoint's size, the registered MLflow Model's size,
and the peak memory and time of `genpipe sample` in a fresh process. The baseline is the
arithmetic the train step prints (fp32 weights, gradients and Adam's two moments: 16 bytes a
parameter, divided over the workers under ZeRO-3) and, for the sizes, 4 bytes a parameter of
fp32 weights. `--record` appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_table import append_table  # noqa: E402

GIB = 2**30
COLUMNS = [
    "model",
    "parameters",
    "ZeRO-3 state per worker (16 B/param ÷ 2)",
    "peak RSS per worker",
    "train step s",
    "checkpoint",
    "registered model (fp32 weights = 4 B/param)",
    "sample in a new process: peak RSS, s",
]


@dataclass(frozen=True)
class LargeRun:
    name: str
    config: str
    sets: tuple[str, ...]
    sample: tuple[str, ...]  # `genpipe sample` options after the model URI
    model_name: str


# gpt-code-medium is a GPU config: the same model on CPU workers, in fp32, uncompiled.
CPU_INSTEAD_OF_GPU = (
    "train.use_gpu=false",
    "train.precision=fp32",
    "train.compile=false",
    "train.cpus_per_worker=1",
    "evaluate.num_gpus=0",
)
RUNS = {
    "gpt": LargeRun(
        "GPT medium",
        "gpt-code-medium",
        (
            *CPU_INSTEAD_OF_GPU,
            "data.source.include=email/**/*.py",  # a corpus of seconds to tokenize: the model is the point
            "train.batch_size=1",
            "train.grad_accum_steps=1",
            "evaluate.num_samples=2",
            "evaluate.max_new_tokens=8",
        ),
        ("--prompt", "def ", "--max-new-tokens", "8"),
        "gpt-code-medium",
    ),
    "ddpm": LargeRun(
        "DDPM large (64 px)",
        "quickstart",
        (
            "model.preset=large",
            "data.image_size=64",
            "train.batch_size=1",
            "evaluate.num_samples=8",
            "evaluate.grid_size=4",
            "evaluate.classifier_epochs=2",
            "model.params.sampling_steps=5",
        ),
        ("-n", "2", "--out", "{folder}/samples.png"),
        "quickstart-ddpm",
    ),
}


@dataclass
class WorkerMemory:
    """Samples the peak resident memory of every Ray Train worker process while a run goes on."""

    peaks: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        while not self.stop.wait(0.5):
            for process in psutil.process_iter(["pid", "cmdline"]):
                if "ray::RayTrainWorker" not in " ".join(process.info["cmdline"] or []):
                    continue
                try:
                    peak = _peak_rss(process.pid)
                except (OSError, ValueError):
                    continue
                self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), peak)


def process_memory(pid: int | str = "self") -> tuple[int, int]:
    """(resident, high-water mark) of a process in bytes: VmRSS and VmHWM of /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = [re.search(rf"{field}:\s+(\d+) kB", status) for field in ("VmRSS", "VmHWM")]
    if found[0] is None or found[1] is None:
        raise ValueError(f"process {pid} has ended")  # a zombie keeps its status, without memory
    return int(found[0].group(1)) * 1024, int(found[1].group(1)) * 1024


def _peak_rss(pid: int) -> int:
    return process_memory(pid)[1]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def stored_numbers(folder: Path) -> int:
    """How many numbers the safetensors files under `folder` hold: the registered weights'
    parameters (and the few buffers beside them)."""
    from math import prod

    from safetensors import safe_open

    total = 0
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as weights:
            total += sum(prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118
    return total


def _genpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


def measure(run: LargeRun, steps: int, work: Path) -> dict[str, object]:
    storage, tracking = work / "store", f"sqlite:///{work / 'mlflow.db'}"
    sets = (
        f"train.max_steps={steps}",
        f"train.checkpoint_every={steps}",
        "train.log_every=1",
        "train.sample_every=0",
        "train.num_workers=2",
        "train.strategy=zero3",
        *run.sets,
    )
    options = [item for setting in sets for item in ("--set", setting)]
    memory = WorkerMemory()
    watcher = threading.Thread(target=memory.watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    command = _genpipe("run", run.config, "--storage", str(storage), "--tracking-uri", tracking, *options)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
    )
    memory.stop.set()
    watcher.join()
    (work / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{run.name}: genpipe run failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    train_seconds = float(re.search(r"\+ train \(([\d.]+)s\)", done.stdout).group(1))  # type: ignore[union-attr]
    checkpoints = sorted(p for p in (storage / "checkpoints").glob("*/checkpoint_*") if p.is_dir())
    registered = _registered_folder(tracking, run.model_name)
    parameters = stored_numbers(registered)
    sample_args = [arg.format(folder=work) for arg in run.sample]
    sample_started = time.monotonic()
    sampler = psutil.Popen(
        _genpipe("sample", f"models:/{run.model_name}/1", *sample_args, "--tracking-uri", tracking),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sample_peak = 0
    while sampler.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            sample_peak = max(sample_peak, _peak_rss(sampler.pid))
        time.sleep(0.2)
    if sampler.returncode != 0:
        raise SystemExit(f"{run.name}: genpipe sample failed: {sampler.stdout.read().decode()[-2000:]}")
    return {
        "parameters": parameters,
        "workers_peak": sorted(memory.peaks.values(), reverse=True)[:2],
        "train_s": train_seconds,
        "run_s": time.monotonic() - started,
        "checkpoint_bytes": folder_bytes(checkpoints[-1]) if checkpoints else 0,
        "registered_bytes": folder_bytes(registered),
        "sample_peak": sample_peak,
        "sample_s": time.monotonic() - sample_started,
    }


def _registered_folder(tracking: str, model_name: str) -> Path:
    """The local folder of version 1's artifacts (a sqlite store keeps them on this disk)."""
    from mlflow.artifacts import download_artifacts

    from pipelines.registry.tracking import pointed_at

    with pointed_at(tracking):
        return Path(download_artifacts(f"models:/{model_name}/1"))


def row(run: LargeRun, result: dict[str, object]) -> str:
    n = float(result["parameters"])  # type: ignore[arg-type]
    peaks = " / ".join(f"{peak / GIB:.2f}" for peak in result["workers_peak"])  # type: ignore[attr-defined]
    cells = [
        run.name,
        f"{n / 1e6:.0f}M",
        f"{16 * n / 2 / GIB:.2f} GiB",
        f"{peaks} GiB",
        f"{result['train_s']:.0f}",
        f"{result['checkpoint_bytes'] / GIB:.2f} GiB",  # type: ignore[operator]
        f"{result['registered_bytes'] / GIB:.2f} GiB ({4 * n / GIB:.2f})",  # type: ignore[operator]
        f"{result['sample_peak'] / GIB:.2f} GiB, {result['sample_s']:.0f}",  # type: ignore[operator]
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt,ddpm", help="which of: " + ", ".join(RUNS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for key in args.models.split(","):
        run = RUNS[key]
        with tempfile.TemporaryDirectory(prefix="genpipe-large-") as folder:
            print(f"{run.name}: genpipe run {run.config}, ZeRO-3, 2 CPU workers, {args.steps} steps ...", flush=True)
            result = measure(run, args.steps, Path(folder))
        rows.append(row(run, result))
        print(rows[-1], flush=True)
    about = [
        f"`python benchmarks/large_cpu_bench.py --models {args.models} --steps {args.steps}`: each model trained",
        f"{args.steps} steps by `genpipe run` under ZeRO-3 on 2 CPU Ray Train workers (fp32), evaluated, registered",
        "(sqlite MLflow) and sampled by `genpipe sample` in a new process.",
    ]
    if args.record:
        memory = f", {psutil.virtual_memory().total / GIB:.0f} GiB"
        append_table("Large models on CPU (issue 35)", about, COLUMNS, rows, extra=memory)
    print("\n".join(["| " + " | ".join(COLUMNS) + " |", *rows]))


if __name__ == "__main__":
    main()
