"""The likelihood families: PixelCNN sees only the pixels before each one, every flow layer inverts
and counts its log-determinant exactly, the recurrent models cut gradients where truncated BPTT
says, and each family learns digits (or text) beyond the trivial baseline."""

from __future__ import annotations

import math

import pytest
import torch
from digit_data import IMAGES, LABELS, build, train_briefly

from models import build_model, resolve_config
from models.flows import ActNorm, AffineCoupling, InvertibleConv1x1, Squeeze
from models.likelihood import from_levels, to_levels

UNIFORM_BITS = math.log2(17)  # digits: 17 ink levels
HELD_OUT = IMAGES[1500:]


def test_levels_round_trip_the_digits_exactly():
    levels = to_levels(IMAGES, 17)
    assert levels.min() == 0 and levels.max() == 16
    torch.testing.assert_close(from_levels(levels, 17), IMAGES)


@pytest.mark.parametrize("row, column", [(0, 0), (3, 4), (7, 7)])
def test_pixelcnn_sees_only_the_pixels_before_each_one(row, column):
    model = build("pixelcnn")
    images = torch.randn(1, 1, 8, 8, requires_grad=True)
    model.pixelcnn(images)[0, :, 0, row, column].sum().backward()
    seen = images.grad[0, 0].abs() > 0
    position = torch.arange(64).view(8, 8)
    assert not seen[position >= row * 8 + column].any(), "a pixel's logits depend on itself or a later pixel"
    if row >= 1 and column + 2 < 8:  # no blind spot: the pixel up and to the right is seen
        assert seen[row - 1, column + 2]
    if (row, column) != (0, 0):
        assert seen[position < row * 8 + column].any()


def test_pixelcnn_learns_digits_below_the_uniform_bits_per_dim():
    model = build("pixelcnn", channels=16, layers=3)
    with torch.no_grad():
        untrained = model.bits_per_dim(HELD_OUT).mean()
    train_briefly(model, 60, lr=3e-3, betas=(0.9, 0.999))
    with torch.no_grad():
        trained = model.bits_per_dim(HELD_OUT).mean()
    assert untrained > 0.95 * UNIFORM_BITS and trained < 0.75 * UNIFORM_BITS, (untrained, trained)
    samples = model.sample(4, torch.Generator().manual_seed(0), temperature=0.9)
    assert torch.equal(samples, from_levels(to_levels(samples, 17), 17)), "samples are discrete levels"


