"""Training throughput: samples/s and, for language models, tokens/s and MFU."""

from __future__ import annotations

import time

from models.base import GenerativeModel
from models.capabilities import language_model


class Throughput:
    """Samples/s and, for language models, tokens/s and MFU over a logging window."""

    def __init__(self, model: GenerativeModel, tokens_per_sample: int | None, world: int, peak: float | None):
        self.world, self.peak = world, peak
        self.tokens_per_sample = tokens_per_sample
        tokens = self.tokens_per_sample
        self.flops_per_token = language_model(model).flops_per_token(tokens) if tokens else None
        self.restart()

    def restart(self) -> None:
        self.started, self.samples = time.perf_counter(), 0

    def metrics(self) -> dict[str, float]:
        samples_per_s = self.samples * self.world / (time.perf_counter() - self.started)
        result = {"train/samples_per_s": samples_per_s}
        if self.tokens_per_sample:
            tokens_per_s = samples_per_s * self.tokens_per_sample
            result["train/tokens_per_s"] = tokens_per_s
            if self.peak and self.flops_per_token:
                result["train/mfu"] = self.flops_per_token * tokens_per_s / (self.world * self.peak)
        return result
