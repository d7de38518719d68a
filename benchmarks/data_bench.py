"""Data at size: prepare a text corpus, train on it streaming, and measure the training input.

Run: `python benchmarks/data_bench.py [--corpus-mb 2048] [--train-steps 300] [--record]`.

What it measures, in one run on this machine:
- a corpus of `--corpus-mb` MB of Python source (the standard library, repeated with a counter so
  no two copies are equal) in 4 files, so each file is read in 1 MB chunks;
- `genpipe run` on it with the tiny GPT, byte tokens, the split streamed (`device_cache_mb: 0`):
  prepare MB/s, train steps/s, and the peak memory (PSS) of every process of the run;
- ingest into the step, no model: samples/s of genpipe's streamed feed (and of its device cache)
  against a torch DataLoader over the same Parquet shards and against mosaicml-streaming reading
  MDS shards of the same blocks (when `streaming` can be imported), each over one epoch.
`--record` appends the results to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "RESULTS.md"
BATCH = 64

from quickstart_bench import TreeMemory, machine  # noqa: E402


def memory_of(pid: int) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes from /proc/PID/smaps_rollup. The anonymous part is the
    process's own heap: a Ray worker's PSS and USS also hold the shared object store's pages it
    wrote or read, which Ray caps for the node (object_store_memory)."""
    found = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Pss_Anon"):
                found[name] = int(rest.split()[0]) * 1024
    return found.get("Pss", 0), found.get("Pss_Anon", 0)


class ProcessPeaks(TreeMemory):
    """The peak heap (anonymous PSS) of each process in a tree, by its command, besides the peak
    of the tree's summed PSS."""

    def __init__(self, pid: int, interval: float = 1.0):
        super().__init__(pid, interval)
        self.peaks: dict[str, int] = {}

    def measure(self, process: psutil.Process) -> int:
        pss, heap = memory_of(process.pid)
        name = " ".join(process.cmdline()[:3])[:70] or process.name()
        if name.startswith("ray::"):
            name = name.split()[0]
        self.peaks[name] = max(self.peaks.get(name, 0), heap)
        return pss


def write_corpus(folder: Path, megabytes: int, files: int = 4) -> int:
    """`megabytes` of Python source in `files` files; returns the bytes written."""
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    folder.mkdir(parents=True)
    target, written, copy = megabytes * 1_000_000, 0, 0
    handles = [open(folder / f"part-{i}.txt", "w", encoding="utf-8") for i in range(files)]  # noqa: SIM115
    try:
        while written < target:
            for path in sources:
                text = f"# copy {copy} of {path.name}\n" + path.read_text(encoding="utf-8", errors="replace")
                handles[copy % files].write(text)
                written += len(text.encode())
                if written >= target:
                    break
            copy += 1
    finally:
        for handle in handles:
            handle.close()
    return written


CONFIG = """
name: data-bench
data:
  source: {{kind: text_files, path: "{corpus}/*.txt", chunk_mb: 1}}
  tokenizer: {{kind: byte}}
  seq_len: 128
  val_fraction: 0.02
model: {{family: gpt, preset: tiny, params: {{block_size: 128}}}}
train:
  num_workers: 2
  batch_size: 16
  max_steps: {steps}
  device_cache_mb: 0
  log_every: 20
  checkpoint_every: 100000
evaluate: {{num_samples: 32, max_new_tokens: 20, prompts: ["def "]}}
register: {{model_name: data-bench, gate: {{metric: eval/bits_per_byte, mode: min}}}}
"""