def _trained(layer: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """A layer moved off its identity initialisation, so inverses and determinants are tested on
    a map that does something."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    layer.train()
    layer(x, torch.zeros(len(x)))  # actnorm initialises from this batch
    return layer.eval()


@pytest.mark.parametrize(
    "make",
    [
        lambda: AffineCoupling(4, 8, "checkerboard", 0),
        lambda: AffineCoupling(4, 8, "checkerboard", 1),
        lambda: AffineCoupling(4, 8, "channel", 1),
        lambda: ActNorm(4),
        lambda: InvertibleConv1x1(4),
        lambda: Squeeze(),
    ],
    ids=["checkerboard", "checkerboard-odd", "channel-odd", "actnorm", "conv1x1", "squeeze"],
)
def test_flow_layers_invert_and_count_their_log_determinant(make):
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer = _trained(make().double(), x)
    y, log_det = layer(x, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(layer.inverse(y, 1.0, None), x, rtol=1e-5, atol=1e-5)  # (1x1 conv: inverted in fp32)
    for i in range(3):  # the Jacobian of one image's 16 numbers, by autograd
        jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None], torch.zeros(1))[0].flatten(), x[i])
        expected = torch.linalg.slogdet(jacobian.reshape(16, 16))[1]
        torch.testing.assert_close(log_det[i].double(), expected, rtol=1e-5, atol=1e-5)  # 1x1 conv: slogdet in fp32


def test_actnorm_starts_from_the_first_batch_at_zero_mean_and_unit_variance():
    layer = ActNorm(3).train()
    x = 5 + 3 * torch.randn(64, 3, 4, 4)
    y, _ = layer(x, torch.zeros(64))
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)
    second, _ = layer(x + 100, torch.zeros(64))  # initialised once: a later batch is not re-fit
    assert second.mean() > 10
    assert "data_bias" in layer.state_dict() and "initialised" in layer.state_dict()  # survives checkpoints


@pytest.mark.parametrize("family", ["realnvp", "glow"])
def test_flows_learn_digits_below_the_uniform_bits_per_dim(family):
    model = build(family)
    train_briefly(model, 120, lr=1e-3, betas=(0.9, 0.999))
    model.eval()
    with torch.no_grad():
        bits = model.bits_per_dim(HELD_OUT, torch.Generator().manual_seed(0)).mean()
    assert bits < 0.8 * UNIFORM_BITS, bits
    cold, warm = (model.sample(64, torch.Generator().manual_seed(0), temperature=t) for t in (0.3, 1.0))
    assert cold.std(0).mean() < warm.std(0).mean(), "a colder prior gives less varied samples"
    with pytest.raises(ValueError, match="temperature"):
        model.sample_options(4, temperature=-1)


def test_a_flow_refuses_an_image_it_cannot_halve():
    with pytest.raises(ValueError, match="not a square side divisible by 8: fewer scales or another image size"):
        resolve_config("glow", "tiny", {"scales": 3}, {"image_shape": (1, 12, 12)})


def _language_model(family: str, **params) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(family, resolve_config(family, "tiny", {"hidden": 32, **params}, {"vocab_size": 50}))


def _gradient_reaching_the_first_tokens(bptt: int) -> float:
    """How much gradient from the last prediction reaches the embeddings of tokens 0-3."""
    model = _language_model("lstm", bptt=bptt).train()
    windows: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        windows.append(out)

    model.recurrent.embedding.register_forward_hook(keep)
    logits, _ = model.recurrent(torch.arange(12)[None])
    logits[0, -1].sum().backward()
    return float(windows[0].grad[0, :4].abs().sum())


def test_truncated_backpropagation_cuts_the_gradient_between_windows():
    assert _gradient_reaching_the_first_tokens(bptt=4) == 0  # three windows: the first is cut off
    assert _gradient_reaching_the_first_tokens(bptt=12) > 0  # one window: it reaches back


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_recurrent_models_learn_text_and_generate_from_their_state(family):
    model = _language_model(family)
    text = torch.tensor([i % 7 for i in range(2000)])  # a cycle of 7 tokens
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        starts = torch.randint(0, len(text) - 33, (16,))
        loss = model.loss("recurrent", {"tokens": torch.stack([text[s : s + 33] for s in starts])})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * math.log(50), loss
    model.eval()
    out = model.generate(torch.tensor([[3, 4, 5]]), 10, temperature=0)
    assert out[0].tolist() == [(3 + i) % 7 for i in range(13)]
    # The carried state gives what a pass over the whole text gives.
    whole, _ = model.recurrent(out[:, :-1])
    assert whole[0, -1].argmax() == out[0, -1]


def test_ebm_lowers_the_energy_of_data_and_its_samples_move_towards_it():
    model = build("ebm", sgld_steps=10, sample_steps=40, channels=16)
    mean = IMAGES.mean(0)
    before = (model.sample(64, torch.Generator().manual_seed(0)).mean(0) - mean).pow(2).mean()
    train_briefly(model, 100, lr=1e-3, betas=(0.0, 0.999))
    after = (model.sample(64, torch.Generator().manual_seed(0)).mean(0) - mean).pow(2).mean()
    assert after < 0.5 * before, (before, after)
    noise = torch.rand(100, 1, 8, 8) * 2 - 1
    assert model.energy(HELD_OUT[:100]).mean() < model.energy(noise).mean() - 0.5
    assert model.checkpoint_state()["replay"].shape == (2000, 1, 8, 8)


def test_jem_is_also_a_classifier():
    model = build("jem", sgld_steps=5)
    train_briefly(model, 100, lr=1e-3, betas=(0.0, 0.999))
    metrics = model.evaluation_metrics(HELD_OUT, 1, torch.Generator(), LABELS[1500:])
    assert metrics["eval/class_accuracy"] > 0.5, metrics


def test_the_ddpm_bound_sums_every_step_and_tightens_with_training():
    from models.diffusion_bound import variational_bound_nats

    model = build("ddpm", timesteps=20, ema_decay=0.0)
    images = HELD_OUT[:64]

    def bound(draws: int, seed: int) -> float:
        return float(variational_bound_nats(model, images, 17, draws, torch.Generator().manual_seed(seed)).mean())

    every_step = bound(19, 0)
    sampled = sum(bound(4, seed) for seed in range(6)) / 6  # unbiased: near the full sum
    assert sampled == pytest.approx(every_step, rel=0.15)
    train_briefly(model, 80, lr=2e-3, betas=(0.9, 0.999))
    trained = bound(19, 0)
    assert trained < 0.8 * every_step, (every_step, trained)
