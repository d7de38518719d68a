"""Diffusion benchmarks: genpipe's U-Net training step against Hugging Face diffusers'
`UNet2DModel` + `DDPMScheduler` of the same shape, in the same bare loop, in the same run.

Run: `python benchmarks/diffusion_bench.py --mode cpu|gpu [--record]` (`pip install diffusers`
first: it is the baseline only, not a genpipe dependency).

Each side runs its library's own recipe for one optimizer step: genpipe's `DDPM.loss` (random t,
q_sample, the U-Net, MSE) then AdamW then its EMA update; diffusers' `DDPMScheduler.add_noise`,
`UNet2DModel(...).sample`, MSE, AdamW, then `EMAModel.step` (foreach), as its training examples do.

- cpu: the `tiny` preset's shape on 8x8 digits (fp32): images/s (target ratio >= 1.0), then
  classifier-FID of 500 ancestral samples from each side's EMA after the same steps (equal or lower).
- gpu: the `cifar` preset's shape (35.7M) at 32 px, torch.compile, channels-last: genpipe's step
  as the pipeline runs it (a DeepSpeed bf16 engine), the same model under bf16 autocast, and
  diffusers under bf16 autocast: images/s (target ratio >= 1.2, and >= 2,700 img/s for genpipe),
  then a torch.profiler breakdown of genpipe's step by kernel kind.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "RESULTS.md"


@dataclass
class Arm:
    """One side of the comparison: a step on a batch of images, and a sampler for its EMA."""

    name: str
    parameters: int
    step: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int, torch.Generator], torch.Tensor]
    autocast: bool = True  # on GPU: bf16 autocast over fp32 weights (a DeepSpeed bf16 engine holds bf16 weights)


def genpipe_arm(
    preset: str,
    image_shape: tuple[int, int, int],
    lr: float,
    device: str,
    compile_model: bool,
    channels_last: bool,
    seed: int = 0,
) -> Arm:
    from models import build_model, resolve_config

    torch.manual_seed(seed)
    model = build_model("ddpm", resolve_config("ddpm", preset, {"dropout": 0.0}, {"image_shape": image_shape}))
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = torch.optim.AdamW(model.unet.parameters(), lr=lr, weight_decay=0.0, fused=device == "cuda")
    if compile_model:
        model.use_network("unet", torch.compile(model.unet))

    def step(images: torch.Tensor) -> torch.Tensor:
        loss = model.loss("unet", {"image": images})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.after_update("unet")
        return loss

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        model.load_state_dict(model.exported_state(model.state_dict()))  # the EMA, as registered
        return model.eval().sample(n, generator, sampler="ancestral")

    return Arm("genpipe", sum(p.numel() for p in model.unet.parameters()), step, sample)


def engine_step(model, engine) -> Callable[[torch.Tensor], torch.Tensor]:
    """A step of the U-Net's DeepSpeed engine on a batch of images, the EMA after it, as the
    pipeline's loop takes it."""

    def step(images: torch.Tensor) -> torch.Tensor:
        loss = model.loss("unet", {"image": images})
        engine.backward(loss)
        engine.step()
        model.after_update("unet")
        return loss

    return step


def genpipe_deepspeed_arm(
    preset: str,
    image_shape: tuple[int, int, int],
    lr: float,
    device: str,
    compile_model: bool,
    channels_last: bool,
    batch: int,
    precision: str = "auto",
) -> Arm:
    """genpipe's step as `genpipe run` takes it on one GPU worker: a DeepSpeed engine (stage 0,
    the model's GPU precision: fp32 weights under bf16 autocast for the U-Net), `engine.compile()`,
    EMA. `precision="bf16"` gives the pure-bf16 engine (bf16 weights, fp32 master copies)."""
    import os

    from models import build_model, resolve_config
    from pipelines.config import TrainConfig
    from pipelines.train.engines import build_engine, precision_mode

    for key, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29512",
    }.items():
        os.environ.setdefault(key, value)
    torch.manual_seed(0)
    model = build_model("ddpm", resolve_config("ddpm", preset, {"dropout": 0.0}, {"image_shape": image_shape}))
    # Weights stay contiguous: DeepSpeed broadcasts (and its bf16 optimizer flattens) them as
    # plain buffers and refuses channels-last strides; the images may still be channels-last.
    model = model.to(device)
    train = TrainConfig(
        batch_size=batch, learning_rate=lr, precision=precision, strategy="ddp", grad_clip=0.0, compile=compile_model
    )
    engine = build_engine(model.unet, train, 0, 10_000, on_gpu=True, preferred_precision=model.gpu_precision)
    if compile_model:
        engine.compile()
    model.use_network("unet", engine)
    step = engine_step(model, engine)
    name = f"genpipe (DeepSpeed {precision_mode(train, True, model.gpu_precision)})"
    return Arm(
        name,
        sum(p.numel() for p in model.unet.parameters()),
        step,
        lambda n, generator: model.eval().sample(n, generator),
        autocast=False,
    )


