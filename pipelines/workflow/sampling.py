"""What `genpipe sample` asks a registered model for, by the modality it learned: one drawing
function per modality in `DRAWERS` (images, series and translations share the default), each
reading only the options that mean something to it and refusing the others by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import GenerativeModel
from typed_errors import OptionError

if TYPE_CHECKING:
    import torch

    from serving.audio import Clip
    from serving.music import Piece
    from serving.video import Video


@dataclass(frozen=True)
class SampleRequest:
    """The options of one `genpipe sample`; None where the user gave none."""

    n: int | None = None
    seed: int = 0
    prompt: str | None = None
    label: str | None = None
    guidance: float | None = None
    sampler: str | None = None
    steps: int | None = None
    max_new_tokens: int = 200  # language models' knobs: defaults, so never refused
    temperature: float = 0.8
    top_k: int | None = 50
    family_options: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    direction: str | None = None
    horizon: int | None = None

    def given(self, *names: str) -> dict[str, Any]:
        """The named options as `refuse_options` takes them (None, or an empty list: not given)."""
        return {name: getattr(self, name) or None for name in names}

    def image_options(self) -> dict[str, Any]:
        """The options of image families (`GenerativeModel.sample_options`)."""
        return {name: getattr(self, name) for name in ("prompt", "label", "guidance", "sampler", "steps")}


def draw_text(model: GenerativeModel, folder: Path, request: SampleRequest) -> list[str]:
    """Completions of the prompt (1 by default)."""
    from data_prep.text_tokenizer import TOKENIZER_FILE, load_tokenizer
    from serving.drawing import draw_completions

    model.refuse_options(request.given("label", "guidance", "sampler", "steps", "inputs", "direction", "horizon"))
    tokenizer = load_tokenizer(str(folder / TOKENIZER_FILE))
    options = (request.max_new_tokens, request.temperature, request.top_k)
    return draw_completions(model, tokenizer, request.prompt or "", request.n or 1, request.seed, *options)


def draw_music(model: GenerativeModel, folder: Path, request: SampleRequest) -> list[Piece]:
    """Pieces (1 by default): notes, and their MIDI, WAV or piano roll."""
    from serving.music import Piece, draw_pieces
    from tokens.music import MUSIC_TOKENIZER_FILE, MusicTokenizer

    model.refuse_options(
        {**request.image_options(), **request.given("inputs", "direction", "horizon"), **request.family_options}
    )
    music = MusicTokenizer.from_json((folder / MUSIC_TOKENIZER_FILE).read_text())
    options = (request.max_new_tokens, request.temperature, request.top_k)
    notes = draw_pieces(model, music, request.n or 1, request.seed, *options)
    return [Piece(piece, music.ticks_per_quarter) for piece in notes]


def draw_audio(model: GenerativeModel, folder: Path, request: SampleRequest) -> list[Clip]:
    """Clips (1 by default): samples, and their WAV or spectrogram."""
    from serving.audio import Clip
    from serving.drawing import draw_images

    model.refuse_options(request.given("inputs", "direction", "horizon"))
    drawn = draw_images(model, request.n or 1, request.seed, **request.image_options(), **request.family_options)
    rate = model.config.sample_rate  # type: ignore[attr-defined]  # every audio family's config carries it
    return [Clip(clip[0].numpy(), rate) for clip in drawn]


def predict_videos(model: GenerativeModel, folder: Path, request: SampleRequest) -> list[Video]:
    """Each input clip's last context frames (the data's count, or all it has), continued by
    `horizon` frames; `n` beyond the inputs draws more futures of them in turn."""
    from data_prep.errors import DataError
    from data_prep.modalities.video.frames import load_clip
    from serving.drawing import draw_images
    from serving.video import Video

    model.refuse_options({**request.image_options(), **request.given("direction")})
    if not request.inputs:
        raise OptionError("input", f"a {model.family} model continues clips: give a GIF, MP4 or folder of frames")
    config: Any = model.config
    try:
        clips = [load_clip(uri, config.frame_shape) for uri in request.inputs]
    except DataError as exc:
        raise OptionError("input", str(exc)) from None
    length = min(config.context_frames, *(len(clip) for clip in clips))
    n = request.n or len(clips)
    context = np.stack([clips[i % len(clips)][-length:] for i in range(n)])
    options = {"input": context, "horizon": request.horizon, **request.family_options}
    predicted = draw_images(model, n, request.seed, **options)
    return [Video(context[i], predicted[i].numpy()) for i in range(n)]


def draw_pictures(model: GenerativeModel, folder: Path, request: SampleRequest) -> torch.Tensor:
    """Images (16 by default), a forecaster's paths, or an image-to-image model's translations of
    the image files `inputs` (`n` defaults to their number)."""
    from serving.drawing import draw_images

    model.refuse_options(request.given("horizon"))
    options = request.image_options()
    n = request.n
    if request.inputs or request.direction is not None:
        shape = getattr(model.config, "image_shape", None)
        if not model.translates or shape is None:
            raise OptionError("input", f"a {model.family} model draws images; it does not translate them")
        if not request.inputs:
            raise OptionError("direction", "give the images to translate as input")
        from data_prep.images import load_images

        options.update(input=load_images(request.inputs, shape), direction=request.direction)
        n = n or len(request.inputs)
    return draw_images(model, n or 16, request.seed, **options, **request.family_options)


Drawer = Callable[[GenerativeModel, Path, SampleRequest], Any]
# What a model of each modality is asked for (data_prep's registry names); any other: pictures.
DRAWERS: dict[str, Drawer] = {"text": draw_text, "music": draw_music, "audio": draw_audio, "video": predict_videos}


def draw(model: GenerativeModel, folder: Path, request: SampleRequest) -> Any:
    """`request` of `model`, whose files (weights, tokenizer) are in `folder`."""
    return DRAWERS.get(model.data_modality, draw_pictures)(model, folder, request)
