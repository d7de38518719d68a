"""The steps of a workflow by name, in order: what the CLI's grammar needs without importing the
steps themselves (torch, Ray, MLflow), so that `genpipe --help` answers at once."""

from __future__ import annotations

STEP_ORDER = ("prepare", "train", "tune", "compare", "evaluate", "register")
RUN_STEPS = ("prepare", "train", "evaluate", "register")  # genpipe run
SWEEP_STEPS = ("prepare", "tune", "evaluate", "register")  # genpipe tune: the best trial goes on
COMPARE_STEPS = ("prepare", "compare", "evaluate", "register")  # genpipe compare: the winner goes on
