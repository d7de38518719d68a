"""Every family of the zoo as an MLflow Model: logged from its safetensors weights as a pyfunc from
code, loaded back with pickle deserialization disabled, and asked for samples with the input
example logged beside it (and, for image families, with a request of its own); then the same in a
fresh virtualenv that has only the models' own requirements, and served by `mlflow models serve`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

import models
from data_prep.text_tokenizer import TOKENIZER_FILE, TextTokenizer
from models.weights import save_model
from pipelines.cluster.local import free_port
from pipelines.registry import tracking
from pipelines.registry.served_model import log_served_model
from pipelines.registry.versions import WEIGHTS_ARTIFACT
from tokens.music import MUSIC_TOKENIZER_FILE, MusicTokenizer

IMAGE_SHAPE = (1, 8, 8)
CLASSES = [str(digit) for digit in range(10)]
BYTES = TextTokenizer()
MUSIC = MusicTokenizer()
SERVED = [*models.FAMILIES, "gpt@music"]  # every family, and a language model of music
DATA = {
    "image_shape": IMAGE_SHAPE,
    "num_classes": len(CLASSES),
    "class_names": CLASSES,
    "context_len": 8,
    "clip_samples": 64,  # audio
    "frame_shape": IMAGE_SHAPE,  # video: clips of 4 frames, 2 given
    "clip_frames": 4,
    "context_frames": 2,
}


def smallest(name: str) -> models.GenerativeModel:
    """The family's first preset, sized for the data here (a latent model gets a tiny VAE's spec);
    `FAMILY@music`: a language model of music."""
    family, _, modality = name.partition("@")
    cls = models.family_class(family)
    params: dict = {"vocab_size": BYTES.vocab_size} if cls.modality == "text" else {}
    if modality == "music":
        params = {"vocab_size": MUSIC.vocab_size, "modality": "music"}
    if "block_size" in cls.config_class.model_fields:
        params["block_size"] = 16
    for field in cls.registered_parts.values():
        vae = models.build_model("vae", models.resolve_config("vae", "tiny", {}, DATA))
        params |= {field: "models:/served-vae/1", f"{field}_spec": {"family": "vae", "config": vae.config.model_dump()}}
    if "timesteps" in cls.config_class.model_fields:
        params["timesteps"] = 20  # a short schedule: the example is sampled when the model is logged
    preset = next(iter(cls.presets))
    return models.build_model(family, models.resolve_config(family, preset, params, DATA))


def new_store(folder: Path):
    """A sqlite tracking store with one experiment whose artifacts stay in `folder`."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment = client.create_experiment("served", artifact_location=str(folder / "artifacts"))
    return uri, client, experiment, folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return new_store(tmp_path_factory.mktemp("served"))


def log_family(family: str, store) -> tuple[models.GenerativeModel, str, str]:
    """The family's smallest model logged as an MLflow Model: (model, its model id, the run's id)."""
    uri, client, experiment, folder = store
    model = smallest(family)
    weights = folder / family / WEIGHTS_ARTIFACT
    save_model(model, weights)
    if model.data_modality == "text":
        (weights / TOKENIZER_FILE).write_text(BYTES.to_json())
    if model.data_modality == "music":
        (weights / MUSIC_TOKENIZER_FILE).write_text(MUSIC.to_json())
    run_id = client.create_run(experiment).info.run_id
    with tracking.pointed_at(uri):
        return model, log_served_model(str(weights), client, experiment, run_id, family, {}), run_id


@pytest.mark.parametrize("family", SERVED)
def test_every_family_serves_samples_without_pickle(family, store, monkeypatch):
    uri, client, _, _ = store
    model, model_id, run_id = log_family(family, store)
    with tracking.pointed_at(uri):
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        served = mlflow.pyfunc.load_model(f"models:/{model_id}")
        answer = served.predict(served.input_example)
        if model.data_modality == "music":
            asked = served.predict(pd.DataFrame({"n": [3], "max_new_tokens": [40], "seed": [1]}))
        elif model.modality != "text":
            needed = model.example_options(3)  # an image-to-image model's inputs
            options = {"options": [json.dumps(needed)]} if needed else {}
            asked = served.predict(pd.DataFrame({"n": [3], "seed": [1], **options}))
    assert client.get_logged_model(model_id).source_run_id == run_id
    if model.data_modality == "music":  # pieces as MIDI files
        assert list(answer.columns) == ["midi", "notes"] and len(asked) == 3
        assert all(base64.b64decode(midi)[:4] == b"MThd" for midi in asked["midi"])
        return
    if model.modality == "text":
        assert list(answer.columns) == ["completion"] and answer["completion"][0].startswith("The ")
        return
    if model.data_modality == "audio":  # clips (n, 1, samples) in [-1, 1]
        assert answer.dtype == np.float32 and answer.shape == (2, 1, 64)
        assert asked.shape == (3, 1, 64) and -1 <= asked.min() <= asked.max() <= 1
        return
    if model.data_modality == "video":  # the frames after each context clip, in [-1, 1]
        assert answer.dtype == np.float32 and answer.shape == (2, 2, *IMAGE_SHAPE)
        assert asked.shape == (3, 2, *IMAGE_SHAPE) and -1 <= asked.min() <= asked.max() <= 1
        return
    if model.modality == "series":  # forecast paths (n, horizon) in the data's units
        assert answer.dtype == np.float32 and answer.shape == (2, model.config.horizon)
        assert asked.shape == (3, model.config.horizon) and np.isfinite(asked).all()
        return
    assert answer.dtype == np.float32 and answer.shape == (2, *IMAGE_SHAPE)
    assert asked.shape == (3, *IMAGE_SHAPE) and -1 <= asked.min() <= asked.max() <= 1


