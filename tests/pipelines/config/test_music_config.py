"""A music config is checked before anything starts: the families that learn music, the fields
that come from the data, the metrics a music model reports."""

from __future__ import annotations

import pytest

from models import family_class
from pipelines import cli


def run_music(tmp_path, *settings: str, config: str = "gpt-chorales") -> int:
    sets = [part for setting in settings for part in ("--set", setting)]
    return cli.main(["run", config, "--storage", str(tmp_path), "--dry-run", *sets])


@pytest.mark.parametrize("config", ["gpt-chorales", "lstm-chorales"])
def test_the_language_families_take_music_and_gate_on_bits_per_token(config, tmp_path, capsys):
    assert run_music(tmp_path, config=config) == 0
    plan = capsys.readouterr().out
    assert "music21_corpus (music)" in plan and "eval/bits_per_token (lower is better)" in plan


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["lstm-chorales", "model.family=ddpm"],
            "model.family: ddpm learns image, but data.source music21_corpus is music data",
        ),
        (["model.params.modality=text"], "model.params.modality: comes from the data (data.source); leave it out"),
        (["data.seq_len=512"], "data.seq_len: 512 tokens do not fit the model's block_size 256"),
        (["data.ticks_per_quarter=0"], "data.ticks_per_quarter"),
        (
            ["register.gate.metric=eval/bits_per_byte"],
            "register.gate.metric: gpt models do not report 'eval/bits_per_byte'; they report eval/val_loss, "
            "eval/bits_per_token",
        ),
    ],
)
def test_a_music_config_that_cannot_run_exits_2_naming_the_field(settings, message, tmp_path, capsys):
    config = settings.pop(0) if settings[0].endswith("-chorales") else "gpt-chorales"
    assert run_music(tmp_path, *settings, config=config) == 2
    assert message in capsys.readouterr().err


def test_what_a_family_learns_and_reports_is_declared_on_its_class():
    gpt, ddpm = family_class("gpt"), family_class("ddpm")
    assert gpt.learns("text") and gpt.learns("music") and not gpt.learns("image")
    assert ddpm.learns("image") and not ddpm.learns("music")
    assert "eval/bits_per_byte" in gpt.metrics_on("text") and "eval/bits_per_byte" not in gpt.metrics_on("music")
    assert "eval/in_key_share" in family_class("gru").metrics_on("music")