def diffusers_arm(
    preset: str,
    image_shape: tuple[int, int, int],
    lr: float,
    device: str,
    compile_model: bool,
    channels_last: bool,
    seed: int = 0,
) -> Arm:
    """UNet2DModel with genpipe's preset shape: the same channels, blocks, attention levels (one
    head, as in DDPM), GroupNorm groups and schedule."""
    import math

    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    from models.ddpm import DDPM

    shape = {**DDPM.presets[preset]}
    channels, size, _ = image_shape
    widths = [shape["base_channels"] * m for m in shape["channel_mults"]]
    attends = [size // 2**level in shape["attention_resolutions"] for level in range(len(widths))]
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=shape["num_res_blocks"],
        block_out_channels=tuple(widths),
        norm_num_groups=math.gcd(32, shape["base_channels"]),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        attention_head_dim=widths[-1],
        dropout=0.0,
    ).to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    schedule = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[shape["beta_schedule"]]
    scheduler = DDPMScheduler(num_train_timesteps=shape["timesteps"], beta_schedule=schedule)
    ema = EMAModel(unet.parameters(), decay=shape["ema_decay"], foreach=True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0, fused=device == "cuda")
    forward = torch.compile(unet) if compile_model else unet

    def step(images: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(images)
        t = torch.randint(0, shape["timesteps"], (len(images),), device=images.device)
        predicted = forward(scheduler.add_noise(images, noise, t), t).sample
        loss = F.mse_loss(predicted.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        return loss

    @torch.no_grad()
    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        ema.copy_to(unet.parameters())
        unet.eval()
        x = torch.randn((n, *image_shape), generator=generator, device=device)
        scheduler.set_timesteps(shape["timesteps"])
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
        return x.clamp(-1, 1)

    return Arm("diffusers", sum(p.numel() for p in unet.parameters()), step, sample)


def images_per_second(arm: Arm, data: torch.Tensor, batch: int, steps: int, device: str, seed: int = 0) -> float:
    """Steps over a seeded order of `data`; images/s after the first 10% (compilation, warm-up)."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    on_gpu = device == "cuda" and arm.autocast
    autocast = torch.autocast("cuda", torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
    warm = max(3, steps // 10)
    start = time.perf_counter()
    for index in range(steps):
        if index == warm:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        rows = order[(index * batch) % (len(data) - batch) :][:batch]
        with autocast:
            arm.step(data[rows])
    if device == "cuda":
        torch.cuda.synchronize()
    return (steps - warm) * batch / (time.perf_counter() - start)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    loaded = load_digits()
    return torch.tensor(loaded.images, dtype=torch.float32)[:, None] / 8 - 1, torch.tensor(loaded.target)


def cpu_bench(steps: int, batch: int, samples: int, seeds: int) -> list[str]:
    """Both arms over `seeds` seeds (initialisation, batch order, sampling noise); the gap in
    classifier-FID per seed, with a 95% t-interval over seeds."""
    import statistics

    from benchmarks.results_table import interval
    from models.ddpm import DDPM
    from pipelines.evaluate.classifier import score_samples, train_classifier

    torch.set_num_threads(2)
    images, labels = digits()
    classifier = train_classifier(images, labels, 10, epochs=10, seed=0)
    results: dict[str, list[tuple[float, dict]]] = {"genpipe": [], "diffusers": []}
    parameters: dict[str, int] = {}
    for seed in range(seeds):
        for make in (genpipe_arm, diffusers_arm):
            arm = make("tiny", (1, 8, 8), 2e-3, "cpu", False, False, seed)
            speed = images_per_second(arm, images, batch, steps, "cpu", seed)
            generated = arm.sample(samples, torch.Generator().manual_seed(seed))
            scores = score_samples(classifier, generated, images)
            results[arm.name].append((speed, scores))
            parameters[arm.name] = arm.parameters
            print(
                f"  seed {seed} {arm.name}: {arm.parameters / 1e6:.3f}M params, {speed:.0f} img/s, "
                f"classifier-FID {scores['classifier_fid']:.2f}, coverage {scores['class_coverage']}",
                flush=True,
            )

    fids = {name: [scores["classifier_fid"] for _, scores in runs] for name, runs in results.items()}
    gaps = [ours - theirs for ours, theirs in zip(fids["genpipe"], fids["diffusers"], strict=True)]
    speeds = {name: statistics.fmean(speed for speed, _ in runs) for name, runs in results.items()}
    lines = [
        f"### CPU, {_now()} — {_machine()}",
        "",
        f"`python benchmarks/diffusion_bench.py --mode cpu --steps {steps} --seeds {seeds}`: the `tiny` preset's "
        f"shape on 8x8 digits (all 1,797), batch {batch}, fp32, 2 threads; each side's EMA sampled with the "
        f"ancestral sampler (all {DDPM.presets['tiny']['timesteps']} steps), {samples} samples scored against "
        "the digits; a seed sets the initialisation, the batch order and the sampling noise of both sides.",
        "",
        "| | parameters | images/s | classifier-FID (mean ± 95% CI) | per seed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("genpipe", "diffusers"):
        per_seed = " / ".join(f"{v:.2f}" for v in fids[name])
        lines.append(
            f"| {name} | {parameters[name] / 1e6:.3f}M | {speeds[name]:,.0f} | {interval(fids[name], 2)} | {per_seed} |"
        )
    lines += [
        "",
        f"- images/s ratio genpipe / diffusers: **{speeds['genpipe'] / speeds['diffusers']:.3f}**; classifier-FID "
        f"gap genpipe - diffusers per seed: {' / '.join(f'{g:+.2f}' for g in gaps)}, mean {interval(gaps, 2)}.",
        "",
    ]
    return lines


def profile_step(arm: Arm, data: torch.Tensor, batch: int) -> list[str]:
    """GPU time of a few compiled steps by kernel kind (top-level kernels only)."""
    from torch.profiler import ProfilerActivity, profile

    kinds = {
        "convolution": ("conv", "cudnn", "implicit_gemm", "sm90_xmma", "wgrad", "dgrad"),
        "attention": ("flash", "fmha", "attention", "sdpa"),
        "matmul": ("gemm", "nvjet", "cutlass", "matmul"),
        "optimizer + EMA": ("adam", "foreach", "lerp", "multi_tensor"),
        "normalization + elementwise (fused by Inductor)": ("triton", "norm", "elementwise", "vectorized"),
    }
    with torch.autocast("cuda", torch.bfloat16, enabled=arm.autocast):
        for _ in range(3):
            arm.step(data[:batch])
    torch.cuda.synchronize()
    with (
        profile(activities=[ProfilerActivity.CUDA]) as prof,
        torch.autocast("cuda", torch.bfloat16, enabled=arm.autocast),
    ):
        for _ in range(5):
            arm.step(data[:batch])
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.device_type.name != "CUDA" and not getattr(event, "self_device_time_total", 0):
            continue
        duration = getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)
        name = event.key.lower()
        kind = next((k for k, marks in kinds.items() if any(m in name for m in marks)), "other")
        totals[kind] = totals.get(kind, 0.0) + duration
    whole = sum(totals.values()) or 1.0
    return [
        f"  - {kind}: {value / whole:.0%} ({value / 5 / 1000:.1f} ms per step)"
        for kind, value in sorted(totals.items(), key=lambda item: -item[1])
    ]


def _pure_bf16_arm(*args, **kwargs) -> Arm:
    return genpipe_deepspeed_arm(*args, **kwargs, precision="bf16")


GPU_ARMS = {
    "deepspeed": genpipe_deepspeed_arm,
    "deepspeed-bf16": _pure_bf16_arm,
    "autocast": genpipe_arm,
    "diffusers": diffusers_arm,
}


def gpu_bench(steps: int, batches: list[int], arm_names: list[str]) -> list[str]:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    data = (torch.rand(8192, 3, 32, 32, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    lines = [
        f"### GPU, {_now()} — {torch.cuda.get_device_name()}, torch {torch.__version__}",
        "",
        f"`python benchmarks/diffusion_bench.py --mode gpu --steps {steps}`: the `cifar` preset's shape "
        "(DDPM's CIFAR-10 U-Net) at 32 px, bf16 autocast, torch.compile, channels-last, fused AdamW, EMA "
        "every step; images/s after the first 10% of steps.",
        "",
        "| batch | arm | images/s | vs diffusers |",
        "| --- | --- | --- | --- |",
    ]
    last: Arm | None = None
    for batch in batches:
        speeds = {}
        for name in arm_names:
            make = GPU_ARMS[name]
            extra = {"batch": batch} if name.startswith("deepspeed") else {}
            arm = make("cifar", (3, 32, 32), 2e-4, "cuda", True, True, **extra)
            speeds[arm.name] = images_per_second(arm, data, batch, steps, "cuda")
            print(
                f"  batch {batch} {arm.name}: {arm.parameters / 1e6:.2f}M params, {speeds[arm.name]:.0f} img/s",
                flush=True,
            )
            last = arm if name != "diffusers" else last
            torch.cuda.empty_cache()
        baseline = speeds.get("diffusers")
        for name, speed in speeds.items():
            ratio = f"**{speed / baseline:.3f}**" if baseline and name != "diffusers" else ""
            lines.append(f"| {batch} | {name} | {speed:,.0f} | {ratio} |")
    if last is not None:
        lines += ["", f"- Where {last.name}'s step spends its GPU time (batch {batches[-1]}, torch.profiler, 5 steps):"]
        lines += profile_step(last, data, batches[-1])
    return [*lines, ""]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "gpu"], required=True)
    parser.add_argument("--steps", type=int, default=None, help="cpu: 1500; gpu: 100")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="cpu: 64; gpu: 128 256")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3, help="cpu: seeds of both arms")
    parser.add_argument("--arms", default="deepspeed,autocast,diffusers", help="gpu: which steps to time")
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.mode == "cpu":
        lines = cpu_bench(args.steps or 1500, (args.batch or [64])[0], args.samples, args.seeds)
    else:
        lines = gpu_bench(args.steps or 100, args.batch or [128, 256], args.arms.split(","))
    print("\n".join(lines))
    if args.record:
        with RESULTS.open("a") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
