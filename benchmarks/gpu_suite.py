"""Every GPU target of issue 35 in one prepared command, each against its baseline in the same run.

1. gpt: GPT `medium` (354M, T=1024, bf16) through the pipeline's training loop (the feed, the
   DeepSpeed engine `train.strategy: auto` picks, `engine.compile()`: `pipelines.train.loop.Fit`, as
   a Ray Train worker runs it) against a bare PyTorch loop on the same blocks: tokens/s, MFU
   (6N + 12·L·H·Q·T FLOPs per token, the model's own count, against the GPU's bf16 peak).
   Targets: MFU >= 55%, pipeline >= 0.97x bare.
2. feed: the same loop streamed from the shards against the split cached on the device
   (`train.device_cache_mb`): target streamed >= 0.98x cached.
3. ddpm: the `cifar` U-Net at batch 128 as the pipeline trains it (DeepSpeed engine, EMA), in a
   bare loop, and diffusers' `UNet2DModel` of the same shape: images/s. Targets: >= 2,700 img/s
   (the DDPM paper's TPU v3-8), >= 0.97x bare, >= 1.2x diffusers.
4. kv: GPT `medium` generation with and without the KV cache at batch 1 and 8 (bf16 autocast): tokens/s.
5. engine: the loop with genpipe's engine at ZeRO stages 0-3 on one rank against the bare loop,
   both eager: what the engine itself costs on a GPU.

On the device (one H100/H200, ~15 minutes with its start): torch, transformers, tokenizers,
pyarrow and safetensors are there for Python 3.12; Ray, MLflow, DeepSpeed, pydantic and diffusers
are not. Nothing here needs Ray or MLflow (the loop is measured in one process, as one Ray Train
worker runs it); `benchmarks/gpu_carry.sh` downloads the rest as cp312 wheels (DeepSpeed as its
pure-Python source, built here with no ops) into `.gpu-carry/` and prepares the GPT dataset
there (prepare needs Ray, so it runs here): ~20 MB of wheels and the dataset. Then, on the device:

    run(command="bash benchmarks/gpu_carry.sh install && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py
        --data .gpu-carry/data --json $OUT/gpu_suite.json --record 2>&1 | tee $OUT/log",
        carry=[".gpu-carry"], timeout_s=540)

`--dry-run`: the same script at tiny sizes on the CPU in seconds (`make test` runs it,
tests/test_gpu_suite.py), so it never rots. `--parts gpt,kv` runs some of them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = ("gpt", "feed", "ddpm", "kv", "engine")


@dataclass(frozen=True)
class Sizes:
    gpt_config: str
    gpt_sets: tuple[str, ...]
    steps: int  # optimizer steps timed after `warm` more
    warm: int
    ddpm_preset: str
    ddpm_shape: tuple[int, int, int]
    ddpm_batch: int
    ddpm_steps: int
    kv_new_tokens: int


GPU = Sizes("gpt-code-medium", (), 30, 5, "cifar", (3, 32, 32), 128, 60, 256)
DRY = Sizes(
    "gpt-code-tiny",
    ("train.batch_size=4", "train.num_workers=1", "model.params.block_size=32", "data.seq_len=32"),
    3,
    1,
    "tiny",
    (1, 8, 8),
    8,
    4,
    8,
)


def gpt_config(sizes: Sizes, *extra: str):
    from pipelines.config import load_config

    return load_config(sizes.gpt_config, [*sizes.gpt_sets, *extra])


def prepare_data(folder: Path, sizes: Sizes):
    """The GPT dataset, prepared by genpipe's own `prepare` (Ray Data) into `folder`."""
    from data_prep.prepare import prepare

    manifest, _ = prepare(gpt_config(sizes).data, str(folder))
    return manifest


