"""Image families' sample quality in one yardstick: classifier-FID, class coverage, precision and
recall (Kynkäänniemi et al. 2019) in the evaluation classifier's feature space.

Run: `python benchmarks/image_families_bench.py --part stylegan|families|cyclegan [--steps N] [--record]`

- stylegan: StyleGAN (`small`) against DCGAN (`small`) at equal steps and batch on scikit-learn's
  digits upsampled to 16 px, each with its paper's optimizer settings (StyleGAN2: Adam lr 2e-3,
  betas (0, 0.99); DCGAN: lr 2e-4, betas (0.5, 0.999)); StyleGAN samples from its EMA, as the
  pipeline registers it, with and without truncation.
- cyclegan: CycleGAN on digits and their inverted (and rotated) copies, both ways: L1 to the known
  translation and label preservation, against the identity mapping.
- stylegan-ablation: StyleGAN `small` at 16 px for 600 steps with style mixing 0.9/0.5/0 and R1
  weights 1/5/10, beside DCGAN: what the small presets' settings rest on.
- families: every image family that trains from data alone, at the preset and optimizer settings
  its built-in config uses, on the 8x8 digits for the same steps. The latent DDPM is left out: it
  needs a registered VAE.

Each arm's samples are scored against the real images by the same classifier (trained once on
the same images), the way `evaluate` scores a registered model.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_table import append_table  # noqa: E402


@dataclass(frozen=True)
class Arm:
    family: str
    preset: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    sample_options: tuple[tuple[str, float], ...] = ()
    params: tuple[tuple[str, float], ...] = ()  # model.params over the preset

    @property
    def label(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in (*self.params, *self.sample_options))
        return f"{self.family} ({self.preset}{', ' + options if options else ''})"


def digits(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    loaded = load_digits()
    images = torch.tensor(loaded.images, dtype=torch.float32)[:, None] / 8 - 1
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return images, torch.tensor(loaded.target)


def train(arm: Arm, columns: dict[str, torch.Tensor], steps: int, batch: int, params: dict | None = None):
    """The training loop's order of updates (each network in turn, a critic its
    `updates_per_step` times, the model told after each), with plain Adam on random batches of
    `columns`; the exported weights (an EMA where the family keeps one) loaded back, as evaluation
    would see them."""
    from models import build_model, resolve_config

    torch.manual_seed(0)
    images = columns["image"]
    data = {"image_shape": tuple(images.shape[1:]), "num_classes": 10, "class_names": [str(d) for d in range(10)]}
    model = build_model(arm.family, resolve_config(arm.family, arm.preset, params or {}, data))
    optimizers = {
        name: torch.optim.Adam(net.parameters(), lr=arm.lr, betas=arm.betas) for name, net in model.networks().items()
    }
    start = time.perf_counter()
    for step in range(steps):
        model.start_step(step)
        for name, optimizer in optimizers.items():
            for _ in range(model.updates_per_step(name)):
                rows = torch.randint(len(images), (batch,))
                loss = model.loss(name, {key: values[rows] for key, values in columns.items()})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                model.after_update(name)
    seconds = time.perf_counter() - start
    model.load_state_dict(model.exported_state(model.state_dict()))
    return model.eval(), seconds


def score(arm: Arm, model, classifier, images: torch.Tensor, samples: int) -> dict[str, float]:
    from pipelines.evaluate.classifier import score_samples

    generated = model.sample(samples, torch.Generator().manual_seed(0), **dict(arm.sample_options))
    requested = model.requested_labels(samples, generated.device)
    return score_samples(classifier, generated, images, requested)


def run(arms: list[Arm], size: int, steps: int, batch: int, samples: int) -> list[str]:
    from pipelines.evaluate.classifier import score_samples, train_classifier

    torch.set_num_threads(2)
    images, labels = digits(size)
    classifier = train_classifier(images, labels, 10, epochs=10, seed=0)
    floor = score_samples(classifier, images[torch.randperm(len(images))[:samples]], images)
    rows = [_row("real digits (the floor)", floor, 0.0)]
    trained: dict[tuple, tuple[object, float]] = {}
    for arm in arms:
        key = (arm.family, arm.preset, arm.params)
        if key not in trained:  # the same model scored with other sampling options is not retrained
            trained[key] = train(arm, {"image": images, "label": labels}, steps, batch, dict(arm.params))
        model, seconds = trained[key]
        scores = score(arm, model, classifier, images, samples)
        rows.append(_row(arm.label, scores, seconds))
        print(rows[-1], flush=True)
    return rows


def cyclegan(maps: list[str], steps: int, batch: int, samples: int) -> list[str]:
    """CycleGAN (`tiny`, no identity loss) on digits and their copies under each known map, both
    ways, scored as `evaluate` scores it, against the identity mapping."""
    from data_prep.domains import apply_map, in_domain_b
    from data_prep.manifest import DomainInfo
    from pipelines.evaluate.classifier import score_samples, train_classifier
    from pipelines.evaluate.translation import DIRECTIONS, score_translations

    torch.set_num_threads(2)
    images, labels = digits(8)
    rows = []
    for name in maps:
        domain = torch.tensor([int(in_domain_b(f"digits/{i}", 0)) for i in range(len(images))])
        mapped = torch.from_numpy(apply_map(name, images.numpy()))
        columns = {
            "image": torch.where(domain[:, None, None, None] == 1, mapped, images),
            "label": labels,
            "domain": domain,
        }
        classifier = train_classifier(columns["image"], labels, 10, epochs=10, seed=0)
        arm = Arm("cyclegan", "tiny", 2e-3, (0.5, 0.999))
        model, seconds = train(arm, columns, steps, batch, {"identity_weight": 0.0})
        val = {key: values.numpy() for key, values in columns.items()}
        info = DomainInfo(names=("digits", name), b_from_a=name)
        scores = score_translations(model, classifier, val, info, samples, torch.Generator().manual_seed(0), None)
        for direction, (source, target) in DIRECTIONS.items():
            inputs = columns["image"][domain == source][:samples]
            identity = score_samples(
                classifier, inputs, columns["image"][domain == target], labels[domain == source][:samples]
            )
            ours = {key: scores[f"eval/{direction}_{key}"] for key in ("l1_to_truth", "identity_l1_to_truth")}
            cells = [
                f"{name} {direction}",
                f"{ours['l1_to_truth']:.3f}",
                f"{ours['identity_l1_to_truth']:.3f}",
                f"{scores[f'eval/{direction}_class_accuracy']:.3f}",
                f"{identity['class_accuracy']:.3f}",
                f"{scores[f'eval/{direction}_classifier_fid']:.1f}",
                f"{identity['classifier_fid']:.1f}",
                f"{seconds:.0f}",
            ]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def _row(label: str, scores: dict[str, float], seconds: float) -> str:
    return (
        f"| {label} | {scores['classifier_fid']:.2f} | {scores['class_coverage']} | {scores['precision']:.3f} "
        f"| {scores['recall']:.3f} | {seconds:.0f} |"
    )


STYLEGAN_ARMS = [
    Arm("dcgan", "small", 2e-4, (0.5, 0.999)),
    Arm("stylegan", "small", 2e-3, (0.0, 0.99)),
    Arm("stylegan", "small", 2e-3, (0.0, 0.99), (("truncation", 0.7),)),
]
STYLEGAN_BETAS = (0.0, 0.99)
# Style mixing and the R1 weight at a short budget (600 steps, 16 px): what the small presets chose.
ABLATION_ARMS = [
    Arm("dcgan", "small", 2e-4, (0.5, 0.999)),
    *(
        Arm("stylegan", "small", 2e-3, STYLEGAN_BETAS, params=(("style_mixing", mixing), ("r1_gamma", gamma)))
        for gamma in (1.0, 5.0)
        for mixing in (0.9, 0.5, 0.0)
    ),
    Arm("stylegan", "small", 2e-3, STYLEGAN_BETAS, params=(("style_mixing", 0.0), ("r1_gamma", 10.0))),
]
GAN_BETAS = (0.5, 0.999)  # gan-sweep-digits.yaml's momentum
FAMILY_ARMS = [
    Arm("ddpm", "tiny", 2e-3),  # quickstart.yaml
    Arm("gan", "tiny", 2e-4, GAN_BETAS),
    Arm("dcgan", "tiny", 2e-4, GAN_BETAS),
    Arm("cgan", "tiny", 2e-4, GAN_BETAS),
    Arm("wgan-gp", "tiny", 2e-4, GAN_BETAS),
    Arm("stylegan", "tiny", 2e-3, (0.0, 0.99)),
    Arm("vae", "tiny", 1e-3),  # vae-sweep-digits.yaml
    Arm("conv-vae", "tiny", 1e-3),
    Arm("beta-vae", "tiny", 1e-3),
    Arm("dae", "tiny", 1e-3),
    Arm("sparse-ae", "tiny", 1e-3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["stylegan", "stylegan-ablation", "families", "cyclegan"], required=True)
    parser.add_argument("--steps", type=int, default=None, help="default: 1500 (stylegan), 1000 (others)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--families", nargs="*", help="families: only these (default: all)")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    stylegan = args.part.startswith("stylegan")
    steps = args.steps or {"stylegan": 1500, "stylegan-ablation": 600}.get(args.part, 1000)
    if args.part == "cyclegan":
        rows = cyclegan(["invert", "rotate90"], steps, args.batch, args.samples)
        about = [
            f"`python benchmarks/image_families_bench.py --part cyclegan --steps {steps}`: CycleGAN `tiny` "
            f"(identity_weight 0) on the 8x8 digits split into two unpaired domains (B = A's records under the "
            f"map), {steps} steps of batch {args.batch}, Adam 2e-3 (0.5, 0.999); up to {args.samples} images "
            "per direction translated and scored as `evaluate` does, against the identity mapping (the "
            "trivial baseline). Label preservation: the classifier (trained on both domains) sees the "
            "input's digit in the translation."
        ]
        columns = [
            "map, direction",
            "L1 to truth",
            "identity L1",
            "label kept",
            "identity label kept",
            "classifier-FID",
            "identity FID",
            "train s",
        ]
        if args.record:
            append_table("CycleGAN against the identity mapping", about, columns, rows)
        return
    size = 16 if stylegan else 8
    arms = {"stylegan": STYLEGAN_ARMS, "stylegan-ablation": ABLATION_ARMS}.get(
        args.part, [arm for arm in FAMILY_ARMS if arm.family in (args.families or [arm.family])]
    )
    rows = run(arms, size, steps, args.batch, args.samples)
    title = {
        "stylegan": "StyleGAN against DCGAN",
        "stylegan-ablation": "StyleGAN: style mixing and R1 at a short budget",
    }.get(args.part, "Precision and recall of every image family")
    about = [
        f"`python benchmarks/image_families_bench.py --part {args.part} --steps {steps}`: digits at {size} px, "
        f"{steps} steps of batch {args.batch} per arm, {args.samples} samples scored against all 1,797 digits "
        "by one classifier (10 epochs); precision/recall with k = 3 on equal counts."
    ]
    columns = ["arm", "classifier-FID", "coverage", "precision", "recall", "train s"]
    if args.record:
        append_table(title, about, columns, rows)


if __name__ == "__main__":
    main()
