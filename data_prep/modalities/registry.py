"""The one registry of modalities: a new modality is a folder in data_prep/modalities/ and one
line in `MODALITIES`. Everything that differs by modality (building shards, what a model takes
from the data, the pipeline's scorers and previews) is looked up here by the manifest's name."""

from __future__ import annotations

from typing import Any

from data_prep.errors import DataError
from data_prep.manifest import Manifest
from data_prep.modalities.audio.modality import AudioModality
from data_prep.modalities.image.modality import ImageModality
from data_prep.modalities.modality import Modality
from data_prep.modalities.music.modality import MusicModality
from data_prep.modalities.series.modality import SeriesModality
from data_prep.modalities.text.modality import TextModality
from data_prep.modalities.video.modality import VideoModality

MODALITIES: dict[str, Modality[Any]] = {
    modality.name: modality
    for modality in (
        ImageModality(),
        TextModality(),
        SeriesModality(),
        MusicModality(),
        AudioModality(),
        VideoModality(),
    )
}


def modality_named(name: str) -> Modality[Any]:
    try:
        return MODALITIES[name]
    except KeyError:
        raise DataError(f"unknown modality {name!r}; registered: {', '.join(MODALITIES)}") from None


def modality_of(manifest: Manifest) -> Modality[Any]:
    """The modality a prepared dataset holds."""
    return modality_named(manifest.modality)
