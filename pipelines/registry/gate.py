"""The champion/challenger gate: a new version takes the alias only when it beats the champion
on the same evaluation (same split, same classifier, same sampling settings: the evaluation key)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config import GateConfig


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger: float
    champion: float | None
    champion_version: int | None

    def tags(self) -> dict[str, str]:
        tags = {
            "genpipe.gate.decision": "promoted" if self.promote else "rejected",
            "genpipe.gate.reason": self.reason,
            "genpipe.gate.challenger_score": f"{self.challenger:.6g}",
        }
        if self.champion is not None:
            tags["genpipe.gate.champion_score"] = f"{self.champion:.6g}"
            tags["genpipe.gate.champion_version"] = str(self.champion_version)
        return tags


def decide(
    gate: GateConfig, challenger: dict[str, float], champion: dict[str, float] | None, champion_version: int | None
) -> Decision:
    if gate.metric not in challenger:
        raise ValueError(
            f"register.gate.metric: {gate.metric!r} is not among the evaluation's metrics "
            f"({', '.join(sorted(challenger))})"
        )
    score = challenger[gate.metric]
    if champion is None:
        return Decision(True, "no champion yet", score, None, None)
    best = champion[gate.metric]
    improvement = best - score if gate.mode == "min" else score - best
    better = "lower" if gate.mode == "min" else "higher"
    if improvement > gate.min_improvement:
        reason = f"{gate.metric} {score:.4g} beats the champion's {best:.4g} ({better} is better)"
        return Decision(True, reason, score, best, champion_version)
    reason = (
        f"{gate.metric} {score:.4g} does not beat the champion's {best:.4g} by more than "
        f"{gate.min_improvement:g} ({better} is better)"
    )
    return Decision(False, reason, score, best, champion_version)
