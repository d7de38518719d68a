"""CycleGAN: on digits (A) and inverted digits (B), two unpaired domains whose true translation is
known, it learns to translate both ways far better than the identity; its losses and image pool
do what the paper says."""

from __future__ import annotations

import pytest
import torch
from digit_data import IMAGES, LABELS, build, train_briefly

from models.cyclegan import ImagePool


def unpaired_digits() -> dict[str, torch.Tensor]:
    """Half the digits as they are (A), the other half inverted (B): no digit in both."""
    domain = torch.arange(len(IMAGES)) % 2
    images = torch.where(domain[:, None, None, None] == 1, -IMAGES, IMAGES)
    return {"image": images, "label": LABELS, "domain": domain}


def l1_to_truth(model, direction: str) -> float:
    source = IMAGES[:200] if direction == "a2b" else -IMAGES[:200]
    translated = model.sample(200, inputs=source, direction=direction)
    return float((translated - (-source)).abs().mean())


def test_cyclegan_learns_the_unknown_translation_both_ways():
    # No identity loss: it asks a generator to leave B images alone, which inversion never does.
    model = build("cyclegan", identity_weight=0.0)
    identity = float((IMAGES[:200] - (-IMAGES[:200])).abs().mean())  # the trivial baseline
    before = {d: l1_to_truth(model, d) for d in ("a2b", "b2a")}
    losses = train_briefly(model, 120, lr=2e-3, columns=unpaired_digits())
    after = {d: l1_to_truth(model, d) for d in ("a2b", "b2a")}
    for direction in ("a2b", "b2a"):
        assert after[direction] < min(0.5 * before[direction], 0.25 * identity), (direction, before, after, identity)
    generator = losses["generator_ab"]
    assert sum(generator[-10:]) < sum(generator[:10])


def test_batches_of_one_domain_teach_nothing_and_break_nothing():
    model = build("cyclegan")
    only_a = {"image": IMAGES[:8], "label": LABELS[:8], "domain": torch.zeros(8, dtype=torch.long)}
    for name in model.networks():
        loss = model.loss(name, only_a)
        loss.backward()
        assert loss.item() == 0
    with pytest.raises(ValueError, match="^family: cyclegan trains on two domains"):
        model.loss("generator_ab", {"image": IMAGES[:8], "label": LABELS[:8]})


def test_the_image_pool_shows_half_new_half_past_once_full():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0)[:, None]
    torch.testing.assert_close(pool.query(first), first)  # filling: each new image is shown
    fresh = torch.arange(100.0, 500.0)[:, None]
    shown = pool.query(fresh)
    new = (shown == fresh).float().mean()  # the rest is an image from an earlier call
    assert 0.4 < new < 0.6 and len(pool.images) == 4
    assert ImagePool(0).query(first) is first


def test_translation_options_are_checked():
    model = build("cyclegan")
    options = model.sample_options(2, input=IMAGES[:2].tolist(), direction="b2a")
    assert options["direction"] == "b2a" and options["inputs"].shape == (2, 1, 8, 8)
    assert model.sample(2, **options).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="^input: "):
        model.sample_options(2)
    with pytest.raises(ValueError, match="^input: images of 1x8x8"):
        model.sample_options(1, input=torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="^direction: "):
        model.sample_options(2, input=IMAGES[:2], direction="sideways")
    with pytest.raises(ValueError, match="^n: 3 samples asked for 2"):
        model.sample_options(3, input=IMAGES[:2])
