"""StyleGAN: it learns on digits, and the parts of the recipe that are easy to get subtly wrong
(demodulation, style mixing, truncation, lazy R1, the EMA that is exported) are checked alone."""

from __future__ import annotations

import pytest
import torch
from digit_data import IMAGES, build, train_briefly

from models.stylegan import ModulatedConv2d, r1_penalty, resolution_doublings


def test_stylegan_learns_to_draw_digits():
    model = build("stylegan", ema_decay=0.0)
    data_mean = IMAGES.mean(0)
    before = (model.sample(256, torch.Generator().manual_seed(1)).mean(0) - data_mean).pow(2).mean()
    losses = train_briefly(model, 150, lr=2e-3, betas=(0.0, 0.99))
    after = (model.sample(256, torch.Generator().manual_seed(1)).mean(0) - data_mean).pow(2).mean()
    assert after < 0.5 * before, f"samples' mean image did not move towards the data's: {before:.3f} -> {after:.3f}"
    critic = losses["discriminator"]  # it learns to tell real from fake: below its starting loss
    assert sum(critic[-20:]) / 20 < sum(critic[:3]) / 3
    generated = model.sample(256, torch.Generator().manual_seed(2))
    assert generated.std(0).mean() > 0.1, "every sample alike: the generator collapsed"


def test_demodulation_makes_the_output_blind_to_the_style_scale():
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 4, 3, w_dim=16)
    x, w = torch.randn(2, 8, 6, 6), torch.randn(2, 16)
    base = conv(x, w)
    with torch.no_grad():  # a style 3x as large: demodulation divides it out again
        conv.affine.weight.mul_(3)
        conv.affine.bias.mul_(3)
    torch.testing.assert_close(conv(x, w), base, rtol=1e-4, atol=1e-5)
    assert 0.3 < base.std() < 3  # unit-variance input stays near unit variance


def test_style_mixing_switches_to_the_second_style_at_the_crossover():
    model = build("stylegan")  # noise strengths start at 0: the images are deterministic
    generator = model.generator
    num_ws = generator.synthesis.num_ws
    z, z_mix = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0))
    only_first = generator(z, z_mix, torch.full((4,), num_ws))
    only_second = generator(z, z_mix, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(only_first, generator(z, z, torch.zeros(4, dtype=torch.long)))
    torch.testing.assert_close(only_second, generator(z_mix, z_mix, torch.zeros(4, dtype=torch.long)))
    mixed = generator(z, z_mix, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(mixed, only_first) and not torch.allclose(mixed, only_second)


def test_truncation_zero_draws_the_average_style_for_every_latent():
    model = build("stylegan")
    samples = model.sample(6, torch.Generator().manual_seed(0), truncation=0.0)
    torch.testing.assert_close(samples, samples[:1].expand_as(samples))
    assert not torch.allclose(model.sample(6, torch.Generator().manual_seed(0))[0], samples[0])
    assert model.sample_options(4, truncation=0.5) == {"truncation": 0.5}
    with pytest.raises(ValueError, match="truncation"):
        model.sample_options(4, truncation=1.5)
    with pytest.raises(ValueError, match="^guidance: "):
        model.sample_options(4, guidance=2.0)


def test_r1_is_the_squared_gradient_norm_and_is_lazy():
    direction = torch.randn(64, generator=torch.Generator().manual_seed(0))

    def linear_critic(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ direction

    penalty = r1_penalty(linear_critic, IMAGES[:8])
    assert penalty.item() == pytest.approx(direction.pow(2).sum().item(), rel=1e-5)
    model = build("stylegan", r1_interval=4)
    due = []
    for step in range(8):
        model.start_step(step)
        due.append(model.r1_due())
    assert due == [True, False, False, False, True, False, False, False]


def test_the_generators_ema_is_what_is_exported_and_checkpointed():
    model = build("stylegan", ema_decay=0.9)
    train_briefly(model, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    exported = model.exported_state(state)
    averaged = dict(model.ema.shadow)
    name = next(iter(averaged))
    torch.testing.assert_close(exported[f"generator.{name}"], averaged[name])
    assert not torch.equal(exported[f"generator.{name}"], state[f"generator.{name}"])
    restored = build("stylegan", ema_decay=0.9)
    restored.load_checkpoint_state(model.checkpoint_state())
    assert restored.ema.updates == model.ema.updates == 3


@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 16, 8), (1, 2, 2)])
def test_stylegan_refuses_sizes_it_cannot_draw(shape):
    with pytest.raises(ValueError, match="^image_shape: stylegan draws square images"):
        resolution_doublings(shape)
