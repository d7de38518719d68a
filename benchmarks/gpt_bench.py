"""GPT benchmarks, each against a baseline measured in the same run.

Run: `python benchmarks/gpt_bench.py --mode cpu|gpu [--record]` (`pip install -e .[bench]` first:
the Hugging Face baseline needs `transformers`).

1. pipeline-vs-bare: genpipe's training step (`genpipe run`, Ray Train + DeepSpeed, 1 worker) vs
   a bare PyTorch loop on the same model, batch and data: tokens/s ratio (target >= 0.97).
2. genpipe-vs-hf: genpipe's GPT vs `transformers.GPT2LMHeadModel` of the same shape in the same
   bare loop: tokens/s ratio (target >= 1.0 on CPU, >= 1.2 on GPU) and val bits per byte after the
   same number of steps (target: equal or lower).
3. (gpu) MFU of the `small` and `medium` presets, bf16, T=1024, through the whole pipeline, as the
   training loop logs it to MLflow.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def run_pipeline(config: str, storage: Path, overrides: list[str]) -> dict[str, list[float]]:
    """`genpipe run CONFIG` in a subprocess; returns the train/ metric histories from MLflow."""
    command = [sys.executable, "-m", "pipelines.cli", "run", config, "--storage", str(storage)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    process = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
    )
    if process.returncode:
        raise RuntimeError(f"genpipe run failed:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
    print(f"  pipeline {config} finished in {time.perf_counter() - started:.0f}s", flush=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{storage}/mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    return {
        key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in run.data.metrics
        if key.startswith(("train/", "eval/"))
    }


def steady(values: list[float]) -> float:
    """The median of the logging windows after the first (which holds start-up and compilation)."""
    return statistics.median(values[1:] if len(values) > 1 else values)


def prepared_blocks(config: str, storage: Path) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The train and val token blocks of the dataset the pipeline prepared, and val bytes/token."""
    from data_prep.manifest import Manifest
    from data_prep.readers import read_tokens
    from storage import read_json

    manifest_path = next(storage.glob("datasets/*/manifest.json"))
    manifest = Manifest.model_validate(read_json(str(manifest_path)))
    return (
        torch.from_numpy(read_tokens(manifest, "train")),
        torch.from_numpy(read_tokens(manifest, "val")),
        manifest.text.bytes_per_token("val"),
    )


def genpipe_gpt(preset: str, vocab: int, block: int) -> torch.nn.Module:
    from models import build_model, resolve_config

    model = build_model("gpt", resolve_config("gpt", preset, {"block_size": block}, {"vocab_size": vocab}))
    return model.transformer