def prepared(folder: Path):
    from data_prep.manifest import load_verified

    found = sorted(folder.glob("datasets/*/manifest.json"))
    if not found:
        raise SystemExit(f"--data {folder}: no prepared dataset in it (make one: bash benchmarks/gpu_carry.sh)")
    return load_verified(str(found[-1].parent))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _release(device: torch.device) -> None:
    """The last measurement's model and engine (DeepSpeed's hold cycles) off the device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def pipeline_loop(manifest, sizes: Sizes, device: torch.device, *extra: str, zero_stage: int | None = None) -> dict:
    """tokens/s of the pipeline's loop (feed, engines, `Fit`) on one rank, after `warm` steps."""
    from pipelines.train.engines import build_engines
    from pipelines.train.feed import open_feed
    from pipelines.train.loop import Fit, LossWindow
    from pipelines.train.model_setup import built_model, model_config
    from pipelines.train.settings import data_lanes, loop_settings, set_up_process
    from pipelines.train.strategy import strategy_for, worker_memory

    _release(device)
    config = gpt_config(sizes, f"train.max_steps={sizes.warm + sizes.steps}", *extra)
    set_up_process(config.train, 0, os.cpu_count() or 1, device)
    model = built_model(config.model.family, model_config(config, manifest)).to(device)
    feed = open_feed(manifest, "train", config.train, device, data_lanes(config.train, 1, None))
    on_gpu = device.type == "cuda"
    strategy = strategy_for(config.train, model, 1, worker_memory(device, 1), on_gpu)
    stage = strategy.zero_stage if zero_stage is None else zero_stage
    settings = loop_settings(config.train, strategy, 0, 1, device, manifest.splits["train"].rows)
    flops_per_token = model.flops_per_token(manifest.text.seq_len)
    fit = Fit(model, build_engines(model, settings.train, stage, settings.total_steps, on_gpu), feed, settings)
    window = LossWindow(list(fit.engines))
    started = time.perf_counter()
    for step in fit.steps(0, sizes.warm + sizes.steps, window):
        if step == sizes.warm:
            _synchronize(device)
            started = time.perf_counter()
    _synchronize(device)
    train = settings.train
    tokens = sizes.steps * train.batch_size * train.grad_accum_steps * (manifest.text.seq_len)
    return {
        "tokens_per_s": tokens / (time.perf_counter() - started),
        "flops_per_token": flops_per_token,
        "zero_stage": stage,
        "micro_batch": train.batch_size,
        "grad_accum_steps": train.grad_accum_steps,
        "compile": train.compile,
    }


def bare_loop(manifest, sizes: Sizes, device: torch.device, batch: int, compile_model: bool) -> float:
    """tokens/s of a bare PyTorch loop on the same model shape and blocks (benchmarks/gpt_bench.py)."""
    from benchmarks.gpt_bench import bare_loop as loop
    from benchmarks.gpt_bench import genpipe_gpt
    from data_prep.readers import read_tokens

    config = gpt_config(sizes)
    train = torch.from_numpy(read_tokens(manifest, "train"))
    val = torch.from_numpy(read_tokens(manifest, "val"))[: 2 * batch]
    network = genpipe_gpt(config.model.preset, manifest.text.vocab_size, train.shape[1] - 1)
    steps = sizes.warm + sizes.steps
    kind = "cuda" if device.type == "cuda" else "cpu"
    result = loop(network, train, val, batch, steps, kind, manifest.text.bytes_per_token("val"), 3e-4, compile_model)
    return result["tokens_per_s"]


def peak_flops(device: torch.device) -> float | None:
    from pipelines.train.hardware import peak_flops as peak

    return peak(device, None)


def part_gpt(manifest, sizes: Sizes, device: torch.device) -> list[dict]:
    pipeline = pipeline_loop(manifest, sizes, device)
    # The same micro-batch (tokens/s is per token; one step of the whole accumulated batch would
    # hold 64 x 1024 tokens of activations at once).
    bare = bare_loop(manifest, sizes, device, pipeline["micro_batch"], pipeline["compile"])
    peak = peak_flops(device)
    mfu = pipeline["tokens_per_s"] * pipeline["flops_per_token"] / peak if peak else None
    return [
        {"what": "GPT, pipeline loop", **pipeline, "mfu": mfu, "target": "MFU >= 0.55"},
        {"what": "GPT, bare loop", "tokens_per_s": bare},
        {"what": "GPT, pipeline / bare", "ratio": pipeline["tokens_per_s"] / bare, "target": ">= 0.97"},
    ]


