"""The music tokenizer: notes and bars become REMI-like ids and come back unchanged; any id
sequence decodes to some music; its file names itself."""

from __future__ import annotations

import random

import pytest

from tokens.music import Bar, MusicTokenizer, MusicTokenizerError, Note


def chorale_like(bars: int = 6, ticks: int = 4) -> tuple[list[Note], list[Bar]]:
    """Four voices in 4/4 after a one-beat pickup, quarter and eighth notes, a held note over a bar line."""
    layout = [Bar(0, ticks)] + [Bar(ticks + 4 * ticks * i, 4 * ticks) for i in range(bars)]
    notes, rng = [], random.Random(0)
    for voice, base in enumerate((72, 65, 60, 48)):
        onset = 0
        while onset < layout[-1].start + layout[-1].length - 2 * ticks:
            duration = rng.choice((ticks, ticks // 2, 2 * ticks))
            notes.append(Note(onset, base + rng.randint(-5, 5), duration, voice))
            onset += duration
    return sorted(notes), layout


def test_notes_and_bars_come_back_as_they_went_in():
    tokenizer = MusicTokenizer(ticks_per_quarter=4)
    notes, bars = chorale_like()
    ids = tokenizer.encode(notes, bars)
    assert all(0 < i < tokenizer.vocab_size for i in ids)  # the end-of-piece id is the dataset's to add
    assert tokenizer.decode(ids) == notes
    names = tokenizer.describe(ids[:6])
    assert names[:2] == ["Bar_1", "Position_0"] and names[2].startswith("Voice_") and names[3].startswith("Pitch_")


def test_a_piece_decodes_up_to_the_end_of_piece_id_and_its_bars_keep_their_lengths():
    tokenizer = MusicTokenizer(ticks_per_quarter=2)
    three_four = [Bar(0, 6), Bar(6, 6)]
    notes = [Note(0, 60, 6, 0), Note(6, 62, 2, 0), Note(8, 64, 4, 0)]
    ids = tokenizer.encode(notes, three_four)
    assert tokenizer.decode([tokenizer.eot_id, *ids, tokenizer.eot_id, *ids]) == notes


def test_notes_beyond_the_grid_are_clamped_and_out_of_range_pitches_left_out():
    tokenizer = MusicTokenizer(ticks_per_quarter=4)
    notes = [Note(0, 60, 100, 0), Note(0, 10, 4, 0), Note(4, 64, 4, 11)]  # too long, too low, 12th voice
    decoded = tokenizer.decode(tokenizer.encode(notes, []))
    assert decoded == [Note(0, 60, tokenizer.max_ticks, 0), Note(4, 64, 4, 7)]


def test_bars_are_added_to_reach_the_last_note():
    tokenizer = MusicTokenizer(ticks_per_quarter=4)
    notes = [Note(0, 60, 4, 0), Note(70, 62, 4, 0)]
    ids = tokenizer.encode(notes, [Bar(0, 16)])
    assert tokenizer.describe(ids).count("Bar_4") == 5 and tokenizer.decode(ids) == notes


def test_any_sequence_of_ids_decodes_to_notes_inside_the_grid():
    tokenizer = MusicTokenizer(ticks_per_quarter=4)
    rng = random.Random(1)
    for _ in range(50):
        notes = tokenizer.decode(rng.randrange(tokenizer.vocab_size) for _ in range(300))
        assert all(n.duration >= 1 and 21 <= n.pitch <= 108 and n.onset >= 0 for n in notes)


def test_the_tokenizer_file_round_trips_and_a_wrong_file_is_named():
    tokenizer = MusicTokenizer(ticks_per_quarter=6)
    again = MusicTokenizer.from_json(tokenizer.to_json())
    assert again.ticks_per_quarter == 6 and again.vocab_size == tokenizer.vocab_size
    with pytest.raises(MusicTokenizerError, match=r"weights/music_tokenizer\.json: not a music tokenizer"):
        MusicTokenizer.from_json('{"genpipe_tokenizer": "byte"}', "weights/music_tokenizer.json")
    with pytest.raises(ValueError, match="ticks_per_quarter"):
        MusicTokenizer(ticks_per_quarter=0)
