"""Likelihood families against the uniform baseline and against a peer library, over seeds.

Run: `python benchmarks/likelihood_bench.py --part table|moons|sunspots|recurrent [--seeds 3] [--steps N] [--record]`
(`pip install normflows` first: the peer, not a genpipe dependency).

- table: bits per dimension on held-out 8x8 digits (17 ink levels; the uniform model scores
  log2(17) = 4.09) of PixelCNN, RealNVP, Glow, the VAE with a categorical decoder (importance-
  weighted bound, k = 100), DDPM (variational bound, 50 t per image) and normflows' multi-scale
  Glow, each trained for the same steps and batch; mean and 95% interval over seeds, and steps/s.
- moons: exact test NLL (nats) of genpipe's RealNVP on scikit-learn's two moons (2-D) against
  normflows' RealNVP of the same couplings and width; a density plot of each.
- sunspots: one-step-ahead forecasts of 1921-1987 after training on 1700-1920 (Zhang 2003's split,
  AR(9) test MSE ~306): genpipe's AR(p) (lag order by AIC, and p = 9), statsmodels' `AutoReg`
  called directly with the same lags, genpipe's LSTM forecaster over seeds, and the naive forecast.
- recurrent: LSTM and GRU against GPT (each `tiny`) on the same byte blocks of the standard
  library's email package, for the same wall-clock seconds on the same cores (equal compute
  here); val bits per byte, tokens/s, and each one's FLOPs per token.

Every arm trains on the same rows in the same order for a seed; only the model differs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_table import append_table, interval  # noqa: E402

LEVELS = 17  # the digits' ink counts 0..16
PLOTS = Path(__file__).resolve().parent / "plots"


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) digits in [-1, 1]: a fixed 80/20 split, the same for every seed."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8 - 1
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(images))
    return images[order[:cut]], images[order[cut:]]


@dataclass
class Trained:
    bits_per_dim: float
    steps_per_second: float


def fit(
    parameters: list[torch.nn.Parameter],
    loss: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> float:
    """Adam on seeded random batches of `data`; steps per second."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        value = loss(data[torch.randint(len(data), (batch,), generator=order)])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 100.0)
        optimizer.step()
    return steps / (time.perf_counter() - start)


def genpipe_arm(family: str, preset: str, lr: float, params: dict | None = None) -> Callable[..., Trained]:
    def run(train: torch.Tensor, test: torch.Tensor, steps: int, batch: int, seed: int) -> Trained:
        from models import build_model, resolve_config

        torch.manual_seed(seed)
        data = {"image_shape": (1, 8, 8), "pixel_levels": LEVELS, "num_classes": 10}
        model = build_model(family, resolve_config(family, preset, params or {}, data)).train()
        (network,) = model.networks()
        speed = fit(
            list(model.parameters()), lambda x: model.loss(network, {"image": x}), train, steps, batch, lr, seed
        )
        model.load_state_dict(model.exported_state(model.state_dict()))
        model.eval()
        return Trained(held_out_bits(model, test, seed), speed)

    return run


@torch.no_grad()
def held_out_bits(model, test: torch.Tensor, seed: int) -> float:
    """Bits per dimension on the test digits: exact (PixelCNN), one dequantisation draw (flows),
    the importance-weighted bound (VAE), the variational bound (DDPM)."""
    from models.diffusion_bound import variational_bound_nats

    generator = torch.Generator().manual_seed(seed)
    dims = test[0].numel()
    if hasattr(model, "bits_per_dim"):
        return float(model.bits_per_dim(test, generator).mean())
    if hasattr(model, "importance_weighted_nll"):
        nats = torch.cat([model.importance_weighted_nll(chunk, 100, generator) for chunk in test.split(60)])
    else:
        nats = variational_bound_nats(model, test, LEVELS, 50, generator)
    return float(nats.mean()) / (dims * math.log(2))


