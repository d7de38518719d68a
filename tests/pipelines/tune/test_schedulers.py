"""The sweep's schedulers on their own: ASHA whose rungs survive a killed driver."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

from pipelines.tune.schedulers import ResumableASHA


def test_asha_rungs_survive_a_restore(tmp_path):
    """Tune restores a Tuner with the scheduler pickled at its start; ResumableASHA reloads the
    rungs it recorded since, so a trial resumed after a kill is still judged against the others."""
    scheduler = ResumableASHA(str(tmp_path / "asha.json"), max_t=8, grace_period=1, reduction_factor=2)
    at_start = pickle.dumps(scheduler)  # what tuner.pkl holds
    scheduler.set_search_properties("eval/classifier_fid", "min")  # as Tune does when it starts
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"training_iteration": 1, "eval/classifier_fid": 100.0}) == "CONTINUE"

    restored = pickle.loads(at_start)  # the driver was killed; Tuner.restore unpickles tuner.pkl
    assert restored.set_search_properties("eval/classifier_fid", "min")  # accepted again after a restore
    assert restored.on_trial_result(None, bad, {"training_iteration": 1, "eval/classifier_fid": 900.0}) == "STOP"
    state = json.loads((tmp_path / "asha.json").read_text())  # JSON: nothing in it can run
    assert state["trial_bracket"] == {"good": 0, "bad": 0}
    assert {"good": -100.0, "bad": -900.0} in [rung[1] for rung in state["rungs"][0]]  # scores x metric_op
    (tmp_path / "asha.json").unlink()
    fresh = pickle.loads(at_start)  # without the saved state the bad trial would have gone on
    fresh.set_search_properties("eval/classifier_fid", "min")
    fresh.on_trial_add(None, bad)
    assert fresh.on_trial_result(None, bad, {"training_iteration": 1, "eval/classifier_fid": 900.0}) == "CONTINUE"
