"""What a training run shows while it goes: its metrics (sent in the background, so no rank waits
on MLflow), progress lines for the console, sample grids, completions or a video model's
predictions every `sample_every` steps (the run page's step slider), and CPU/memory/GPU use of
every node."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

from data_prep.manifest import Manifest
from data_prep.text_tokenizer import TextTokenizer, load_tokenizer
from models.base import GenerativeModel
from pipelines.config import PipelineConfig
from pipelines.registry.drawing import grid_image
from serving.drawing import complete
from serving.video import truth_over_prediction
from typed_errors import first_line

log = logging.getLogger("genpipe.train")
SAMPLE_GRID = 16  # images in a live grid
SAMPLE_TOKENS = 64  # new tokens in a live completion
SAMPLES_TABLE = "train/samples.json"
PREVIEW_CLIPS = 4  # val clips a video model's live predictions continue
MONITOR_STOP_SECONDS = 15


def _silent(stage: str, **event: Any) -> None:
    """No console to report to."""


class LiveRun:
    """Created on every rank; rank 0 alone talks to MLflow and the console, the first rank of each
    node samples its system metrics. Sampling runs on every rank (ZeRO-3 gathers parameters
    collectively), so ranks stay in step."""

    def __init__(
        self,
        config: PipelineConfig,
        manifest: Manifest,
        uri: str,
        run_id: str,
        ranks: tuple[int, int, int],
        report: Callable[..., None] | None,
    ):
        rank, local_rank, node_rank = ranks
        self.config, self.uri, self.run_id, self.rank = config, uri, run_id, rank
        self.report = report if report is not None and rank == 0 else _silent
        self.sender = _metric_sender(uri, run_id, self.note) if rank == 0 else None
        every = config.train.sample_every
        self.sample_every = config.train.checkpoint_every if every is None else every
        self.manifest = manifest
        self.tokenizer: TextTokenizer | None = None  # read when text is first previewed
        self.clips: torch.Tensor | None = None  # val clips, read when video is first previewed
        # What each modality of data_prep's registry previews while it trains; a forecaster's
        # picture needs the series, which evaluation draws.
        previews = {"image": self._grid, "text": self._completions, "video": self._predictions}
        self.preview: Callable[[int, GenerativeModel, torch.Generator], None] | None = previews.get(manifest.modality)
        self.monitor = None
        if local_rank == 0 and config.train.system_metrics_every_s > 0:
            self.monitor = _system_metrics(uri, run_id, f"node{node_rank}", config.train.system_metrics_every_s)

    def metrics(self, step: int, total: int, metrics: dict[str, float]) -> None:
        if self.sender is None:
            return
        self.sender.send(metrics, step)
        shown = ", ".join(f"{k.removeprefix('train/')}={v:.4g}" for k, v in metrics.items() if k != "train/epoch")
        self.report("train", done=step, total=total, unit="steps", text=shown)

    def note(self, text: str) -> None:
        self.report("train", text=text)

    def log(self, metrics: dict[str, float], step: int = 0) -> None:
        """Metrics outside the progress line (no console), sent in the background from rank 0."""
        if self.sender is not None:
            self.sender.send(metrics, step)

    def tags(self, tags: dict[str, str]) -> None:
        """Tags on the run, sent in the background from rank 0, in order with the metrics."""
        if self.sender is not None:
            uri, run_id = self.uri, self.run_id
            self.sender.call(lambda: _tracking().set_tags(uri, run_id, tags))

    def samples(self, step: int, total: int, model: GenerativeModel) -> None:
        """The modality's preview (a sample grid, completions) at this step, when it is due."""
        if self.preview is None or not self.sample_every or (step % self.sample_every and step != total):
            return
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            self.preview(step, model, torch.Generator(device=device).manual_seed(self.config.train.seed))
        except Exception as exc:  # a preview is never worth the run
            log.warning("[train] samples at step %d not logged: %s", step, first_line(exc))
        finally:
            model.train(was_training)

    def _grid(self, step: int, model: GenerativeModel, generator: torch.Generator) -> None:
        options = model.sample_options(SAMPLE_GRID, **model.example_options(SAMPLE_GRID))
        grid = grid_image(model.sample(SAMPLE_GRID, generator=generator, **options))
        if self.sender is not None:
            client = _tracking().client(self.uri)
            self.sender.call(lambda: client.log_image(self.run_id, grid, key="samples", step=step))

    def _completions(self, step: int, model: GenerativeModel, generator: torch.Generator) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.manifest.tokenizer_uri)
        settings = self.config.evaluate
        options = (SAMPLE_TOKENS, settings.temperature, settings.top_k, generator)
        texts = [complete(model, self.tokenizer, prompt, *options) for prompt in settings.prompts]
        if self.sender is not None:
            table = {"step": [step] * len(texts), "prompt": list(settings.prompts), "completion": texts}
            client = _tracking().client(self.uri)
            self.sender.call(lambda: client.log_table(self.run_id, table, SAMPLES_TABLE))

    def _predictions(self, step: int, model: GenerativeModel, generator: torch.Generator) -> None:
        """The first val clips' futures as the model predicts them, under their true frames."""
        if self.clips is None:
            from data_prep.readers import read_split

            self.clips = torch.from_numpy(read_split(self.manifest, "val", limit=PREVIEW_CLIPS)["video"])
        given = model.config.context_frames  # type: ignore[attr-defined]  # every video family's config has it
        context, truth = self.clips[:, :given], self.clips[:, given:]
        options = model.sample_options(len(context), input=context, horizon=truth.shape[1])
        predicted = model.sample(len(context), generator=generator, **options).cpu()
        picture = truth_over_prediction(truth.numpy(), predicted.numpy())
        if self.sender is not None:
            client = _tracking().client(self.uri)
            self.sender.call(lambda: client.log_image(self.run_id, picture, key="predictions", step=step))

    def close(self) -> None:
        """Send what is queued (bounded waits: an MLflow that is down never holds the run)."""
        if self.sender is not None:
            self.sender.close()
        if self.monitor is not None:
            stopping = threading.Thread(target=self.monitor.finish, daemon=True)
            stopping.start()
            stopping.join(MONITOR_STOP_SECONDS)
        flush = getattr(self.report, "flush", None)  # a Reporter (pipelines/workflow/progress.py)
        if flush is not None:
            flush()  # the last progress lines reach the console before the worker goes


def _tracking() -> Any:
    """genpipe's MLflow helpers, imported where a rank talks to MLflow: the other ranks never
    import MLflow (~0.6 s of a core each, in the seconds every worker imports torch)."""
    from pipelines.registry import tracking

    return tracking


def _metric_sender(uri: str, run_id: str, tell: Callable[[str], None]) -> Any:
    from pipelines.registry.metric_sender import MetricSender

    return MetricSender(uri, run_id, tell=tell)


def _system_metrics(uri: str, run_id: str, node: str, every_s: float) -> Any:
    """MLflow's system metrics monitor for this node (`system/node0/cpu_utilization_percentage`, ...);
    None when it cannot start (no psutil)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=every_s, node_id=node, tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception as exc:
        log.warning("[train] no system metrics: %s", first_line(exc))
        return None
