"""Music sources: each kind's config (a `data.source` of the music modality) and how it reads its
pieces, as a Ray Dataset of `{key, data, suffix, error}` rows: a score file's bytes, parsed into
notes by the builder (data_prep/modalities/music/scores.py).

A file that cannot be read is a row with its `error` (a reject with its reason), never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from data_prep.errors import DataError
from data_prep.files import file_stamps, glob_files
from data_prep.modalities.base import SourceConfig
from data_prep.modalities.text.sources import glob_root
from storage import filesystem

# The score formats music21 reads that hold notes (its corpus also ships Roman-numeral analyses,
# .rntxt, which hold harmonies, not a piece's notes).
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".mid", ".midi", ".krn", ".abc")
MAX_SCORE_MB = 16  # a larger file is a reject: no real score of one piece is that large


class MusicSourceConfig(SourceConfig):
    """A source of pieces of music."""

    modality: ClassVar[str] = "music"


class Music21CorpusSource(MusicSourceConfig):
    """A composer's pieces in the corpus that ships inside the music21 package (Bach: ~410 chorales
    as MusicXML), so a music dataset needs no download."""

    kind: Literal["music21_corpus"] = "music21_corpus"
    composer: str = Field("bach", description="a composer folder of music21's corpus")
    max_files: int | None = Field(None, gt=0, description="the first N pieces in sorted order")

    def describe(self) -> dict[str, Any]:
        import music21

        root, files = corpus_files(self)
        return {**self.model_dump(), "music21": music21.__version__, "root": str(root), "files": len(files)}

    def read(self) -> Any:
        root, files = corpus_files(self)
        return read_scores([(str(p.relative_to(root)), str(p)) for p in files])


class MusicFilesSource(MusicSourceConfig):
    """Score files matching a glob (any fsspec URI): MIDI, MusicXML (.mxl, .musicxml, .xml),
    Humdrum (.krn) or ABC; one piece per file."""

    kind: Literal["music_files"]
    path: str = Field(description="a glob such as midi/**/*.mid or s3://bucket/scores/*")

    def describe(self) -> dict[str, Any]:
        fs, pattern = filesystem(self.path)
        return {**self.model_dump(), "files": file_stamps(fs, glob_root(pattern), score_files(self))}

    def read(self) -> Any:
        fs, pattern = filesystem(self.path)
        root = glob_root(pattern)
        scheme = self.path.split("://")[0] + "://" if "://" in self.path else ""
        return read_scores([(p[len(root) :].lstrip("/"), scheme + p) for p in score_files(self)])


def corpus_files(source: Music21CorpusSource) -> tuple[Path, list[Path]]:
    from music21 import corpus

    files = sorted(p for p in corpus.getComposer(source.composer) if p.suffix.lower() in SCORE_SUFFIXES)
    if not files:
        raise DataError(f"data.source.composer: music21's corpus has no scores of {source.composer!r}")
    files = files[: source.max_files] if source.max_files else files
    return files[0].parents[1], files  # keys relative to the corpus folder: bach/bwv1.6.mxl


def score_files(source: MusicFilesSource) -> list[str]:
    """Every file the glob matches: one that is not a score becomes a reject naming its suffix."""
    return glob_files(source.path)


def read_scores(items: list[tuple[str, str]]) -> Any:
    """One row per file: its bytes, or why they cannot be used."""
    import ray.data

    def load(row: dict[str, Any]) -> dict[str, Any]:
        key, uri = row["key"], row["uri"]
        suffix = Path(key).suffix.lower()
        found = {"key": key, "data": b"", "suffix": suffix, "error": ""}
        if suffix not in SCORE_SUFFIXES:
            return {**found, "error": f"not a score file ({suffix or 'no suffix'}; reads {', '.join(SCORE_SUFFIXES)})"}
        fs, path = filesystem(uri)
        try:
            if fs.size(path) > MAX_SCORE_MB * 1_000_000:
                return {**found, "error": f"over {MAX_SCORE_MB} MB: not one piece"}
            with fs.open(path, "rb") as handle:
                return {**found, "data": handle.read()}
        except OSError as exc:
            return {**found, "error": f"unreadable: {type(exc).__name__}: {exc}"}

    return ray.data.from_items([{"key": key, "uri": uri} for key, uri in items]).map(load)
