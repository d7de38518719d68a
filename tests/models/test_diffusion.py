"""Diffusion at scale, in process: the presets' sizes, both samplers, v-prediction's algebra, the
EMA, class and text conditioning with classifier-free guidance, and latent diffusion through a VAE."""

from __future__ import annotations

import pytest
import torch
from digit_data import IMAGES, LABELS, build, train_briefly
from sklearn.linear_model import LogisticRegression

import models
from models.base import parameter_count
from models.samplers import ddim_timesteps
from models.schedules import NoiseSchedule, targets, x0_and_eps


def preset_size(preset: str, image_shape: tuple[int, int, int]) -> int:
    config = models.resolve_config("ddpm", preset, {}, {"image_shape": image_shape})
    with torch.device("meta"):  # sizes without allocating 360M parameters
        return parameter_count(models.build_model("ddpm", config).parameters())


def test_presets_have_the_papers_shapes():
    assert round(preset_size("cifar", (3, 32, 32)) / 1e6, 1) == 35.7  # Ho et al. 2020, CIFAR-10
    assert preset_size("large", (3, 64, 64)) >= 300e6


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_prediction_reads_back_as_x0_and_noise(prediction):
    schedule = NoiseSchedule("cosine", 100)
    x0, noise = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    t = torch.tensor([0, 10, 40, 70, 98, 99])
    a = schedule.sqrt_alpha_bar[t].view(-1, 1, 1, 1)
    x_t = a * x0 + (1 - a**2).sqrt() * noise
    x0_back, noise_back = x0_and_eps(schedule, x_t, t, targets(schedule, x0, noise, t, prediction), prediction)
    torch.testing.assert_close(x0_back, x0, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(noise_back, noise, atol=2e-3, rtol=1e-3)


def test_ddim_visits_the_steps_asked_and_both_samplers_run():
    assert ddim_timesteps(1000, 20)[0] == 999 and ddim_timesteps(1000, 20)[-1] == 0
    assert len(ddim_timesteps(1000, 20)) == 20 and len(ddim_timesteps(10, 50)) == 10
    model = build("ddpm", timesteps=50).eval()
    for sampler, steps in [("ddim", 20), ("ancestral", None)]:
        images = model.sample(4, torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
        assert images.shape == (4, 1, 8, 8) and images.isfinite().all() and images.abs().max() <= 1
    deterministic = [model.sample(2, torch.Generator().manual_seed(s), sampler="ddim", steps=20) for s in (0, 0, 1)]
    assert torch.equal(deterministic[0], deterministic[1]) and not torch.equal(deterministic[0], deterministic[2])


def test_the_ema_trails_the_weights_and_is_what_gets_exported():
    model = build("ddpm", timesteps=50)
    train_briefly(model, 20, lr=2e-3, betas=(0.9, 0.999))
    assert model.ema.updates == 20
    raw = dict(model.unet.named_parameters())
    gaps = [float((model.ema.shadow[name] - p.detach()).abs().max()) for name, p in raw.items()]
    assert max(gaps) > 1e-4  # the average lags the weights
    exported = model.exported_state(model.state_dict())
    assert all(torch.equal(exported[f"unet.{name}"], model.ema.shadow[name]) for name in raw)
    # A resumed run takes its EMA back from the checkpoint's state.
    state = model.checkpoint_state()
    fresh = build("ddpm", timesteps=50)
    fresh.load_checkpoint_state(state)
    assert fresh.ema.updates == 20 and torch.equal(fresh.ema.shadow["head.2.weight"], model.ema.shadow["head.2.weight"])


def test_a_class_conditional_model_draws_the_class_it_is_asked_for():
    """300 steps (~20 s on one CPU core): guided DDIM samples of each class, read by a logistic
    regression on the real digits (97% on them), are the asked class far more often than chance."""
    model = build("ddpm", conditioning="class", timesteps=100)
    train_briefly(model, 300, lr=2e-3, betas=(0.9, 0.999))
    model.load_state_dict(model.exported_state(model.state_dict()))
    reader = LogisticRegression(max_iter=2000).fit(IMAGES.flatten(1).numpy(), LABELS.numpy())
    asked = torch.arange(100) % 10
    images = model.eval().sample(
        100, torch.Generator().manual_seed(0), labels=asked, sampler="ddim", steps=20, guidance_scale=3.0
    )
    accuracy = (reader.predict(images.flatten(1).numpy()) == asked.numpy()).mean()
    assert accuracy > 0.5, accuracy  # chance: 0.1


def test_the_prompt_reaches_the_cross_attention():
    model = build("ddpm", conditioning="text", timesteps=50).eval()

    def draw(prompt: str) -> torch.Tensor:
        return model.sample(2, torch.Generator().manual_seed(0), prompts=[prompt] * 2, sampler="ddim", steps=10)

    seven, again, three = draw("a handwritten seven"), draw("a handwritten seven"), draw("a handwritten three")
    assert torch.equal(seven, again) and not torch.allclose(seven, three)
    # With guidance off (scale 0 = the null prompt alone) the prompt no longer matters.
    unguided = [
        model.sample(2, torch.Generator().manual_seed(0), prompts=[p] * 2, sampler="ddim", steps=10, guidance_scale=0.0)
        for p in ("a handwritten seven", "a handwritten three")
    ]
    assert torch.equal(*unguided)


def test_captions_train_the_text_model_in_several_phrasings():
    model = build("ddpm", conditioning="text", timesteps=50, label_dropout=0.0)
    ids = model.training_condition(torch.full((64,), 7))
    assert len({tuple(row.tolist()) for row in ids}) > 3  # one class, several captions
    assert model.training_condition(torch.tensor([7])).shape == (1, model.config.max_prompt_tokens)


def test_the_latent_model_diffuses_in_the_vaes_space():
    vae = build("conv-vae").eval()
    spec = {"family": vae.family, "config": vae.config.model_dump(mode="json")}
    model = build("latent-ddpm", autoencoder="models:/digits-vae@champion", autoencoder_spec=spec)
    model.vae.load_state_dict(vae.state_dict())
    assert model.diffusion_shape() == (1, 4, 4)  # the VAE's 16-d code as a 4x4 map
    latents = model.encode(IMAGES[:8])
    assert latents.shape == (8, 1, 4, 4)
    torch.testing.assert_close(model.decode(latents), vae.decode(latents.flatten(1)))
    train_briefly(model, 3)
    assert all(p.grad is None for p in model.vae.parameters())  # frozen
    model.train()
    assert not model.vae.training  # its batch norms keep their statistics
    assert model.eval().sample(3, torch.Generator().manual_seed(0), sampler="ddim", steps=5).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="autoencoder"):
        build(
            "latent-ddpm",
            autoencoder="models:/x@champion",
            autoencoder_spec={"family": "dcgan", "config": build("dcgan").config.model_dump(mode="json")},
        )


def test_sample_options_name_what_does_not_fit():
    text, classes, plain = (build("ddpm", conditioning=c, timesteps=20) for c in ("text", "class", "none"))
    assert text.sample_options(3, prompt="a handwritten seven")["prompts"] == ["a handwritten seven"] * 3
    assert classes.sample_options(2, label="seven")["labels"].tolist() == [7, 7]
    assert classes.sample_options(2, label="3")["labels"].tolist() == [3, 3]
    for model, options, field in [
        (classes, {"prompt": "a seven"}, "^prompt: "),
        (plain, {"label": "7"}, "^label: "),
        (classes, {"label": "eleven"}, "^label: "),
        (text, {"steps": 0}, "^steps: "),
        (build("dcgan"), {"prompt": "a seven"}, "^prompt: "),
    ]:
        with pytest.raises(ValueError, match=field):
            model.sample_options(2, **options)
