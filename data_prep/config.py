"""What a dataset is made of: the `data:` section of a pipeline config.

It lives here, not in pipelines/, so that data_prep can be used (and tested) on its own. Each
source kind is a class in its modality's folder (data_prep/modalities/) that describes itself,
reads its records and names its classes; `SOURCES` is the one registry of kinds. Readers import
Ray when they read, so a config loads without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union, get_args

from pydantic import Field

from data_prep.modalities.audio.settings import AudioPrep
from data_prep.modalities.audio.sources import AudioFilesSource, ChoraleAudioSource
from data_prep.modalities.base import SourceConfig, Strict
from data_prep.modalities.image.settings import ImagePrep
from data_prep.modalities.image.sources import (
    DigitsSource,
    DomainsSource,
    ImageFolderSource,
    ParquetSource,
    SampleImageCropsSource,
)
from data_prep.modalities.music.settings import MusicPrep
from data_prep.modalities.music.sources import Music21CorpusSource, MusicFilesSource
from data_prep.modalities.series.settings import SeriesPrep
from data_prep.modalities.series.sources import SeriesFileSource, StatsmodelsSeriesSource
from data_prep.modalities.text.settings import TextPrep, TokenizerConfig
from data_prep.modalities.text.sources import PythonStdlibSource, TextFilesSource
from data_prep.modalities.video.settings import VideoPrep
from data_prep.modalities.video.sources import MovingDigitsSource, VideoFilesSource

# The registry of source kinds: a new kind is one class in its modality's sources.py and one entry here.
SOURCES: tuple[type[SourceConfig], ...] = (
    DigitsSource,
    SampleImageCropsSource,
    ImageFolderSource,
    ParquetSource,
    PythonStdlibSource,
    TextFilesSource,
    DomainsSource,
    StatsmodelsSeriesSource,
    SeriesFileSource,
    Music21CorpusSource,
    MusicFilesSource,
    AudioFilesSource,
    ChoraleAudioSource,
    MovingDigitsSource,
    VideoFilesSource,
)
SOURCE_KINDS = frozenset(get_args(cls.model_fields["kind"].annotation)[0] for cls in SOURCES)
if TYPE_CHECKING:
    Source = SourceConfig
else:
    Source = Annotated[Union[SOURCES], Field(discriminator="kind")]  # noqa: UP007 (built from the registry)


class DataConfig(ImagePrep, TextPrep, SeriesPrep, MusicPrep, AudioPrep, VideoPrep):
    """Every modality's settings in one section; the source's modality decides which of them its
    builder reads (and which enter the fingerprint)."""

    source: Source = Field(default_factory=DigitsSource)


__all__ = [
    "SOURCES",
    "AudioFilesSource",
    "ChoraleAudioSource",
    "SOURCE_KINDS",
    "DataConfig",
    "DigitsSource",
    "DomainsSource",
    "ImageFolderSource",
    "Music21CorpusSource",
    "MovingDigitsSource",
    "MusicFilesSource",
    "ParquetSource",
    "PythonStdlibSource",
    "SampleImageCropsSource",
    "SeriesFileSource",
    "SourceConfig",
    "StatsmodelsSeriesSource",
    "Strict",
    "TextFilesSource",
    "TokenizerConfig",
    "VideoFilesSource",
]
