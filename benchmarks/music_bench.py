"""Language models of music on Bach's chorales (issue 32): GPT against an LSTM at equal compute,
over seeds, against a unigram and a bigram (Markov) model of the same event ids and against
held-out real chorales.

`python benchmarks/music_bench.py [--seeds 3] [--gpt-steps 200] [--record]`

The data is the built-in `gpt-chorales` dataset (prepared by genpipe's own `prepare`, all ~410
chorales). Each model trains in this process with the loop's optimiser settings (AdamW, warm-up
then cosine, batch 16 of 256 + 1 ids): the LSTM gets the training FLOPs GPT's steps cost (each
family's own `flops_per_token`), so the comparison is at equal compute, not equal steps. Every
model is then scored by the pipeline's music evaluation (pipelines/evaluate/music.py): bits per
token on the val blocks, and 64 pieces of 256 ids against the held-out blocks. `--record`
appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bare_training import prepared_builtin, train_steps  # noqa: E402
from benchmarks.results_table import append_table, interval  # noqa: E402

BATCH = 16
COLUMNS = ["model", "bits/token", "pitch-class dist.", "interval dist.", "note-density dist.", "in-key share", "steps"]
STATISTICS = ("pitch_class_distance", "interval_distance", "note_density_distance", "in_key_share")


def train(family: str, vocab: int, blocks: torch.Tensor, seed: int, steps: int) -> torch.nn.Module:
    """The family's tiny preset trained for `steps` steps of batch 16, as the pipeline's loop would."""
    from models import build_model, resolve_config

    torch.manual_seed(seed)
    params = {"block_size": blocks.shape[1] - 1} if family == "gpt" else {}
    model = build_model(family, resolve_config(family, "tiny", params, {"vocab_size": vocab, "modality": "music"}))
    decay = 0.1 if family == "gpt" else 0.0

    def batch(order: torch.Generator) -> dict[str, torch.Tensor]:
        return {"tokens": blocks[torch.randint(len(blocks), (BATCH,), generator=order)]}

    return train_steps(model, batch, steps, seed, weight_decay=decay)


def markov_scores(train_ids: np.ndarray, val: torch.Tensor, vocab: int, order: int, seed: int, manifest, settings):
    """A unigram (order 0) or bigram (order 1) model of the ids, add-0.1 smoothed: bits per token on
    the val blocks' targets, and the statistics of its pieces against the held-out blocks."""
    from pipelines.evaluate.music import held_out_pieces
    from pipelines.evaluate.music_metrics import compare

    counts = np.full((vocab, vocab) if order else (vocab,), 0.1)
    if order:
        np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    else:
        np.add.at(counts, train_ids, 1)
    probabilities = counts / counts.sum(axis=-1, keepdims=True)
    blocks = val.numpy()
    targets = blocks[:, 1:]
    chosen = probabilities[blocks[:, :-1], targets] if order else probabilities[targets]
    bits = float(-np.log2(chosen).mean())
    tokenizer, held_out, ticks = held_out_pieces(manifest, settings)
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(min(64, settings.num_samples)):
        ids, token = [], tokenizer.eot_id
        for _ in range(blocks.shape[1] - 1):
            token = rng.choice(vocab, p=probabilities[token] if order else probabilities)
            ids.append(int(token))
        pieces.append(tokenizer.decode(ids))
    return {"bits_per_token": bits, **compare(pieces, held_out, ticks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--gpt-steps", type=int, default=200)
    parser.add_argument("--storage", default=None, help="where the dataset is prepared (a temporary folder)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from data_prep.modalities.music.modality import music_info
    from data_prep.readers import read_split
    from models import build_model, resolve_config
    from pipelines.config import EvaluateConfig
    from pipelines.evaluate.music import held_out_pieces, music_scorer
    from pipelines.evaluate.music_metrics import compare

    storage = args.storage or tempfile.mkdtemp(prefix="music-bench-")
    manifest = prepared_builtin("gpt-chorales", storage)
    info = music_info(manifest)
    train_blocks = torch.from_numpy(read_split(manifest, "train")["tokens"])
    val_blocks = torch.from_numpy(read_split(manifest, "val")["tokens"])
    settings = EvaluateConfig(num_samples=64, temperature=1.0, top_k=None)
    score, _ = music_scorer(manifest, settings)
    tokens_per_step = BATCH * (train_blocks.shape[1] - 1)

    def flops_per_token(family: str) -> float:
        params = {"block_size": info.seq_len} if family == "gpt" else {}
        data = {"vocab_size": info.vocab_size, "modality": "music"}
        return build_model(family, resolve_config(family, "tiny", params, data)).flops_per_token(info.seq_len)

    budget = flops_per_token("gpt") * tokens_per_step * args.gpt_steps
    steps = {family: round(budget / (flops_per_token(family) * tokens_per_step)) for family in ("gpt", "lstm")}
    results: dict[str, list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        for family in ("gpt", "lstm"):
            started = time.monotonic()
            model = train(family, info.vocab_size, train_blocks, seed, steps[family])
            settings_seed = EvaluateConfig(**{**settings.model_dump(), "seed": seed})
            scored = music_scorer(manifest, settings_seed)[0](model, None) if seed else score(model, None)
            row = {k.removeprefix("eval/"): v for k, v in scored.items()} | {"seconds": time.monotonic() - started}
            results.setdefault(family, []).append(row)
            print(f"{family} seed {seed}: {row}", flush=True)
        train_ids = train_blocks.reshape(-1).numpy()
        for order, name in ((0, "unigram"), (1, "bigram (Markov)")):
            row = markov_scores(train_ids, val_blocks, info.vocab_size, order, seed, manifest, settings)
            results.setdefault(name, []).append(row)
            print(f"{name} seed {seed}: {row}", flush=True)
    tokenizer, held_out, ticks = held_out_pieces(manifest, settings)
    real = compare([tokenizer.decode(b.tolist()) for b in train_blocks[: len(held_out)]], held_out, ticks)

    def line(name: str, rows: list[dict[str, float]], step_count: str) -> str:
        cells = [interval([r["bits_per_token"] for r in rows])] + [
            interval([r[stat] for r in rows]) for stat in STATISTICS
        ]
        return f"| {name} | " + " | ".join(cells) + f" | {step_count} |"

    rows = [
        line("GPT tiny (0.85M)", results["gpt"], str(steps["gpt"])),
        line("LSTM tiny, same FLOPs", results["lstm"], str(steps["lstm"])),
        line("bigram (Markov)", results["bigram (Markov)"], "counts"),
        line("unigram", results["unigram"], "counts"),
        "| real chorales (train blocks) | — | " + " | ".join(f"{real[s]:.3f}" for s in STATISTICS) + " | — |",
    ]
    print("\n".join(rows))
    if args.record:
        about = [
            f"`python benchmarks/music_bench.py --seeds {args.seeds} --gpt-steps {args.gpt_steps}`: the built-in",
            f"gpt-chorales data ({info.pieces['train']} train / {info.pieces['val']} val chorales, "
            f"{info.tokens_in_blocks['train']:,} train ids, vocabulary {info.vocab_size}); each model trained in one",
            "process (2 threads, batch 16 x 256 ids) and scored by the pipeline's music evaluation: bits per token",
            "on the val blocks and 64 pieces of 256 ids against the held-out blocks (distances: 0 is alike). Mean",
            f"± 95% t-interval over {args.seeds} seeds. The LSTM trains for the FLOPs GPT's steps cost.",
        ]
        append_table("Music: GPT vs LSTM vs Markov on Bach chorales (issue 32)", about, COLUMNS, rows)


if __name__ == "__main__":
    main()
