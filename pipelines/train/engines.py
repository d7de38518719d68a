"""DeepSpeed engines for a model's networks, built from the `train:` section: one per network."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from models.base import GenerativeModel
from pipelines.config import TrainConfig
from pipelines.train.ops import skip_the_inference_collective_op


def precision_mode(config: TrainConfig, on_gpu: bool, preferred: str = "bf16") -> str:
    """fp32 on CPU by default (bf16 kernels are slow or missing there); on GPUs the model's
    preference: bf16 weights (transformers) or fp32 weights under bf16 autocast (U-Nets)."""
    if config.precision == "auto":
        return preferred if on_gpu else "fp32"
    return config.precision


def zero3_working_set(parameters: int) -> dict[str, int]:
    """How much of a network ZeRO-3 keeps gathered and buffers at once, from its size.

    DeepSpeed's defaults (up to 1e9 parameters live, 5e8-element reduce buckets) are made for
    GPUs with room to spare: a 361M U-Net stayed whole on every rank while it computed, so
    sharding saved nothing where it is needed (2 CPU ranks of the DDPM `large` preset at batch 1:
    11.3 GiB peak each with the defaults, 8.1 GiB and 44 -> 30 s a step with an eighth of the
    model live and a sixteenth per bucket; benchmarks/RESULTS.md, "ZeRO-3's working set"). Capped at DeepSpeed's
    defaults, so a larger model is where it was; Hugging Face's "auto" sizes are smaller still."""
    live = min(10**9, max(10**6, parameters // 8))
    bucket = max(10**6, parameters // 16)
    return {
        "stage3_max_live_parameters": live,
        "stage3_max_reuse_distance": live,
        "stage3_prefetch_bucket_size": min(5 * 10**7, bucket),
        "reduce_bucket_size": min(5 * 10**8, bucket),
    }


def deepspeed_config(
    config: TrainConfig,
    zero_stage: int,
    on_gpu: bool,
    preferred_precision: str = "bf16",
    universal: bool = False,
    parameters: int = 0,
) -> dict[str, Any]:
    """`universal`: the engine will load a universal checkpoint (a regrouped resume).
    `parameters`: the network's size, which sizes ZeRO-3's working set."""
    precision = precision_mode(config, on_gpu, preferred_precision)
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        zero.update(zero3_working_set(parameters))
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if config.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    return {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum_steps,
        "gradient_clipping": config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "torch_autocast": {"enabled": precision == "bf16-autocast", "dtype": "bfloat16"},
        # A torch optimizer is passed in (no `optimizer.type`): on CPU that spares the ~75 s JIT
        # build of DeepSpeed's fused_adam; ZeRO wraps torch's AdamW as it is.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "checkpoint": {"load_universal": universal},
    }


def lr_multiplier(total_steps: int, warmup_steps: int, floor: float = 0.1, shape: str = "cosine"):
    """LR multiplier: linear warm-up, then cosine decay to `floor` of the peak; or (`shape`
    "linear", CycleGAN's recipe) the peak for the first half and a straight line to 0."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if shape == "linear":
            return min(1.0, 2 * (1 - progress))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def build_engine(
    network: nn.Module,
    config: TrainConfig,
    zero_stage: int,
    total_steps: int,
    on_gpu: bool,
    preferred_precision: str = "bf16",
    universal: bool = False,
):
    import deepspeed

    skip_the_inference_collective_op()  # before the engine starts DeepSpeed's communication backend
    # Decay matrices only: biases, norms' gains and the like stay undecayed (as in GPT-2).
    trainable = [p for p in network.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    betas = (config.adam_beta1, config.adam_beta2)
    if config.offload_optimizer:
        # The optimizer step runs on the CPU: DeepSpeed's vectorised CPU Adam (built on first use)
        # is the one ZeRO-Offload is made for; torch's AdamW there would be several times slower.
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(groups, lr=config.learning_rate, betas=betas, adamw_mode=True)
    else:
        # Fused kernels on GPUs; on CPU the multi-tensor (foreach) path, which torch does not pick
        # for CPU tensors by itself: one call over all parameters instead of a Python loop of them.
        fused = {"fused": True} if on_gpu else {"foreach": True}
        optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, betas=betas, **fused)
    multiplier = lr_multiplier(total_steps, config.warmup_steps, shape=config.lr_schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    engine, _, _, _ = deepspeed.initialize(
        model=network,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(
            config, zero_stage, on_gpu, preferred_precision, universal, sum(p.numel() for p in trainable)
        ),
    )
    _trim_per_step_work(engine)
    return engine


def _trim_per_step_work(engine: Any) -> None:
    """Two things DeepSpeed does every step that its engine's own settings cannot turn off:
    - one worker all-reduces its gradients with itself (flattened and copied back: 4% of a tiny
      model's CPU step); under ZeRO (a one-worker group resuming a ZeRO checkpoint) that reduction
      is what fills the optimizer's gradient partitions, so it stays;
    - unsharded fp32 gradients are clipped by a Python loop over the parameters followed by a
      collective over the group; they are already reduced and equal on every rank, so torch's
      multi-tensor clip gives the same result with no collective. DeepSpeed calls it at the same
      point and under the same conditions (not bf16/fp16, no ZeRO), so only the body changes."""
    import torch.distributed as dist

    if dist.get_world_size() == 1 and engine.zero_optimization_stage() == 0:
        engine.enable_backward_allreduce = False  # (ZeRO's own reduction fills its gradient partitions)

    def clip_fp32_gradients() -> None:
        torch.nn.utils.clip_grad_norm_(engine.module.parameters(), engine.gradient_clipping(), foreach=True)

    engine.clip_fp32_gradients = clip_fp32_gradients


def full_state_dict(model: nn.Module, zero_stage: int) -> dict[str, torch.Tensor]:
    """The whole model's weights in fp32. Under ZeRO-3 each rank holds a slice of every
    parameter, so they are gathered first (a collective: every rank must call this)."""
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            return {k: _cpu_fp32(v) for k, v in model.state_dict().items()}
    return {k: _cpu_fp32(v) for k, v in model.state_dict().items()}


def _cpu_fp32(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).clone()


def stretch_schedules(model: GenerativeModel, engines: dict[str, Any], train: TrainConfig, total_steps: int) -> None:
    """Give the engines' LR schedules a new length (`total_steps` optimizer steps), from the step
    they are at: a run whose length is a time budget learns its rate as it goes."""
    for name, engine in engines.items():
        steps = total_steps * model.updates_per_step(name)
        multiplier = lr_multiplier(steps, train.warmup_steps, shape=train.lr_schedule)
        engine.lr_scheduler.lr_lambdas = [multiplier] * len(engine.lr_scheduler.lr_lambdas)


def build_engines(
    model: GenerativeModel, train: TrainConfig, zero_stage: int, total_steps: int, on_gpu: bool, universal: bool = False
) -> dict[str, Any]:
    """One DeepSpeed engine (and optimizer, LR schedule) per network, routed into the model, all
    at the group's ZeRO stage. A network updated several times per step (a WGAN critic) has that
    many more scheduler steps. `universal`: the engines will load a universal checkpoint."""
    engines = {}
    for name, network in model.networks().items():
        steps = total_steps * model.updates_per_step(name)
        engine = build_engine(network, train, zero_stage, steps, on_gpu, model.gpu_precision, universal)
        if train.compile:
            engine.compile()
        model.use_network(name, engine)
        engines[name] = engine
    return engines
