"""The comparison's leaderboard and its config, without Ray: ranking by the mean over seeds with
a t-interval, the winner as the best seed of the first family, Kendall's tau between the seeds'
rankings, and the families that cannot take part listed with their reason."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from pipelines.config import ConfigError, load_config
from pipelines.tune.leaderboard import Trial, as_table, leaderboard, seed_agreement, table_lines, winner

FID = "eval/classifier_fid"


def trial(family: str, seed: int, fid: float, rate: float = 100.0) -> Trial:
    metrics = {FID: fid, "eval/recall": 0.5, "cost/samples_per_second": rate, "cost/parameters": 1000.0}
    return Trial(family, seed, metrics, f"{family}-{seed}", f"run-{family}-{seed}")


def test_families_rank_by_their_mean_with_an_interval_and_the_winner_is_the_best_seed_of_the_first():
    trials = [trial("vae", 0, 90), trial("vae", 1, 110), trial("gan", 0, 60), trial("gan", 1, 200)]
    rows = leaderboard(trials, FID, "min", failed={"ebm": "NaN loss"}, unfit={"gpt": "learns text"})
    assert [row["family"] for row in rows] == ["vae", "gan", "ebm", "gpt"]  # 100 < 130 on the mean
    vae = rows[0]
    assert vae["rank"] == 1 and vae[FID] == 100 and vae["seeds"] == 2
    assert vae[f"{FID}_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(200) / math.sqrt(2))
    assert rows[2]["status"] == "failed: NaN loss" and rows[3]["status"] == "does not fit: learns text"
    best = winner(trials, rows, FID, "min")
    assert best is not None and (best.family, best.seed) == ("vae", 0)
    assert winner(trials, leaderboard(trials, FID, "max", {}, {}), FID, "max").family == "gan"  # 130 > 100
    table = as_table(rows)
    assert table["family"] == ["vae", "gan", "ebm", "gpt"] and table["rank"] == [1, 2, None, None]
    lines = table_lines(rows, FID)
    assert lines[0].split()[:3] == ["#", "family", "classifier_fid"]
    assert lines[1].split()[:2] == ["1", "vae"] and "100 ± " in lines[1]
    assert lines[-1] == "-  gpt: does not fit: learns text"


def test_one_seed_has_no_interval_and_a_family_without_a_finite_score_ranks_last():
    rows = leaderboard([trial("vae", 0, 90), trial("gan", 0, math.nan)], FID, "min", {}, {})
    assert [row["family"] for row in rows] == ["vae", "gan"]
    assert rows[0][f"{FID}_ci95"] is None and rows[1]["status"] == f"no finite {FID}"
    assert "±" not in table_lines(rows, FID)[1]


def test_seed_agreement_is_kendalls_tau_between_the_seeds_rankings():
    same = [trial(f, s, score + s) for s in (0, 1, 2) for f, score in (("a", 1), ("b", 2), ("c", 3))]
    assert seed_agreement(same, FID) == pytest.approx(1.0)
    reversed_order = [trial(f, 0, x) for f, x in (("a", 1), ("b", 2), ("c", 3))] + [
        trial(f, 1, x) for f, x in (("a", 3), ("b", 2), ("c", 1))
    ]
    assert seed_agreement(reversed_order, FID) == pytest.approx(-1.0)
    assert seed_agreement([trial("a", 0, 1), trial("b", 0, 2)], FID) is None  # one seed: nothing to agree on


def test_the_compare_section_picks_the_shared_metric_and_lists_what_does_not_fit():
    config = load_config("quickstart", ["compare.families=vae,pixelcnn,gpt,cyclegan", "compare.budget_s=2m"])
    compare = config.compare
    assert compare is not None and compare.budget_s == 120 and compare.seeds == 1
    assert (compare.metric, compare.mode) == (FID, "min")
    assert (config.register.gate.metric, config.register.gate.mode) == (FID, "min")  # the winner is gated on it
    fitting, unfit = config.compare_entrants()
    assert fitting == ["vae", "pixelcnn"]
    assert "learns text or music" in unfit["gpt"] and "two image domains" in unfit["cyclegan"]
    likelihood = load_config("quickstart", ["compare.families=pixelcnn,vae", "compare.metric=eval/bits_per_dim"])
    assert likelihood.compare_entrants() == (
        ["pixelcnn"],
        {"vae": "does not report eval/bits_per_dim (compare.metric)"},
    )
    audio = load_config("wavenet-chorales", ["compare.families=wavenet,diffwave"])
    assert audio.compare is not None and audio.compare.metric == "eval/audio_fid"  # what both report


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (["compare.families=vae,nope"], "compare.families: unknown model family 'nope'"),
        (["compare.families=gpt,lstm"], "compare.families: none of them learns image data"),
        (["compare.budget_s=soon"], "compare.budget_s: 'soon' is not a duration"),
        (["compare.budget_flops=1e12"], "compare.budget_flops: ddpm, latent-ddpm, gan"),
        (["compare.families=cyclegan"], "compare.families: no family fits the data (cyclegan: cyclegan translates"),
        (["compare.seeds=0"], "compare.seeds: "),
        (["compare.metric=eval/nope"], "compare.metric: no compared family reports it (ddpm reports eval/"),
    ],
)
def test_a_bad_compare_section_names_its_field(settings, named):
    with pytest.raises(ConfigError) as error:
        load_config("quickstart", settings)
    assert str(error.value).startswith(named) or named in str(error.value), str(error.value)