def part_feed(manifest, sizes: Sizes, device: torch.device) -> list[dict]:
    streamed = pipeline_loop(manifest, sizes, device, "train.device_cache_mb=0")["tokens_per_s"]
    cached = pipeline_loop(manifest, sizes, device, "train.device_cache_mb=100000")["tokens_per_s"]
    return [
        {"what": "feed: streamed", "tokens_per_s": streamed},
        {"what": "feed: cached on the device", "tokens_per_s": cached},
        {"what": "feed: streamed / cached", "ratio": streamed / cached, "target": ">= 0.98"},
    ]


def part_engine(manifest, sizes: Sizes, device: torch.device) -> list[dict]:
    eager = ("train.compile=false",)
    rows = []
    for stage in range(4):
        rows.append(
            {"what": f"engine, ZeRO-{stage}", **pipeline_loop(manifest, sizes, device, *eager, zero_stage=stage)}
        )
    bare = bare_loop(manifest, sizes, device, rows[0]["micro_batch"], compile_model=False)
    rows.append({"what": "engine: bare loop, eager", "tokens_per_s": bare})
    for row in rows[:4]:
        row["vs_bare"] = row["tokens_per_s"] / bare
    return rows


def _ddpm_engine_arm(sizes: Sizes, device: torch.device):
    """The U-Net step as `genpipe run` takes it on one worker: the engine `build_engines` makes
    (the model's precision on a GPU: fp32 weights under bf16 autocast), compiled on a GPU, EMA."""
    from benchmarks.diffusion_bench import Arm, engine_step
    from models import build_model, resolve_config
    from pipelines.config import TrainConfig
    from pipelines.train.engines import build_engines

    on_gpu = device.type == "cuda"
    torch.manual_seed(0)
    config = resolve_config("ddpm", sizes.ddpm_preset, {"dropout": 0.0}, {"image_shape": sizes.ddpm_shape})
    model = build_model("ddpm", config).to(device)
    train = TrainConfig(batch_size=sizes.ddpm_batch, learning_rate=2e-4, strategy="ddp", grad_clip=0.0, compile=on_gpu)
    step = engine_step(model, build_engines(model, train, 0, 10_000, on_gpu)["unet"])
    parameters = sum(p.numel() for p in model.parameters())
    return Arm("pipeline engine", parameters, step, lambda n, generator: model.sample(n, generator), autocast=False)


def part_ddpm(sizes: Sizes, device: torch.device) -> list[dict]:
    from benchmarks.diffusion_bench import diffusers_arm, genpipe_arm, images_per_second

    on_gpu, kind = device.type == "cuda", "cuda" if device.type == "cuda" else "cpu"
    data = torch.rand(max(1024, 4 * sizes.ddpm_batch), *sizes.ddpm_shape, device=device) * 2 - 1
    arms: dict[str, Callable[[], Any]] = {
        "pipeline engine": lambda: _ddpm_engine_arm(sizes, device),
        "bare loop": lambda: genpipe_arm(sizes.ddpm_preset, sizes.ddpm_shape, 2e-4, kind, on_gpu, False),
        "diffusers UNet2DModel": lambda: diffusers_arm(sizes.ddpm_preset, sizes.ddpm_shape, 2e-4, kind, on_gpu, False),
    }
    speeds: dict[str, float] = {}
    rows = []
    for name, make in arms.items():
        try:
            arm = make()
        except ImportError as missing:  # diffusers is a baseline, not a need
            rows.append({"what": f"DDPM, {name}", "skipped": f"{missing.name} is not installed"})
            continue
        speeds[name] = images_per_second(arm, data, sizes.ddpm_batch, sizes.ddpm_steps, kind)
        rows.append({"what": f"DDPM, {name}", "images_per_s": speeds[name], "parameters": arm.parameters})
    rows[0]["target"] = ">= 2700 img/s"
    if "bare loop" in speeds:
        rows.append({"what": "DDPM, pipeline / bare", "ratio": speeds["pipeline engine"] / speeds["bare loop"]})
        rows[-1]["target"] = ">= 0.97"
    if "diffusers UNet2DModel" in speeds:
        rows.append(
            {"what": "DDPM, pipeline / diffusers", "ratio": speeds["pipeline engine"] / speeds["diffusers UNet2DModel"]}
        )
        rows[-1]["target"] = ">= 1.2"
    return rows