def _fresh_environment(folder: Path, requirements: list[str]) -> Path:
    """A virtualenv of the interpreter genpipe's own environment was made from (without genpipe),
    holding `requirements` and nothing else. Installed without compiling every module (pip's
    default: ~45 s of a core for torch and MLflow); its programs compile what they import, once
    (`_fresh_env`)."""
    subprocess.run([sys._base_executable, "-m", "venv", str(folder)], check=True, timeout=120)  # type: ignore[attr-defined]
    wanted = folder / "requirements.txt"
    wanted.write_text("\n".join(requirements) + "\n")
    install = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "-r", str(wanted)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "bin"


def _fresh_env() -> dict[str, str]:
    """The environment of the fresh virtualenv's programs: nothing of genpipe's path, pickle off,
    and bytecode written (the first program compiles what it imports; the next ones reuse it)."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    return {name: value for name, value in os.environ.items() if name not in dropped} | {
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"
    }


def _serve(bin_folder: Path, model: Path, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`mlflow models serve` of `model` in the fresh environment (activated: its uvicorn on PATH),
    answering on /ping."""
    port = free_port()
    server = subprocess.Popen(
        [str(bin_folder / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local", "-h", "127.0.0.1"]
        + ["-p", str(port)],
        cwd=cwd,
        env={**env, "PATH": f"{bin_folder}{os.pathsep}{env['PATH']}"},
        stdout=(cwd / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn workers go with it
    )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5):
                return server, url
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (cwd / "serve.log").read_text()[-3000:]
            time.sleep(0.5)


@pytest.mark.slow
def test_a_fresh_environment_with_only_the_models_requirements_loads_and_serves_every_family(tmp_path):
    """No genpipe, Ray, DeepSpeed or s3fs there: the models carry their code and declare the rest."""
    store = new_store(tmp_path)
    downloaded, requirements = {}, set()
    with tracking.pointed_at(store[0]):
        for family in SERVED:
            _, model_id, _ = log_family(family, store)
            folder = Path(
                mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "got" / family))
            )
            downloaded[family] = folder
            declared = (folder / "requirements.txt").read_text().split()
            named = {line.split("==")[0].lower() for line in declared}
            assert not named & {"genpipe", "ray", "deepspeed", "s3fs", "fsspec", "pyarrow"}, (family, declared)
            assert {"mlflow", "torch", "safetensors"} <= named, (family, declared)
            assert ("tokenizers" in named) == (family in {"gpt", "lstm", "gru"}), (family, declared)
            assert ("mido" in named) == family.endswith("@music"), (family, declared)
            requirements |= set(declared)
    bin_folder = _fresh_environment(tmp_path / "env", sorted(requirements))
    outside = tmp_path / "outside"  # not the repository: nothing of genpipe on the path
    outside.mkdir()
    env = _fresh_env()
    probe = Path(__file__).with_name("served_probe.py")

    def fresh(program: str, *args: str) -> subprocess.CompletedProcess:
        """A program of the fresh environment, run outside the repository; it must succeed."""
        done = subprocess.run([str(bin_folder / program), *args], cwd=outside, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    loaded = fresh("python", str(probe), *map(str, downloaded.values()))
    lines = [json.loads(line) for line in loaded.stdout.splitlines() if line.startswith("{")]
    assert lines[-1] == {"imported": []}, lines[-1]
    family_of = {str(folder): family for family, folder in downloaded.items()}
    answers = {family_of[line["model"]]: line for line in lines[:-1]}
    assert set(answers) == set(downloaded)
    for family, answer in answers.items():
        drawn = answer.get("shape") or answer.get("midi") == "MThd" or answer.get("completion", "").startswith("The ")
        assert answer.get("finite", True) and drawn, family

    server, url = _serve(bin_folder, downloaded["ddpm"], outside, env)
    try:
        request = json.dumps({"dataframe_split": {"columns": ["n", "seed"], "data": [[3, 1]]}}).encode()
        asked = urllib.request.Request(f"{url}/invocations", request, {"Content-Type": "application/json"})
        with urllib.request.urlopen(asked, timeout=120) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert predictions.shape == (3, *IMAGE_SHAPE) and np.abs(predictions).max() <= 1

    fresh("mlflow", "models", "generate-dockerfile", "-m", str(downloaded["gpt"]), "-d", str(tmp_path / "docker"))
    docker = tmp_path / "docker"  # building it needs a Docker daemon: not here
    assert "COPY model_dir/gpt /opt/ml/model" in (docker / "Dockerfile").read_text()
    assert (docker / "model_dir" / "gpt" / "code" / "serving" / "pyfunc.py").is_file()