def run_pipeline(work: Path, corpus: Path, steps: int) -> dict:
    config = work / "data-bench.yaml"
    config.write_text(CONFIG.format(corpus=corpus, steps=steps))
    storage = work / "store"
    command = [str(REPO / ".venv" / "bin" / "genpipe"), "run", str(config), "--storage", str(storage)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = ProcessPeaks(process.pid)
    peaks.start()
    workflow_id, log = None, []
    for line in process.stdout or []:
        log.append(line)
        print("  | " + line.rstrip(), flush=True)
        if line.startswith("workflow ") and workflow_id is None:
            workflow_id = line.split()[1]
    code = process.wait()
    peaks.stop()
    if code:
        raise SystemExit(f"genpipe run failed ({code}):\n{''.join(log[-40:])}")
    records = {
        step: json.loads((storage / "workflows" / str(workflow_id) / f"{step}.json").read_text())
        for step in ("prepare", "train")
    }
    from pipelines.registry import tracking

    meta = json.loads((storage / "workflows" / str(workflow_id) / "workflow.json").read_text())
    history = tracking.client(meta["tracking_uri"]).get_metric_history(meta["run_id"], "train/samples_per_s")
    windows = sorted(m.value for m in history[1:] or history)
    return {
        "total_s": time.monotonic() - started,
        "prepare_s": records["prepare"]["duration_s"],
        "train_s": records["train"]["duration_s"],
        "dataset_uri": records["prepare"]["result"]["dataset_uri"],
        "train_rows": records["prepare"]["result"]["rows"]["train"],
        "train_shards": len(
            json.loads(Path(records["prepare"]["result"]["dataset_uri"], "manifest.json").read_text())["splits"][
                "train"
            ]["shards"]
        ),
        "samples_per_s": windows[len(windows) // 2],
        "peak_total": peaks.peak,
        "peaks": dict(sorted(peaks.peaks.items(), key=lambda item: -item[1])[:8]),
    }


def genpipe_feed(manifest, cache: bool) -> Iterator[torch.Tensor]:
    from data_prep.sample_order import Cursor, rank_batches, step_start
    from pipelines.config import TrainConfig
    from pipelines.train.feed import open_feed

    train = TrainConfig(device_cache_mb=1e9 if cache else 0)
    feed = open_feed(manifest, "train", train, torch.device("cpu"))

    def plan() -> Iterator[torch.Tensor]:
        cursor = Cursor()
        while cursor.epoch == 0:
            for positions in rank_batches(cursor, 0, 1, BATCH, 1):
                yield feed.columns(feed.order.rows(0, positions))["tokens"]
            cursor = step_start(Cursor(0, cursor.position + BATCH), BATCH, feed.order.total)

    return feed.prefetched(plan())


class ParquetShards(torch.utils.data.IterableDataset):
    """The DataLoader baseline: each shard read with pyarrow, its rows shuffled, batches out."""

    def __init__(self, manifest):
        self.manifest = manifest

    def __iter__(self) -> Iterator[torch.Tensor]:
        from data_prep.readers import read_shard

        shards = self.manifest.splits["train"].shards
        rng = np.random.default_rng(0)
        for index in rng.permutation(len(shards)):
            tokens = read_shard(self.manifest, shards[index])["tokens"]
            order = rng.permutation(len(tokens))
            for start in range(0, len(tokens) - BATCH + 1, BATCH):
                yield torch.from_numpy(tokens[order[start : start + BATCH]])


def dataloader(manifest) -> Iterator[torch.Tensor]:
    return iter(torch.utils.data.DataLoader(ParquetShards(manifest), batch_size=None, num_workers=1))


def mosaic(manifest, work: Path) -> Iterator[torch.Tensor] | None:
    """mosaicml-streaming over MDS shards of the same blocks (written here, not timed)."""
    try:
        from streaming import MDSWriter, StreamingDataset
    except ImportError:
        return None
    from data_prep.readers import iter_shards

    out = work / "mds"
    with MDSWriter(out=str(out), columns={"tokens": "ndarray:int32"}, size_limit="64mb") as writer:
        for columns in iter_shards(manifest, "train"):
            for block in columns["tokens"]:
                writer.write({"tokens": block})
    dataset = StreamingDataset(local=str(out), batch_size=BATCH, shuffle=True, shuffle_seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=1, drop_last=True)
    return (batch["tokens"] for batch in loader)


def samples_per_second(batches: Iterator[torch.Tensor]) -> tuple[float, int]:
    """Samples/s over one epoch; each batch is touched, as a step would."""
    started, samples, checksum = time.perf_counter(), 0, 0
    for batch in batches:
        checksum += int(batch[:, 0].sum())
        samples += len(batch)
    return samples / (time.perf_counter() - started), samples


def first_shards(manifest, samples: int):
    """The manifest with only the first train shards that hold `samples` rows: every arm reads
    the same epoch, small enough for the device-cache arm and the MDS copy."""
    from data_prep.manifest import Split

    kept, rows = [], 0
    for shard in manifest.splits["train"].shards:
        if rows >= samples:
            break
        kept.append(shard)
        rows += shard.rows
    return manifest.model_copy(update={"splits": {**manifest.splits, "train": Split(rows=rows, shards=kept)}})


def ingest(dataset_uri: str, work: Path, samples: int) -> dict[str, dict[str, float]]:
    from data_prep.manifest import load_verified

    manifest = first_shards(load_verified(dataset_uri), samples)
    arms = {
        "genpipe streamed feed": lambda: genpipe_feed(manifest, cache=False),
        "genpipe device cache": lambda: genpipe_feed(manifest, cache=True),
        "torch DataLoader (Parquet)": lambda: dataloader(manifest),
        "mosaicml-streaming (MDS)": lambda: mosaic(manifest, work),
    }
    results = {}
    for name, make in arms.items():
        batches = make()
        if batches is None:
            print(f"  {name}: skipped (`streaming` not importable)", flush=True)
            continue
        rate, samples = samples_per_second(batches)
        results[name] = {"samples_per_s": rate, "samples": samples}
        print(f"  {name}: {rate:,.0f} samples/s ({samples} samples)", flush=True)
    results["_"] = {"shards": len(manifest.splits["train"].shards), "rows": manifest.splits["train"].rows}
    return results


def record(args: argparse.Namespace, corpus_bytes: int, run: dict, rates: dict) -> None:
    mb = corpus_bytes / 1e6
    base = rates["torch DataLoader (Parquet)"]["samples_per_s"]
    lines = [
        "",
        f"### Data at size, {datetime.now(UTC):%Y-%m-%d} — {machine()}",
        "",
        f"- Corpus: {mb:,.0f} MB of Python source in 4 files (read in 1 MB chunks), byte tokens, "
        f"blocks of 129 tokens, shards of 64 MB: {run['train_rows']:,} train blocks in {run['train_shards']} shards.",
        f"- Prepare: {run['prepare_s']:.0f} s, **{mb / run['prepare_s']:.1f} MB/s** of text on 2 cores.",
        f"- Train (tiny GPT, 2 workers, batch 16 each, streamed): {args.train_steps} steps in {run['train_s']:.0f} s "
        f"(step incl. start-up); median window {run['samples_per_s']:.0f} samples/s = "
        f"**{run['samples_per_s'] / 32:.2f} steps/s**.",
        f"- Peak memory of the whole run (summed PSS, Ray's object store included): "
        f"{run['peak_total'] / 2**30:.2f} GiB; peak heap (anonymous PSS) per process: "
        + ", ".join(f"`{name}` {size / 2**20:.0f} MB" for name, size in run["peaks"].items()),
        "",
        f"| ingest, one epoch of the first {rates['_']['shards']} shards ({rates['_']['rows']:,} blocks), batch 64, "
        "no model | samples/s | vs DataLoader |",
        "| --- | --- | --- |",
    ]
    for name, result in rates.items():
        if name != "_":
            lines.append(f"| {name} | {result['samples_per_s']:,.0f} | {result['samples_per_s'] / base:.2f}x |")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-mb", type=int, default=2048)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--ingest-samples", type=int, default=500_000, help="the first shards holding this many")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        work = Path(folder)
        corpus_bytes = write_corpus(work / "corpus", args.corpus_mb)
        print(f"corpus: {corpus_bytes / 1e6:,.0f} MB; genpipe run:", flush=True)
        run = run_pipeline(work, work / "corpus", args.train_steps)
        print(f"prepare {run['prepare_s']:.0f}s, train {run['train_s']:.0f}s; ingest:", flush=True)
        rates = ingest(run["dataset_uri"], work, args.ingest_samples)
        print(json.dumps({"run": run, "ingest": rates}, indent=1, default=str))
        if args.record:
            record(args, corpus_bytes, run, rates)
    print(f"machine: {machine()} ({platform.python_version()})")


if __name__ == "__main__":
    main()