def part_kv(manifest, sizes: Sizes, device: torch.device) -> list[dict]:
    from benchmarks.generation_bench import timed
    from pipelines.train.model_setup import built_model, model_config

    config = gpt_config(sizes)
    model = built_model("gpt", model_config(config, manifest)).to(device).eval()
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    rows = []
    for batch in (1, 8):
        prompt = torch.randint(0, manifest.text.vocab_size, (batch, 16), device=device)
        speeds = {}
        for use_cache in (True, False):
            with autocast, torch.no_grad():
                runs = [timed(model, prompt, use_cache, sizes.kv_new_tokens)[0] for _ in range(3)]
            speeds[use_cache] = batch * sizes.kv_new_tokens / statistics.median(runs)
        rows.append({"what": f"KV cache, batch {batch}", "cached_tokens_per_s": speeds[True]})
        rows[-1]["uncached_tokens_per_s"], rows[-1]["ratio"] = speeds[False], speeds[True] / speeds[False]
    return rows


def run_suite(data: Path, sizes: Sizes, parts: tuple[str, ...], device: torch.device) -> dict[str, Any]:
    """Every part asked for, in this process (one DeepSpeed group of one for all of them)."""
    from pipelines.train.settings import lasting_process_group

    lasting_process_group(device.type == "cuda")
    manifest = prepared(data)
    report: dict[str, Any] = {"device": _device_name(device), "torch": torch.__version__, "parts": {}}
    for part in parts:
        started = time.monotonic()
        print(f"> {part} ...", flush=True)
        if part == "ddpm":
            rows = part_ddpm(sizes, device)
        else:
            rows = {"gpt": part_gpt, "feed": part_feed, "engine": part_engine, "kv": part_kv}[part](
                manifest, sizes, device
            )
        report["parts"][part] = {"rows": rows, "seconds": time.monotonic() - started}
        for row in rows:
            print("  " + _line(row), flush=True)
        _release(device)
    return report


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


def _line(row: dict) -> str:
    shown = []
    for key, value in row.items():
        if key == "what":
            continue
        shown.append(f"{key}={value:,.4g}" if isinstance(value, float) else f"{key}={value}")
    return f"{row['what']}: " + ", ".join(shown)


def record(report: dict[str, Any], command: str) -> None:
    from benchmarks.results_table import append_table

    rows = [
        f"| {part} | {_line(row)} | {result['seconds']:.0f} |"
        for part, result in report["parts"].items()
        for row in result["rows"]
    ]
    device = f", {report['device']}"
    append_table("GPU suite (issue 35)", [f"`{command}`"], ["part", "measured", "part's s"], rows, extra=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the prepared dataset's storage (benchmarks/gpu_carry.sh makes it)")
    parser.add_argument("--prepare", type=Path, help="prepare the GPT dataset into this folder (needs Ray) and stop")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, in seconds")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # libraries' deprecation notes: the suite's lines are its output
    sizes = DRY if args.dry_run else GPU
    if args.prepare:
        import logging

        import ray

        # A Ray of its own (never one a running `genpipe` left in /tmp/ray), quiet as a step's.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        logging.disable(logging.INFO)  # Ray Data's executor lines: this command prints one line
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"prepared {prepare_data(args.prepare, sizes).uri}")
        return
    if args.data is None:
        parser.error("--data (or --prepare) is needed")
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: no part {', '.join(sorted(unknown))}; the parts: {', '.join(PARTS)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    report = run_suite(args.data, sizes, tuple(args.parts.split(",")), device)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.record:
        record(report, "python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
