"""prepare for music on a real local Ray: a user's folder of scores (MIDI and MusicXML) becomes
blocks of event ids split by piece, with rejects and their reasons; music21's corpus is a source
of its own."""

from __future__ import annotations

import json
import shutil

import pytest

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.modalities.music.modality import music_info
from data_prep.prepare import fingerprint, prepare
from data_prep.readers import read_split
from serving.music import midi_bytes
from storage import read_bytes
from tokens.music import MusicTokenizer, Note

pytestmark = pytest.mark.slow


def melody(seed: int, voices: int = 2) -> list[Note]:
    """Four bars of quarter notes a voice, a different line for each seed."""
    return [Note(4 * i, 55 + 7 * v + (seed * 5 + i * 3) % 12, 4, v) for v in range(voices) for i in range(16)]


def score_folder(folder, pieces: int = 10):
    """MIDI files, one chorale as compressed MusicXML, a MIDI file that is not one and a text file."""
    from music21 import corpus

    folder.mkdir()
    for i in range(pieces):
        (folder / f"piece_{i}.mid").write_bytes(midi_bytes(melody(i), ticks_per_quarter=4))
    shutil.copy(corpus.getWork("bwv66.6"), folder / "bwv66.6.mxl")
    (folder / "broken.mid").write_bytes(b"MThd this is not a MIDI file")
    (folder / "notes.txt").write_text("not music")
    return folder


def music_config(source: dict, **extra) -> DataConfig:
    settings = {"seq_len": 32, "val_fraction": 0.3, "max_reject_fraction": 0.2, **extra}
    return DataConfig.model_validate({"source": source, **settings})


def test_a_folder_of_scores_becomes_blocks_of_events_with_its_rejects(ray_session, tmp_path):
    folder = score_folder(tmp_path / "scores")
    config = music_config({"kind": "music_files", "path": f"{folder}/*"})
    manifest, cached = prepare(config, str(tmp_path / "store"))
    assert not cached and manifest.modality == "music"
    info = music_info(manifest)
    assert info.pieces["train"] + info.pieces["val"] == 11 and min(info.pieces.values()) > 0
    rejects = [json.loads(line) for line in read_bytes(manifest.rejects["uri"]).decode().splitlines()]
    reasons = {row["key"]: row["reason"] for row in rejects}
    assert set(reasons) == {"broken.mid", "notes.txt"}
    assert reasons["broken.mid"].startswith("not a score music21 can read")
    assert reasons["notes.txt"].startswith("not a score file (.txt")
    # Every piece's events are in the blocks: 4 ids per note, a position per onset, a bar per bar.
    blocks = read_split(manifest, "train")["tokens"]
    assert blocks.shape[1] == 33 and blocks.shape[0] * 33 == info.tokens_in_blocks["train"]
    tokenizer = MusicTokenizer(info.ticks_per_quarter)
    assert info.notes["train"] * 3 < info.tokens["train"] < info.notes["train"] * 5
    stream = blocks.reshape(-1).tolist()
    first_piece = stream[stream.index(tokenizer.eot_id) + 1 :]
    assert tokenizer.describe(first_piece[:2])[0].startswith("Bar_")
    assert len(tokenizer.decode(first_piece)) > 0
    # The grid shapes the dataset; the reject limit does not.
    assert fingerprint(music_config(config.source.model_dump(), ticks_per_quarter=2), config.source.describe()) != (
        manifest.fingerprint
    )
    assert prepare(music_config(config.source.model_dump(), max_reject_fraction=0.5), str(tmp_path / "store"))[1]


def test_too_many_unreadable_scores_fail_naming_the_limit(ray_session, tmp_path):
    folder = score_folder(tmp_path / "scores", pieces=2)
    with pytest.raises(DataError, match="max_reject_fraction"):
        prepare(music_config({"kind": "music_files", "path": f"{folder}/*"}), str(tmp_path / "store"))


def test_music21s_corpus_needs_no_download(ray_session, tmp_path):
    config = music_config({"kind": "music21_corpus", "max_files": 8}, val_fraction=0.25)
    manifest, _ = prepare(config, str(tmp_path / "store"))
    assert manifest.source["files"] == 8 and manifest.rejects["count"] == 0
    assert music_info(manifest).notes["train"] > 1000  # four voices of Bach
    with pytest.raises(DataError, match="data.source.composer: music21's corpus has no scores of 'nobody'"):
        music_config({"kind": "music21_corpus", "composer": "nobody"}).source.describe()
