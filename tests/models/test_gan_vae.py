"""The GAN and autoencoder families: each learns in the right direction on digits, and the maths
the zoos get wrong (the WGAN-GP penalty, the ELBO's units, the KL weight) is checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from digit_data import IMAGES, LABELS, build, train_briefly

import models
from models.autoencoders import VAE, gaussian_kl
from models.gan import GAN, gradient_penalty

GAN_FAMILIES = ["gan", "dcgan", "cgan", "wgan-gp"]
AUTOENCODER_FAMILIES = ["vae", "conv-vae", "beta-vae", "dae", "sparse-ae"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("family", GAN_FAMILIES)
def test_a_gan_learns_to_fool_its_discriminator(family):
    model = build(family, **({"n_critic": 2} if family == "wgan-gp" else {}))
    data_mean = IMAGES.mean(0)
    before = (model.sample(256, torch.Generator().manual_seed(1)).mean(0) - data_mean).pow(2).mean()
    losses = train_briefly(model, 120)
    after = (model.sample(256, torch.Generator().manual_seed(1)).mean(0) - data_mean).pow(2).mean()
    assert after < 0.5 * before, f"samples' mean image did not move towards the data's: {before:.3f} -> {after:.3f}"
    critic = losses["discriminator"]
    if family == "wgan-gp":  # the critic separates real from fake: its loss (-W + penalty) falls below 0
        assert mean(critic[-20:]) < min(0.0, mean(critic[:5]))
    else:  # the discriminator starts at chance, log 4, and learns to tell them apart
        assert abs(mean(critic[:3]) - math.log(4)) < 0.2 and mean(critic[-20:]) < math.log(4)


@pytest.mark.parametrize("family", AUTOENCODER_FAMILIES)
def test_an_autoencoder_loss_falls(family):
    model = build(family)
    losses = train_briefly(model, 80)["autoencoder"]
    assert mean(losses[-10:]) < 0.8 * mean(losses[:10])
    samples = model.sample(16, torch.Generator().manual_seed(0))
    assert samples.shape == (16, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    reconstructions = model.reconstruct(IMAGES[:32])
    assert (reconstructions - IMAGES[:32]).pow(2).mean() < (IMAGES[:32] - IMAGES.mean()).pow(2).mean()


class UnitSlopeCritic(torch.nn.Module):
    """f(x) = scale * <w, x> with ||w|| = 1: its gradient norm is `scale` everywhere."""

    def __init__(self, scale: float):
        super().__init__()
        direction = torch.randn(64, generator=torch.Generator().manual_seed(0))
        self.w = direction / direction.norm() * scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.w


def test_wgan_gp_penalty_is_zero_for_a_1_lipschitz_critic():
    real, fake = IMAGES[:32], torch.rand(32, 1, 8, 8) * 2 - 1
    assert gradient_penalty(UnitSlopeCritic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(UnitSlopeCritic(3.0), real, fake).item() == pytest.approx(4.0, rel=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_is_reconstruction_plus_kl_per_image(likelihood):
    model = build("vae", latent_dim=3, width=16, depth=1, likelihood=likelihood, sigma=0.5)
    images, noise = IMAGES[:4], torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    encoder, decoder = model.autoencoder.encoder, model.autoencoder.decoder
    mean_, log_var = encoder(images).chunk(2, dim=1)
    output = decoder(mean_ + torch.exp(0.5 * log_var) * noise).flatten(1)
    pixels = images.flatten(1)
    if likelihood == "bernoulli":  # pixels mapped to [0, 1]; summed over the 64 pixels, not averaged
        p, target = torch.sigmoid(output), (pixels + 1) / 2
        by_hand_reconstruction = (target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum(1)
    else:
        by_hand_reconstruction = (
            -0.5 * ((pixels - output) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        ).sum(1)
    by_hand_kl = 0.5 * (mean_**2 + log_var.exp() - 1 - log_var).sum(1)  # summed over the 3 latents
    reconstruction, kl = model.elbo_terms(images, noise)
    assert torch.allclose(reconstruction, by_hand_reconstruction, atol=1e-4)
    assert torch.allclose(kl, by_hand_kl, atol=1e-6)
    assert torch.allclose(
        model.elbo(images, torch.Generator().manual_seed(0)), by_hand_reconstruction - by_hand_kl, atol=1e-4
    )
    # The training loss is the batch mean of -ELBO per image (beta = 1).
    assert model.loss("autoencoder", {"image": images}).shape == ()


def test_importance_weighted_nll_is_the_elbo_at_one_sample_and_tighter_with_more():
    model = build("vae")
    train_briefly(model, 30)
    images = IMAGES[:256]
    negative_elbo = -model.elbo(images, torch.Generator().manual_seed(3)).mean()
    # k = 1 is a one-sample (Monte Carlo KL) estimate of the same -ELBO; k = 64 is a tighter bound.
    one = model.importance_weighted_nll(images, 1, torch.Generator().manual_seed(4)).mean()
    assert abs(one - negative_elbo) < 0.02 * negative_elbo
    many = model.importance_weighted_nll(images, 64, torch.Generator().manual_seed(3)).mean()
    assert many < negative_elbo


def test_beta_vae_weights_the_whole_kl_and_warms_it_up():
    model = build("beta-vae", kl_warmup_steps=100)
    assert isinstance(model, VAE) and model.config.beta == 4.0
    model.start_step(0)
    assert model.kl_weight() == pytest.approx(4.0 / 100)
    model.start_step(49)
    assert model.kl_weight() == pytest.approx(2.0)
    model.start_step(500)
    assert model.kl_weight() == 4.0
    assert gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)).tolist() == [0.0, 0.0]


def test_sparse_autoencoder_kl_penalty_vanishes_at_the_target():
    model = build("sparse-ae", sparsity="kl", sparsity_target=0.1)
    assert model.sparsity_penalty(torch.full((8, 4), 0.1)).item() == pytest.approx(0.0, abs=1e-6)
    assert model.sparsity_penalty(torch.full((8, 4), 0.5)).item() > 0.5


def test_conditional_gan_draws_the_class_it_is_given():
    model = build("cgan")
    assert isinstance(model, GAN) and model.conditional
    z = torch.randn(1, model.config.latent_dim).repeat(10, 1)
    images = model.decode(z, torch.arange(10))
    assert not torch.allclose(images[0], images[1])  # same z, another label, another image
    assert model.requested_labels(12, torch.device("cpu")).tolist() == [*range(10), 0, 1]
    with pytest.raises(ValueError, match="labelled data"):
        models.build_model("cgan", models.resolve_config("cgan", "tiny", {}, {"image_shape": (1, 8, 8)}))


def test_generator_step_leaves_the_discriminator_gradients_empty():
    model = build("dcgan")
    model.loss("generator", {"image": IMAGES[:8], "label": LABELS[:8]}).backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None for p in model.generator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_bce_matches_the_minimax_value_at_chance():
    """A discriminator that outputs 0 logits scores log 4, the minimax game's value at the optimum."""
    zeros = torch.zeros(8)
    loss = F.binary_cross_entropy_with_logits(zeros, torch.ones(8)) + F.binary_cross_entropy_with_logits(
        zeros, torch.zeros(8)
    )
    assert loss.item() == pytest.approx(math.log(4))
