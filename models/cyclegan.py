"""CycleGAN (Zhu et al. 2017): unpaired translation between two image domains.

Two generators (A->B and B->A, ResNet generators with instance norm) and two PatchGAN
discriminators, each its own network (so its own DeepSpeed engine and optimizer), trained with the
least-squares adversarial loss, the cycle-consistency loss (A->B->A and B->A->B give the input
back) and the identity loss (a generator leaves an image already in its target domain alone). The
discriminators see generated images from a pool of past ones (Shrivastava et al. 2017), which
damps the oscillation between the two players.

Each generator's loss holds every term the joint CycleGAN objective has for its parameters: the
other generator runs frozen inside the cycle, and the loop steps A->B, then B->A, then the
discriminators (the second generator sees the first's new weights: a sequential update of the
joint loss, where the paper steps both at once).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from models.base import GenerativeModel, ModelConfig
from models.gan import frozen
from typed_errors import FieldError, OptionError

DIRECTIONS = ("a2b", "b2a")


class CycleGANConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    width: int = Field(32, gt=0, description="channels of the generators' first layer and the discriminators'")
    downsamplings: int = Field(1, ge=0, description="stride-2 layers before the residual blocks (2 in the paper)")
    residual_blocks: int = Field(3, gt=0, description="9 in the paper at 256 px")
    discriminator_layers: int = Field(2, gt=0, description="stride-2 layers of the PatchGAN (3 in the paper)")
    cycle_weight: float = Field(10.0, ge=0, description="lambda of the cycle-consistency loss")
    identity_weight: float = Field(0.5, ge=0, description="the identity loss, as a share of cycle_weight")
    pool_size: int = Field(50, ge=0, description="past generated images the discriminators also see (0: none)")


def norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image -> image of the same shape: a 7x7 conv, stride-2 downsamplings, residual blocks,
    transposed-conv upsamplings, a 7x7 conv to the image channels and tanh."""

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        channels, height, _ = config.image_shape
        if height % (2**config.downsamplings):
            raise FieldError("downsamplings", f"{height}px cannot be halved {config.downsamplings} times")
        width = config.width
        pad = min(3, height - 1)  # reflection needs a pad below the side (a 7x7 conv on 8 px works)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(pad),
            nn.Conv2d(channels, width, 2 * pad + 1),
            norm(width),
            nn.ReLU(),
        ]
        for _ in range(config.downsamplings):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), norm(2 * width), nn.ReLU()]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(config.residual_blocks)]
        for _ in range(config.downsamplings):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                norm(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(pad), nn.Conv2d(width, channels, 2 * pad + 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class PatchDiscriminator(nn.Module):
    """Image -> a map of real-vs-fake scores, one per overlapping patch (PatchGAN)."""

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        channels, height, _ = config.image_shape
        if height % (2**config.discriminator_layers):
            raise FieldError("discriminator_layers", f"{height}px cannot be halved {config.discriminator_layers} times")
        width = config.width
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(config.discriminator_layers - 1):
            layers += [nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), norm(2 * width), nn.LeakyReLU(0.2)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class ImagePool:
    """The last `size` generated images of a domain: half of what a discriminator is shown comes
    from it (a random past image, replaced by the new one), the rest is new."""

    def __init__(self, size: int):
        self.size = size
        self.images: torch.Tensor | None = None

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        shown = []
        for fake in fakes.detach():
            if self.images is None or len(self.images) < self.size:
                stored = fake[None] if self.images is None else torch.cat([self.images, fake[None]])
                self.images = stored
                shown.append(fake)
            elif torch.rand(()) < 0.5:
                slot = int(torch.randint(self.size, ()))
                shown.append(self.images[slot].clone())
                self.images[slot] = fake
            else:
                shown.append(fake)
        return torch.stack(shown)


class CycleGAN(GenerativeModel):
    """See the module docstring. Batches carry `domain` (0: A, 1: B): data.source kind `domains`."""

    config: CycleGANConfig

    family = "cyclegan"
    config_class = CycleGANConfig
    translates = True
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"width": 16, "downsamplings": 1, "residual_blocks": 2, "discriminator_layers": 2},
        "small": {"width": 32, "downsamplings": 1, "residual_blocks": 4, "discriminator_layers": 2},
        "base": {"width": 64, "downsamplings": 2, "residual_blocks": 6, "discriminator_layers": 3},  # 32 px and up
    }

    def __init__(self, config: CycleGANConfig):
        super().__init__(config)
        self.generator_ab = ResnetGenerator(config)
        self.generator_ba = ResnetGenerator(config)
        self.discriminator_a = PatchDiscriminator(config)
        self.discriminator_b = PatchDiscriminator(config)
        self.pools = [ImagePool(config.pool_size), ImagePool(config.pool_size)]
        self._latest_fakes: dict[int, torch.Tensor] = {}  # this step's generated images, by domain
        self._recent_inputs: torch.Tensor | None = None  # real A images: what live sample grids translate

    def networks(self) -> dict[str, nn.Module]:
        return {
            "generator_ab": self.generator_ab,
            "generator_ba": self.generator_ba,
            "discriminator_a": self.discriminator_a,
            "discriminator_b": self.discriminator_b,
        }

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """The sample metrics and label preservation (class_accuracy) averaged over both directions,
        then each direction's own; L1 to the true translation when the data knows it."""
        shared = (*super().metric_names(), "eval/class_accuracy", "eval/l1_to_truth")
        per_direction = tuple(
            f"eval/{direction}_{name.removeprefix('eval/')}" for direction in DIRECTIONS for name in shared
        )
        return (*shared, *per_direction)

    @staticmethod
    def _domains(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "domain" not in batch:
            raise FieldError("family", "cyclegan trains on two domains (a translation dataset)")
        images, domain = batch["image"], batch["domain"]
        if images.is_meta:  # no values to select rows by (the zoo's shape check): halves instead
            return images.chunk(2)[0], images.chunk(2)[-1]
        return images[domain == 0], images[domain == 1]

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = self._domains(batch)
        if len(a) == 0 or len(b) == 0:  # a small batch drew one domain only: nothing to compare
            return torch.stack([p.sum() for p in self.networks()[network].parameters()]).sum() * 0.0
        self._recent_inputs = a[:16].detach()
        if network.startswith("generator"):
            return self._generator_loss(network, a, b)
        target = 0 if network == "discriminator_a" else 1
        real = (a, b)[target]
        fake = self._latest_fakes.pop(target, None)
        if fake is None:  # the generator has not run on this batch (a test, a resumed step)
            with torch.no_grad():
                fake = self.run_network("generator_ba" if target == 0 else "generator_ab", (b, a)[target])
        shown = self.pools[target].query(fake)
        real_score = self.run_network(network, real)
        fake_score = self.run_network(network, shown)
        return 0.5 * ((real_score - 1).pow(2).mean() + fake_score.pow(2).mean())

    def _generator_loss(self, network: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Adversarial (least squares), both cycles and identity, for the generator `network`."""
        forward_ab = network == "generator_ab"
        source, target = (a, b) if forward_ab else (b, a)
        other = "generator_ba" if forward_ab else "generator_ab"
        critic = "discriminator_b" if forward_ab else "discriminator_a"
        config = self.config
        with torch.no_grad():
            back = self.run_network(other, target, bare=True)  # target -> source, for the second cycle
        with frozen(self.networks()[other]), frozen(self.networks()[critic]):
            # One pass over the three inputs: instance norm treats every image alone.
            fake, cycled_target, same = self.run_network(network, torch.cat([source, back, target])).split(
                [len(source), len(back), len(target)]
            )
            adversarial = (self.run_network(critic, fake, bare=True) - 1).pow(2).mean()
            cycled_source = self.run_network(other, fake, bare=True)
        cycle = (cycled_source - source).abs().mean() + (cycled_target - target).abs().mean()
        identity = (same - target).abs().mean()
        self._latest_fakes[1 if forward_ab else 0] = fake.detach()
        return adversarial + config.cycle_weight * (cycle + config.identity_weight * identity)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The image pools: a resumed run shows its discriminators the same past images."""
        return {f"pool_{index}": pool.images for index, pool in enumerate(self.pools) if pool.images is not None}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        for index, pool in enumerate(self.pools):
            if f"pool_{index}" in state:
                pool.images = state[f"pool_{index}"].to(next(self.parameters()).device)

    # --- sampling -------------------------------------------------------------------------------

    def sample_options(self, n: int, input: Any = None, direction: str | None = None, **other: Any) -> dict[str, Any]:
        """`input` images (N, C, H, W) in [-1, 1], translated in `direction` a2b (default) or b2a."""
        self.refuse_options(other)
        if input is None:
            raise OptionError("input", f"a {self.family} model translates images: give the images to translate")
        images = torch.as_tensor(input, dtype=torch.float32)
        if images.dim() != 4 or tuple(images.shape[1:]) != tuple(self.config.image_shape):
            expected = "x".join(map(str, self.config.image_shape))
            raise OptionError(
                "input", f"images of {expected} (channels x height x width) expected, not {tuple(images.shape)}"
            )
        if len(images) != n:
            raise OptionError("n", f"{n} samples asked for {len(images)} input images")
        if direction not in (None, *DIRECTIONS):
            raise OptionError("direction", f"{direction!r} is neither a2b nor b2a")
        return {"inputs": images.clamp(-1, 1), "direction": direction or "a2b"}

    def example_options(self, n: int) -> dict[str, Any]:
        """The last real A images the model trained on (live grids), else blank ones."""
        recent = self._recent_inputs
        if recent is None or len(recent) == 0:
            return {"input": torch.zeros((n, *self.config.image_shape)).tolist()}
        return {"input": recent[torch.arange(n, device=recent.device) % len(recent)].cpu().tolist()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        inputs: torch.Tensor | None = None,
        direction: str = "a2b",
    ) -> torch.Tensor:
        """The translations of `inputs` (n of them) into the other domain."""
        if inputs is None:
            raise OptionError("input", f"a {self.family} model translates images: give the images to translate")
        network = self.generator_ab if direction == "a2b" else self.generator_ba
        parameter = next(network.parameters())
        return network(inputs[:n].to(parameter.device, parameter.dtype)).float().clamp(-1, 1)