def hf_gpt2(preset: str, vocab: int, block: int) -> torch.nn.Module:
    """GPT2LMHeadModel of the preset's shape, SDPA attention, returning bare logits."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from models.gpt import GPT

    shape = GPT.presets[preset]
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=block,
        n_embd=shape["n_embd"],
        n_layer=shape["n_layer"],
        n_head=shape["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config, attn_implementation="sdpa") if _accepts_attn() else GPT2LMHeadModel(config)

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=ids).logits

    return Logits()


def _accepts_attn() -> bool:
    import inspect

    from transformers import GPT2LMHeadModel

    return "attn_implementation" in inspect.signature(GPT2LMHeadModel.__init__).parameters


def bare_loop(
    network: torch.nn.Module,
    train: torch.Tensor,
    val: torch.Tensor,
    batch: int,
    steps: int,
    device: str,
    bytes_per_token: float,
    lr: float,
    compile_model: bool = False,
) -> dict[str, float]:
    """AdamW on `network`, `steps` steps of `batch` blocks; tokens/s after the first 10% of steps,
    then val bits per byte. bf16 autocast on GPU, fp32 on CPU, as the pipeline does."""
    torch.manual_seed(0)
    network = network.to(device)
    step_fn = torch.compile(network) if compile_model else network
    # The pipeline's optimizer: fused kernels on GPUs, the multi-tensor path on CPU (engines.py).
    multi_tensor = {"fused": True} if device == "cuda" else {"foreach": True}
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=0.0, **multi_tensor)
    autocast = torch.autocast("cuda", torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    warm = max(1, steps // 10)
    start = time.perf_counter()
    for step in range(steps):
        if step == warm:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        rows = order[(step * batch) % (len(train) - batch) :][:batch]
        tokens = train[rows].long().to(device, non_blocking=True)
        with autocast:
            logits = step_fn(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    tokens_per_s = (steps - warm) * batch * (train.shape[1] - 1) / (time.perf_counter() - start)
    network.eval()
    total = 0.0
    with torch.no_grad(), autocast:
        for start_row in range(0, len(val), batch):
            tokens = val[start_row : start_row + batch].long().to(device)
            logits = network(tokens[:, :-1]).float()
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum"
            ).item()
    loss = total / (len(val) * (val.shape[1] - 1))
    return {"tokens_per_s": tokens_per_s, "bits_per_byte": loss / math.log(2) / bytes_per_token}


def cpu_benchmarks(work: Path, steps: int) -> list[str]:
    # One thread on each side: the worker holds one of the 2 cores (torch threads = its CPUs), and
    # the driver, Ray and the feed's prefetch thread need the other.
    threads = 1
    torch.set_num_threads(threads)
    overrides = [
        "train.num_workers=1",
        f"train.cpus_per_worker={threads}",
        f"train.max_steps={steps}",
        "train.log_every=10",
        "train.checkpoint_every=100000",
        "evaluate.num_samples=16",
        "evaluate.max_new_tokens=8",
    ]
    pipeline = run_pipeline("gpt-code-tiny", work / "store", overrides)
    train, val, bytes_per_token = prepared_blocks("gpt-code-tiny", work / "store")
    vocab, block, batch = 257, train.shape[1] - 1, 16
    ours = bare_loop(genpipe_gpt("tiny", vocab, block), train, val, batch, steps, "cpu", bytes_per_token, 3e-3)
    theirs = bare_loop(hf_gpt2("tiny", vocab, block), train, val, batch, steps, "cpu", bytes_per_token, 3e-3)
    in_pipeline = steady(pipeline["train/tokens_per_s"])
    return [
        f"- pipeline vs bare ({steps} steps, batch {batch} x {block} tokens, {threads} threads): genpipe run "
        f"(Ray Train + DeepSpeed, 1 worker, so ZeRO stage 0) {in_pipeline:,.0f} tokens/s, bare PyTorch loop "
        f"{ours['tokens_per_s']:,.0f} tokens/s: ratio **{in_pipeline / ours['tokens_per_s']:.3f}** (target >= 0.97)",
        f"- genpipe GPT vs HF GPT2LMHeadModel (tiny shape, same bare loop, {steps} steps): "
        f"{ours['tokens_per_s']:,.0f} vs {theirs['tokens_per_s']:,.0f} tokens/s: ratio "
        f"**{ours['tokens_per_s'] / theirs['tokens_per_s']:.3f}** (target >= 1.0); val bits/byte "
        f"**{ours['bits_per_byte']:.3f}** vs {theirs['bits_per_byte']:.3f} (target: equal or lower)",
    ]


def gpu_benchmarks(work: Path, steps: int, presets: list[str], extra: list[str], compare: bool) -> list[str]:
    lines = []
    for preset in presets:
        storage = work / f"store-{preset}"
        overrides = [
            f"model.preset={preset}",
            f"train.max_steps={steps}",
            "train.checkpoint_every=100000",
            "evaluate.num_samples=64",
            "evaluate.max_new_tokens=64",
            *extra,
        ]
        metrics = run_pipeline("gpt-code-medium", storage, overrides)
        mfu, tokens = metrics["train/mfu"], metrics["train/tokens_per_s"]
        lines.append(
            f"- {preset}: whole pipeline (genpipe run gpt-code-medium, 1 H100 worker, T=1024, {steps} steps, "
            f"overrides {extra or 'none'}): **MFU {steady(mfu):.1%}** (best window "
            f"{max(mfu[1:] or mfu):.1%}), {steady(tokens):,.0f} tokens/s; val bits/byte "
            f"{metrics['eval/bits_per_byte'][-1]:.3f}"
        )
    if not compare:
        return lines
    train, val, bytes_per_token = prepared_blocks("gpt-code-medium", work / f"store-{presets[0]}")
    block, batch = train.shape[1] - 1, 16
    vocab = int(max(train.max(), val.max())) + 1
    ours = bare_loop(
        genpipe_gpt(presets[0], vocab, block),
        train,
        val[:256],
        batch,
        60,
        "cuda",
        bytes_per_token,
        3e-4,
        compile_model=True,
    )
    theirs = bare_loop(
        hf_gpt2(presets[0], vocab, block),
        train,
        val[:256],
        batch,
        60,
        "cuda",
        bytes_per_token,
        3e-4,
        compile_model=True,
    )
    lines.append(
        f"- genpipe GPT vs HF GPT2LMHeadModel ({presets[0]}, bf16 autocast, torch.compile, batch {batch} x "
        f"{block}, 60 steps): {ours['tokens_per_s']:,.0f} vs {theirs['tokens_per_s']:,.0f} tokens/s: "
        f"ratio **{ours['tokens_per_s'] / theirs['tokens_per_s']:.3f}** (target >= 1.2); val bits/byte "
        f"{ours['bits_per_byte']:.3f} vs {theirs['bits_per_byte']:.3f}"
    )
    return lines


def profile_step(preset: str, batch: int) -> list[str]:
    """The CUDA kernels of a compiled bf16 training step of `preset`, by total time: what limits MFU."""
    from torch.profiler import ProfilerActivity, profile

    network = genpipe_gpt(preset, 16384, 1024).cuda()
    step_fn = torch.compile(network)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, 16384, (batch, 1025), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16):
            logits = step_fn(tokens[:, :-1])
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(8):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(4):
            step()
        torch.cuda.synchronize()
    table = profiler.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)
    return [f"- profile of a compiled {preset} step, batch {batch} x 1024 (4 steps):", "", "```", table, "```"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--presets", default="small,medium")
    parser.add_argument("--set", action="append", default=[], help="gpu: config overrides for the pipeline runs")
    parser.add_argument("--no-compare", action="store_true", help="gpu: skip the Hugging Face comparison")
    parser.add_argument("--profile", help="gpu: profile a bare training step of this preset")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.mode == "cpu":
            lines = cpu_benchmarks(Path(folder), args.steps or 150)
            machine = f"{platform.node()} ({os.cpu_count()} cores, CPU only), torch {torch.__version__}"
        else:
            lines = gpu_benchmarks(
                Path(folder), args.steps or 60, [p for p in args.presets.split(",") if p], args.set, not args.no_compare
            )
            if args.profile:
                lines += profile_step(args.profile, 16)
            machine = f"{torch.cuda.get_device_name()} , torch {torch.__version__}"
    report = [f"### GPT benchmark ({args.mode}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}", "", *lines, ""]
    print("\n".join(report))
    if args.record:
        with RESULTS.open("a") as handle:
            handle.write("\n" + "\n".join(report))


if __name__ == "__main__":
    main()
