"""`train.strategy: auto` shards only what memory needs sharded, says why, and the older
`zero_stage` spelling still reads."""

from __future__ import annotations

import pytest
import torch

import models
from pipelines.config import TrainConfig
from pipelines.config.errors import ConfigError
from pipelines.config.loading import load_config
from pipelines.train.strategy import choose, strategy_for, training_state_bytes

GIB = 2**30
AUTO = TrainConfig()


def test_a_model_that_fits_every_worker_is_not_sharded():
    chosen = choose(AUTO, world=2, parameters=1_000_000, memory=12 * GIB, precision="fp32")
    assert chosen.name == "ddp" and chosen.zero_stage == 0
    assert "1M parameters need 0.0149 GiB" in chosen.reason and "sharding would only add communication" in chosen.reason


@pytest.mark.parametrize(
    ("memory_gib", "expected"),
    [(80, "ddp"), (40, "zero1"), (16, "zero2"), (8, "zero3")],
)
def test_auto_shards_as_far_as_memory_needs(memory_gib, expected):
    """1.3B parameters in bf16 on 8 workers: 20.8 GB unsharded, 7.2 GB with the optimizer state
    sharded, 4.9 GB with the gradients too, 2.6 GB with everything; 40% of a worker's memory is theirs."""
    chosen = choose(AUTO, world=8, parameters=1_300_000_000, memory=memory_gib * GIB, precision="bf16")
    assert chosen.name == expected, chosen.reason


def test_a_model_too_big_even_sharded_says_what_to_do():
    chosen = choose(AUTO, world=2, parameters=10_000_000_000, memory=16 * GIB, precision="bf16")
    assert chosen.name == "zero3" and "offload" in chosen.reason


def test_the_config_decides_when_set_and_one_worker_never_shards():
    assert choose(TrainConfig(strategy="zero2"), 2, 1000, 8 * GIB, "fp32").name == "zero2"
    assert choose(TrainConfig(strategy="zero2"), 1, 1000, 8 * GIB, "fp32").name == "ddp"
    offload = TrainConfig(strategy="auto", offload_optimizer=True)
    assert choose(offload, 1, 1000, 8 * GIB, "fp32").name == "zero1"  # ZeRO-Offload needs ZeRO
    assert choose(TrainConfig(offload_params=True), 4, 1000, 8 * GIB, "bf16").name == "zero3"


def test_training_state_follows_the_zero_paper():
    """Section 3.1 of the ZeRO paper: 16 bytes a parameter with mixed-precision Adam; stage 3 on
    N workers holds 16/N."""
    assert training_state_bytes(1000, 0, 4, "bf16") == 16_000
    assert training_state_bytes(1000, 1, 4, "bf16") == 1000 * (2 + 2 + 3)
    assert training_state_bytes(1000, 3, 4, "bf16") == 4_000
    assert training_state_bytes(1000, 0, 4, "fp32") == 16_000


def test_a_family_counts_only_what_it_trains():
    model = models.build_model("ddpm", models.resolve_config("ddpm", "tiny", {}, {"image_shape": (1, 8, 8)}))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    chosen = strategy_for(AUTO, model, 2, 8 * GIB, on_gpu=False)
    assert chosen.name == "ddp" and f"{trainable / 1e6:.3g}M parameters" in chosen.reason
    assert torch.cuda.is_available() or "of its 8 GiB" in chosen.reason


def test_zero_stage_is_read_as_the_strategy_it_names():
    assert load_config("quickstart", ["train.zero_stage=0"]).train.strategy == "ddp"
    assert load_config("quickstart", ["train.zero_stage=3"]).train.strategy == "zero3"
    assert "zero_stage" not in load_config("quickstart", ["train.zero_stage=3"]).train.model_dump()
    with pytest.raises(ConfigError, match="train.zero_stage: 3 contradicts strategy zero2"):
        load_config("quickstart", ["train.strategy=zero2", "train.zero_stage=3"])
    with pytest.raises(ConfigError, match="train.offload_params: needs strategy zero3"):
        load_config("quickstart", ["train.strategy=zero2", "train.offload_params=true"])