def normflows_glow(scales: int, steps: int, hidden: int, lr: float) -> Callable[..., Trained]:
    """normflows' multi-scale Glow as its README builds it (GlowBlocks, squeezes, merges, a
    diagonal Gaussian per level), trained on the same dequantised digits in [0, 1]."""

    def run(train: torch.Tensor, test: torch.Tensor, step_count: int, batch: int, seed: int) -> Trained:
        import normflows as nf

        torch.manual_seed(seed)
        q0, merges, flows = [], [], []
        for i in range(scales):
            flows.append(
                [
                    nf.flows.GlowBlock(2 ** (scales + 1 - i), hidden, split_mode="channel", scale=True)
                    for _ in range(steps)
                ]
                + [nf.flows.Squeeze()]
            )
            if i > 0:
                merges.append(nf.flows.Merge())
                shape = (2 ** (scales - i), 8 // 2 ** (scales - i), 8 // 2 ** (scales - i))
            else:
                shape = (2 ** (scales + 1), 8 // 2**scales, 8 // 2**scales)
            q0.append(nf.distributions.DiagGaussian(shape))
        model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)

        def dequantised(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            levels = ((x + 1) / 2 * (LEVELS - 1)).round()
            return (levels + torch.rand(x.shape, generator=generator)) / LEVELS

        def nll_nats(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            return x[0].numel() * math.log(LEVELS) - model.log_prob(dequantised(x, generator), None)

        speed = fit(list(model.parameters()), lambda x: nll_nats(x).mean() / 64, train, step_count, batch, lr, seed)
        model.eval()
        with torch.no_grad():
            nats = nll_nats(test, torch.Generator().manual_seed(seed))
        return Trained(float(nats.mean()) / (64 * math.log(2)), speed)

    return run


def table(seeds: int, steps: int, batch: int) -> list[str]:
    arms: dict[str, Callable[..., Trained]] = {
        "PixelCNN (tiny)": genpipe_arm("pixelcnn", "tiny", 3e-3),
        "RealNVP (small)": genpipe_arm("realnvp", "small", 1e-3),
        "Glow (small)": genpipe_arm("glow", "small", 1e-3),
        "normflows Glow (2 levels x 6 blocks, 64 wide)": normflows_glow(2, 6, 64, 1e-3),
        "conv-VAE (tiny, categorical decoder), IW k=100": genpipe_arm(
            "conv-vae", "tiny", 1e-3, {"likelihood": "categorical"}
        ),
        "DDPM (tiny), variational bound": genpipe_arm("ddpm", "tiny", 2e-3),
    }
    train, test = digits_split()
    rows = [f"| uniform over 17 levels | {math.log2(LEVELS):.3f} | | |"]
    for name, arm in arms.items():
        results = []
        for seed in range(seeds):
            results.append(arm(train, test, steps, batch, seed))
            print(name, seed, results[-1], flush=True)
        bits = [r.bits_per_dim for r in results]
        speed = statistics.fmean(r.steps_per_second for r in results)
        rows.append(f"| {name} | {interval(bits)} | {' / '.join(f'{b:.3f}' for b in bits)} | {speed:.1f} |")
    return rows


def moons(seeds: int, steps: int, batch: int) -> list[str]:
    """2-D RealNVP: genpipe's layers (on (2, 1, 1) "images") against normflows' coupling blocks."""
    import normflows as nf
    from sklearn.datasets import make_moons

    from models.flows import FlowConfig, realnvp_layers, standard_normal_log_density

    couplings, hidden = 8, 64
    data = torch.tensor(make_moons(4000, noise=0.05, random_state=0)[0], dtype=torch.float32)
    train, test = data[:3000], data[3000:]
    rows, models = [], {}
    for seed in range(seeds):
        torch.manual_seed(seed)
        config = FlowConfig(image_shape=(2, 1, 1), scales=1, steps=couplings - 1, hidden=hidden)
        layers = torch.nn.ModuleList(realnvp_layers(config)[0])

        def genpipe_log_density(x: torch.Tensor, layers: torch.nn.ModuleList = layers) -> torch.Tensor:
            z, log_density = x[:, :, None, None], torch.zeros(len(x))
            for layer in layers:
                z, log_density = layer(z, log_density)
            return log_density + standard_normal_log_density(z)

        torch.manual_seed(seed)
        blocks = []
        for _ in range(couplings):
            blocks += [
                nf.flows.AffineCouplingBlock(nf.nets.MLP([1, hidden, hidden, 2], init_zeros=True)),
                nf.flows.Permute(2, mode="swap"),
            ]
        peer = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), blocks)
        for name, log_density, parameters in (
            ("genpipe RealNVP", genpipe_log_density, list(layers.parameters())),
            ("normflows RealNVP", peer.log_prob, list(peer.parameters())),
        ):
            speed = fit(parameters, lambda x, f=log_density: -f(x).mean(), train, steps, batch, 1e-3, seed)
            with torch.no_grad():
                nll = float(-log_density(test).mean())
            rows.append((name, seed, nll, speed))
            models[name] = log_density
            print(rows[-1], flush=True)
    plot_densities(models, test)
    lines = []
    for name in ("genpipe RealNVP", "normflows RealNVP"):
        mine = [r for r in rows if r[0] == name]
        lines.append(
            f"| {name} ({couplings} couplings, {hidden} wide) | {interval([r[2] for r in mine])} | "
            f"{statistics.fmean(r[3] for r in mine):.1f} |"
        )
    return lines


def plot_densities(models: dict[str, Callable[[torch.Tensor], torch.Tensor]], test: torch.Tensor) -> None:
    """Each model's density on a grid over the moons, side by side, as a PNG."""
    from PIL import Image

    side = 160
    xs, ys = torch.linspace(-1.5, 2.5, side), torch.linspace(-1.0, 1.5, side)
    grid = torch.stack(torch.meshgrid(xs, ys.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    panels = []
    for log_density in models.values():
        with torch.no_grad():  # a point where a flow's inverse overflows has no density to show
            density = torch.nan_to_num(log_density(grid).exp(), nan=0.0, posinf=0.0).reshape(side, side)
        panels.append((255 * density / density.max().clamp_min(1e-12)).clamp(0, 255).byte())
    PLOTS.mkdir(exist_ok=True)
    Image.fromarray(torch.cat(panels, dim=1).numpy(), mode="L").resize((4 * side, 2 * side)).save(
        PLOTS / "moons_density.png"
    )


def sunspots(seeds: int, steps: int) -> list[str]:
    """RMSE / MSE / MAE on the held-out years, every model from the same normalised windows."""
    import numpy as np
    from statsmodels import datasets
    from statsmodels.tsa.ar_model import AutoReg

    from data_prep.modalities.series.build import chosen_lags
    from models import build_model, resolve_config

    frame = datasets.sunspots.load_pandas().data
    frame = frame[frame["YEAR"] <= 1987]
    values = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)
    first = int(np.searchsorted(frame["YEAR"].to_numpy(), 1921))
    context = 12
    mean, std = values[:first].mean(), values[:first].std()
    normalised = (values - mean) / std
    windows = torch.tensor(np.lib.stride_tricks.sliding_window_view(normalised, context + 1), dtype=torch.float32)
    train, test = windows[: first - context], windows[first - context :]
    truth = values[first:]

    def scores(predicted: np.ndarray) -> tuple[float, float, float]:
        error = predicted - truth
        return float(np.sqrt(np.mean(error**2))), float(np.mean(error**2)), float(np.mean(np.abs(error)))

    def genpipe(family: str, params: dict, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        data = {"context_len": context, "criterion_lags": {"aic": aic_lags, "bic": aic_lags}}
        model = build_model(family, resolve_config(family, "tiny", params, data))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=0.001)  # as the pipeline's
        order = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            rows = torch.randint(len(train), (64,), generator=order)
            loss = model.loss(model.network_name, {"window": train[rows]})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay.step()
        with torch.no_grad():
            predicted, _ = model.eval().predict(test[:, :-1])
        return predicted.numpy() * std + mean

    def autoreg(lags: int) -> np.ndarray:
        fitted = AutoReg(normalised[:first], lags=lags, trend="c").fit().params
        rows = np.stack([normalised[t - lags : t][::-1] for t in range(first, len(values))])
        return (fitted[0] + rows @ fitted[1:]) * std + mean

    aic_lags = chosen_lags(normalised[:first], context, "aic")
    orders = {9: "p = 9 (Zhang's order)"}
    orders[aic_lags] = f"p = {aic_lags} (AIC's pick{', as Zhang' if aic_lags == 9 else ''})"
    arms: list[tuple[str, list[np.ndarray]]] = []
    for lags, label in orders.items():
        arms.append((f"statsmodels AutoReg, {label}", [autoreg(lags)]))
        arms.append((f"genpipe ar, {label}", [genpipe("ar", {"lags": lags}, seed) for seed in range(seeds)]))
    arms += [
        ("genpipe lstm-forecaster (tiny)", [genpipe("lstm-forecaster", {}, seed) for seed in range(seeds)]),
        ("naive (next year = this year)", [values[first - 1 : -1]]),
    ]
    lines = []
    for name, predictions in arms:
        rmse, mse, mae = zip(*(scores(p) for p in predictions), strict=True)
        lines.append(f"| {name} | {interval(list(rmse))} | {statistics.fmean(mse):.1f} | {statistics.fmean(mae):.2f} |")
        print(lines[-1], flush=True)
    return lines


def recurrent(seconds: float, batch: int) -> list[str]:
    """GPT, LSTM and GRU on the same byte blocks for the same seconds."""
    import email

    from models import build_model, resolve_config

    files = sorted(Path(email.__file__).parent.rglob("*.py"))
    cut = int(0.8 * len(files))
    train, val = (torch.tensor(list(b"".join(f.read_bytes() for f in part))) for part in (files[:cut], files[cut:]))
    block = 128

    def blocks(data: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.stack([data[r : r + block + 1] for r in rows.tolist()])

    val_rows = torch.arange(0, len(val) - block - 1, block)[:200]
    lines = []
    for family, lr in (("gpt", 3e-3), ("lstm", 3e-3), ("gru", 3e-3)):
        torch.manual_seed(0)
        params = {"block_size": block} if family == "gpt" else {}
        model = build_model(family, resolve_config(family, "tiny", params, {"vocab_size": 257})).train()
        (network,) = model.networks()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        order, steps, start = torch.Generator().manual_seed(0), 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            loss = model.loss(
                network, {"tokens": blocks(train, torch.randint(len(train) - block - 1, (batch,), generator=order))}
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            steps += 1
        elapsed = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            val_loss = statistics.fmean(
                float(model.loss(network, {"tokens": blocks(val, rows)})) for rows in val_rows.split(20)
            )
        flops = model.flops_per_token(block)
        parameters = sum(p.numel() for p in model.parameters()) / 1e6
        lines.append(
            f"| {family} (tiny) | {parameters:.2f}M | {steps} | {steps * batch * block / elapsed:,.0f} | "
            f"{flops / 1e6:.1f} | {val_loss / math.log(2):.3f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["table", "moons", "recurrent", "sunspots"], required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120, help="recurrent: each model's training time")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.part == "table":
        rows = table(args.seeds, args.steps, args.batch)
        title, columns = "Likelihood on digits (issue 18)", ["model", "bits/dim (95% CI)", "per seed", "steps/s"]
        about = [
            f"8x8 digits, 17 levels, 1437 train / 360 test, {args.steps} steps of batch {args.batch}, "
            f"{args.seeds} seeds (a seed sets the initialisation and the batch order)."
        ]
    elif args.part == "moons":
        rows = moons(args.seeds, args.steps, args.batch)
        title, columns = "Flows on two moons (issue 18)", ["model", "test NLL, nats (95% CI)", "steps/s"]
        about = [
            f"make_moons(noise 0.05): 3000 train / 1000 test points, {args.steps} steps of batch {args.batch}, "
            f"{args.seeds} seeds; densities in benchmarks/plots/moons_density.png (genpipe left)."
        ]
    elif args.part == "sunspots":
        rows = sunspots(args.seeds, args.steps)
        title, columns = "Sunspots, 1921-1987 held out (issue 18)", ["model", "RMSE (95% CI)", "MSE", "MAE"]
        about = [
            f"Yearly sunspots 1700-1920 train, 1921-1987 one-step-ahead test (Zhang 2003: AR(9) MSE ~306); "
            f"windows of 12, genpipe models {args.steps} Adam steps of batch 64, {args.seeds} seeds."
        ]
    else:
        rows = recurrent(args.seconds, 16)
        title, columns = (
            "Recurrent models against GPT at equal compute (issue 18)",
            ["model", "parameters", "steps", "tokens/s", "MFLOPs/token", "val bits/byte"],
        )
        about = [
            f"Bytes of the standard library's email package (80/20 by file), blocks of 128, batch 16, "
            f"{args.seconds:.0f} s of training each on the same cores."
        ]
    print("\n".join(rows))
    if args.record:
        append_table(title, about, columns, rows)


if __name__ == "__main__":
    main()
