"""PNG pictures for people: sample grids and grids by class."""

from __future__ import annotations

from pathlib import Path

import torch

from models.captions import evaluation_prompt
from pipelines.registry.drawing import grid_image


def save_grid(images: torch.Tensor, path: str | Path, scale: int | None = None, columns: int | None = None) -> Path:
    """(N, C, H, W) in [-1, 1] -> one PNG, `columns` wide (else as square as N allows), upscaled
    for viewing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, scale, columns).save(path)
    return path


def save_class_grids(
    samples: torch.Tensor, requested: torch.Tensor, class_names: list[str], metrics: dict[str, float], folder: Path
) -> list[Path]:
    """One grid per requested class (`<label>_<name>.png`) and an index (README.md) of how often
    the classifier agreed with what each class was asked for."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        "Samples asked for each class: by label, or for text-to-image models by the prompt",
        f"{evaluation_prompt('<class>')!r}.",
        "",
        "| label | class | classifier agrees |",
        "|---|---|---|",
    ]
    saved = []
    for label in sorted(set(requested.tolist())):
        name = class_names[label] if label < len(class_names) else str(label)
        saved.append(save_grid(samples[requested.cpu() == label], folder / f"{label}_{_file_safe(name)}.png"))
        accuracy = metrics.get(f"eval/class_accuracy_{label}", float("nan"))
        rows.append(f"| {label} | {name} | {accuracy:.1%} |")
    (folder / "README.md").write_text("\n".join(rows) + "\n")
    return saved


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]


def stack_pictures(pictures: list[Path], path: Path, gap: int = 4) -> None:
    """PNG files one above the other in one PNG (piano rolls, spectrograms), `gap` pixels apart."""
    from PIL import Image

    opened = [Image.open(picture).convert("RGB") for picture in pictures]
    sheet = Image.new("RGB", (max(p.width for p in opened), sum(p.height + gap for p in opened)), "lightgrey")
    top = 0
    for picture in opened:
        sheet.paste(picture, (0, top))
        top += picture.height + gap
    sheet.save(path)
