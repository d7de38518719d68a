"""What decides a sweep's trials: the search algorithm, ASHA (whose rungs survive a killed
sweep) and the budget of trial-epochs."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.stopper import Stopper

from pipelines.config import PipelineConfig
from storage import exists, join, read_json, write_json_atomic


def search_algorithm(config: PipelineConfig):
    """The search algorithm with the concurrency limit built in (Tune ignores
    `max_concurrent_trials` for a search algorithm passed in that is not a `Searcher`)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    settings = config.sweep
    if settings.search == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(sampler=TPESampler(seed=settings.seed)), settings.max_concurrent)
    return BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent)


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive a killed sweep. A restored Tuner gets its search algorithm's state
    back but its scheduler as it was pickled at the start (empty rungs), so resumed trials would be
    judged only against each other. This one writes its rungs to `state_uri` as JSON after every
    result, and reads them back when the restored Tuner unpickles it: JSON, not a pickle, so the
    storage never hands this process code to run."""

    def __init__(self, state_uri: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.state_uri = state_uri

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        write_json_atomic(self.state_uri, self._rung_state())
        return decision

    def _rung_state(self) -> dict[str, Any]:
        """Every bracket's rungs (milestone, {trial id: score}), each trial's bracket, the counters."""
        brackets = self._brackets
        return {
            "counter": self._counter,
            "num_stopped": self._num_stopped,
            "trial_bracket": {trial: brackets.index(bracket) for trial, bracket in self._trial_info.items()},
            "rungs": [
                [
                    [milestone, {trial: float(score) for trial, score in recorded.items()}]
                    for milestone, recorded in b._rungs
                ]
                for b in brackets
            ],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if not exists(self.state_uri):  # written by this sweep's own driver, beside Tune's tuner.pkl
            return
        saved = read_json(self.state_uri)
        if len(saved["rungs"]) != len(self._brackets):
            raise ValueError(f"{self.state_uri}: {len(saved['rungs'])} brackets, this sweep has {len(self._brackets)}")
        for bracket, rungs in zip(self._brackets, saved["rungs"], strict=True):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
        self._trial_info = {trial: self._brackets[int(index)] for trial, index in saved["trial_bracket"].items()}
        self._counter, self._num_stopped = int(saved["counter"]), int(saved["num_stopped"])


def trial_scheduler(config: PipelineConfig, sweep_uri: str):
    settings = config.sweep
    if settings.scheduler == "asha":
        return ResumableASHA(
            join(sweep_uri, "asha-state.json"),
            max_t=config.train.epochs,
            grace_period=min(settings.grace_period, config.train.epochs),
            reduction_factor=settings.reduction_factor,
        )
    return FIFOScheduler()


class TrialEpochBudget(Stopper):
    """Stops the whole sweep once its trials have run `budget` epochs between them (the budget
    ASHA and plain random search are compared on in benchmarks/sweep_bench.py)."""

    def __init__(self, budget: int):
        self.budget, self.spent = budget, 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.spent += 1
        return False

    def stop_all(self) -> bool:
        return self.spent >= self.budget
