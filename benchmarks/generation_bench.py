"""Text generation with and without the KV cache, in the same run: tokens/s at 200 new tokens.

Run: `python benchmarks/generation_bench.py [--record]`.

Two GPT shapes (the `tiny` preset and nanoGPT's character-level Shakespeare shape, 6 x 384),
untrained (speed does not depend on the weights), a 16-token prompt, 200 new tokens sampled at
temperature 1, batch 1 and 8; the median of 3 repeats each. Both ways must write the same tokens
(the same generator), which the script checks before it reports a speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.results_table import append_table  # noqa: E402

SHAPES = {
    "tiny (4 x 128)": {"preset": "tiny", "params": {}},
    "6 x 384 (nanoGPT shakespeare-char)": {"preset": "tiny", "params": {"n_layer": 6, "n_head": 6, "n_embd": 384}},
}
PROMPT, NEW_TOKENS, REPEATS = 16, 200, 3


def timed(model, prompt: torch.Tensor, use_cache: bool, new_tokens: int = NEW_TOKENS) -> tuple[float, torch.Tensor]:
    """Seconds to sample `new_tokens` after `prompt` (seeded, on the prompt's device), and the text."""
    generator = torch.Generator(device=prompt.device).manual_seed(0)
    if prompt.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = model.generate(prompt, new_tokens, 1.0, None, generator, use_cache=use_cache)
    if prompt.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def measure(shape: dict, batch: int) -> dict[str, float]:
    import models

    torch.manual_seed(0)
    config = models.resolve_config("gpt", shape["preset"], shape["params"], {"vocab_size": 257})
    model = models.build_model("gpt", config).eval()
    prompt = torch.randint(0, 257, (batch, PROMPT), generator=torch.Generator().manual_seed(1))
    timed(model, prompt, True)  # warm-up
    seconds = {}
    for use_cache in (True, False):
        runs = [timed(model, prompt, use_cache) for _ in range(REPEATS)]
        seconds[use_cache] = statistics.median(s for s, _ in runs)
        if use_cache:
            cached_text = runs[0][1]
        elif not torch.equal(cached_text, runs[0][1]):
            raise SystemExit("the cached and uncached generations differ")
    return {
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "cached_tokens_per_s": batch * NEW_TOKENS / seconds[True],
        "uncached_tokens_per_s": batch * NEW_TOKENS / seconds[False],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, shape in SHAPES.items():
        for batch in (1, 8):
            result = measure(shape, batch)
            speedup = result["cached_tokens_per_s"] / result["uncached_tokens_per_s"]
            rows.append(
                f"| {name}, {result['parameters_m']:.1f}M | {batch} | {result['cached_tokens_per_s']:,.0f} | "
                f"{result['uncached_tokens_per_s']:,.0f} | **{speedup:.2f}x** |"
            )
            print(rows[-1], flush=True)
    if args.record:
        append_table(
            "Text generation with the KV cache (issue 19)",
            [
                "`python benchmarks/generation_bench.py --record`: a 16-token prompt, 200 new tokens sampled at",
                "temperature 1, median of 3; both ways write the same tokens (checked).",
            ],
            ["model", "batch", "with the cache, tokens/s", "without, tokens/s", "speed-up"],
            rows,
            extra=f", {args.threads} threads",
        )


if __name__ == "__main__":
    main()
