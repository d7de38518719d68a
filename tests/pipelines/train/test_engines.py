"""A DeepSpeed engine, with the per-step work genpipe trims from it (engines.py), takes the same
optimizer steps as plain PyTorch: AdamW with the same groups, gradients clipped the same way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.config import TrainConfig
from pipelines.train.engines import build_engine, lr_multiplier


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3))


def batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=generator), torch.randn(8, 3, generator=generator)) for _ in range(count)]


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])  # 0.05: every step is clipped
def test_the_engine_steps_as_plain_pytorch_does(grad_clip, process_group):
    train = TrainConfig(learning_rate=1e-2, weight_decay=0.1, grad_clip=grad_clip, grad_accum_steps=2)
    data = batches(8)

    plain = network()
    groups = [
        {"params": [p for p in plain.parameters() if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in plain.parameters() if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(4, 0))
    for step in range(4):
        for x, y in data[2 * step : 2 * step + 2]:
            (nn.functional.mse_loss(plain(x), y) / 2).backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(plain.parameters(), grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()

    engine = build_engine(network(), train, zero_stage=0, total_steps=4, on_gpu=False)
    assert engine.enable_backward_allreduce is False  # one worker: nothing to reduce
    for x, y in data:
        engine.backward(nn.functional.mse_loss(engine(x), y))
        engine.step()
    assert engine.global_steps == 4
    for ours, theirs in zip(engine.module.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_the_linear_schedule_holds_the_peak_for_half_the_run_then_falls_to_zero():
    multiplier = lr_multiplier(100, 10, shape="linear")
    assert [multiplier(step) for step in (0, 9)] == [0.1, 1.0]  # warm-up
    assert multiplier(10) == multiplier(55) == 1.0
    assert multiplier(77) == pytest.approx(2 * (1 - 67 / 90)) and multiplier(100) == 0.0
    cosine = lr_multiplier(100, 0)
    assert cosine(0) == 1.0 and cosine(100) == pytest.approx(0.1)
