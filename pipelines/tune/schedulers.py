"""What decides a sweep's trials: the search algorithm, ASHA (whose rungs survive a killed
sweep) and the budget of trial-epochs."""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.stopper import Stopper

from pipelines.config import PipelineConfig
from storage import exists, join, read_bytes, write_bytes_atomic


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


SEARCH_PROPERTIES = ("_metric", "_mode", "_metric_op")


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive a killed sweep. A restored Tuner gets its search algorithm's state
    back but its scheduler as it was pickled at the start (empty rungs), so resumed trials would be
    judged only against each other. This one writes its state (what Ray's own `save` writes) to
    `state_uri` after every result, and reads it back when the restored Tuner unpickles it."""

    def __init__(self, state_uri: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.state_uri = state_uri

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        write_bytes_atomic(self.state_uri, pickle.dumps(self.__dict__))
        return decision

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if exists(self.state_uri):  # written by this sweep's own driver, beside Tune's tuner.pkl
            saved = pickle.loads(read_bytes(self.state_uri))
            # The metric and mode stay unset: the restored Tuner sets them, and refuses a scheduler
            # that already has them.
            self.__dict__.update({k: v for k, v in saved.items() if k not in SEARCH_PROPERTIES})


def trial_scheduler(config: PipelineConfig, sweep_uri: str):
    settings = config.sweep
    if settings.scheduler == "asha":
        return ResumableASHA(
            join(sweep_uri, "asha-state.pkl"),
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
