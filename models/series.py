"""Time-series forecasters: the classical AR(p) and an LSTM, both probabilistic.

Each reads a context of normalised values and gives a Gaussian over the next one (a mean and a
log-variance), trained by its negative log-likelihood. For AR(p) the mean is a linear function of
the last p values and the variance one learned constant, so the likelihood's optimum is the
least-squares fit statsmodels' `AutoReg` computes (the same model, fitted by gradient steps on
the same windows). The lag order comes from the data when not given: AIC or BIC over 1..seq_len
(statsmodels' `ar_select_order` on the train values, recorded in the dataset's manifest).

Samples are forecast paths: each step draws the next value and feeds it back, from the end of the
series the model was trained on (`last_values`) or from a given context; values are returned in
the data's own units.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from models.base import GenerativeModel, ModelConfig
from typed_errors import FieldError, OptionError

LOG_2PI = math.log(2 * math.pi)
SERIES_METRICS = ("eval/rmse", "eval/mae", "eval/nll", "eval/interval_coverage", "eval/naive_rmse")


class SeriesConfig(ModelConfig):
    context_len: int = Field(gt=0, description="values of context per window, from the data (seq_len)")
    series_mean: float = Field(0.0, description="the data's normaliser, from the data")
    series_std: float = Field(1.0, gt=0, description="the data's normaliser, from the data")
    last_values: list[float] = Field(default_factory=list, description="the series' last normalised values")
    horizon: int = Field(20, gt=0, description="sampling: steps forecast")


class ARConfig(SeriesConfig):
    lags: int | None = Field(None, gt=0, description="p; default: the order the information criterion picks")
    criterion: Literal["aic", "bic"] = "aic"
    criterion_lags: dict[str, int] = Field(
        default_factory=dict, description="from the data: p chosen by each criterion"
    )

    @model_validator(mode="after")
    def _lags_fit_the_context(self) -> ARConfig:
        if self.order > self.context_len:
            raise FieldError(
                "lags",
                f"AR({self.order}) needs {self.order} values; the windows hold {self.context_len} (the data's seq_len)",
            )
        return self

    @property
    def order(self) -> int:
        return self.lags or self.criterion_lags.get(self.criterion) or min(self.context_len, 1)


class LSTMForecasterConfig(SeriesConfig):
    hidden: int = Field(64, gt=0)
    layers: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class ARNetwork(nn.Module):
    """next ~ N(w . x[-p:] + b, exp(log_variance))."""

    def __init__(self, order: int):
        super().__init__()
        self.order = order
        self.linear = nn.Linear(order, 1)
        self.log_variance = nn.Parameter(torch.zeros(1))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        mean = self.linear(context[:, -self.order :])
        return torch.cat([mean, self.log_variance.expand(len(context), 1)], dim=1)


class LSTMForecastNetwork(nn.Module):
    """An LSTM over the context; its last state gives the next value's mean and log-variance."""

    def __init__(self, config: LSTMForecasterConfig):
        super().__init__()
        self.lstm = nn.LSTM(
            1, config.hidden, config.layers, batch_first=True, dropout=config.dropout if config.layers > 1 else 0.0
        )
        self.head = nn.Linear(config.hidden, 2)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(context[:, :, None])
        return self.head(output[:, -1])


class Forecaster(GenerativeModel):
    """What the series evaluator and `genpipe sample` ask of a forecaster."""

    config: SeriesConfig

    modality = "series"
    default_gate = ("eval/rmse", "min")
    network_name: ClassVar[str]

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return SERIES_METRICS

    def networks(self) -> dict[str, nn.Module]:
        return {self.network_name: getattr(self, self.network_name)}

    def predict(self, context: torch.Tensor, bare: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of the next normalised value after each context row (B, L)."""
        output = self.run_network(self.network_name, context, bare=bare)
        return output[:, 0], output[:, 1].clamp(-12, 8)

    def to_data_units(self, mean: torch.Tensor, log_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, standard deviation) in the data's units from a prediction in normalised ones."""
        return mean * self.config.series_std + self.config.series_mean, (
            0.5 * log_variance
        ).exp() * self.config.series_std

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gaussian NLL of each window's last value given the values before it."""
        window = batch["window"].float()
        mean, log_variance = self.predict(window[:, :-1], bare=False)
        return 0.5 * (LOG_2PI + log_variance + (window[:, -1] - mean).pow(2) * (-log_variance).exp()).mean()

    def sample_options(self, n: int, horizon: int | None = None, **other: Any) -> dict[str, Any]:
        """`horizon` (50): steps to forecast."""
        self.refuse_options(other)
        if horizon is None:
            return {}
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
            raise OptionError("horizon", "must be a whole number > 0", horizon)
        return {"horizon": horizon}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        horizon: int | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`n` forecast paths (n, horizon) in the data's units, each drawn step by step from the
        end of the training series (or from `context`, normalised values, (L,) or (n, L))."""
        c = self.config
        device = next(self.parameters()).device
        start = torch.tensor(c.last_values, dtype=torch.float32) if context is None else context.float().cpu()
        if start.numel() == 0:
            start = torch.zeros(c.context_len)
        history = start.expand(n, -1).clone().to(device) if start.dim() == 1 else start.to(device)
        steps = []
        for _ in range(horizon or c.horizon):
            mean, log_variance = self.predict(history[:, -c.context_len :])
            noise = torch.randn(mean.shape, generator=generator, device=device)
            following = mean + (0.5 * log_variance).exp() * noise
            steps.append(following)
            history = torch.cat([history, following[:, None]], dim=1)
        return torch.stack(steps, dim=1) * c.series_std + c.series_mean


class AR(Forecaster):
    """AR(p) with Gaussian noise: the classical linear autoregression."""

    config: ARConfig

    family = "ar"
    config_class = ARConfig
    network_name = "ar"
    # An AR model has no size: its presets pick the criterion for p (`tiny`, as every family has, is AIC's).
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "aic": {"criterion": "aic"},
        "bic": {"criterion": "bic"},
        "tiny": {"criterion": "aic"},
    }

    def __init__(self, config: ARConfig):
        super().__init__(config)
        self.ar = ARNetwork(config.order)


class LSTMForecaster(Forecaster):
    """A neural autoregressive forecaster: an LSTM over the context window."""

    config: LSTMForecasterConfig

    family = "lstm-forecaster"
    config_class = LSTMForecasterConfig
    network_name = "forecaster"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": 32, "layers": 1},
        "small": {"hidden": 64, "layers": 2},
    }

    def __init__(self, config: LSTMForecasterConfig):
        super().__init__(config)
        self.forecaster = LSTMForecastNetwork(config)
