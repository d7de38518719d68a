"""infra/ stays in step with the code: manifests parse, their genpipe commands are valid, no
secret is written into them, and the container image copies every package genpipe ships."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from pipelines.cli.app import build_parser
from pipelines.config import dump_config, load_config
from pipelines.schedule.schedules import Schedule

INFRA = REPO / "infra"


def _yaml(name: str) -> list[dict]:
    return list(yaml.safe_load_all((INFRA / name).read_text()))


def _genpipe_command_is_valid(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "genpipe", command
    args = build_parser().parse_args(words[1:])  # exits (SystemExit) on an unknown option
    if args.command in ("run", "submit"):
        load_config(args.config, args.set, storage=args.storage, tracking_uri=args.tracking_uri)


def _env_values(containers: list[dict]) -> list[dict]:
    return [entry for container in containers for entry in container.get("env", [])]


def test_kuberay_cluster_uses_token_auth_gpus_and_secret_references():
    (cluster,) = _yaml("kubernetes/raycluster.yaml")
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["authOptions"]["mode"] == "token"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    workers = gpu["template"]["spec"]["containers"]
    assert workers[0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert head[0]["image"] == workers[0]["image"]
    for entry in _env_values(head + workers):
        if re.search(r"PASSWORD|SECRET|TOKEN", entry["name"]):
            assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry


def test_kuberay_job_runs_a_valid_genpipe_command_on_that_cluster():
    (job,) = _yaml("kubernetes/rayjob.yaml")
    (cluster,) = _yaml("kubernetes/raycluster.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    _genpipe_command_is_valid(job["spec"]["entrypoint"])


def test_cluster_launcher_has_a_gpu_group_and_token_auth_on_every_node():
    (config,) = _yaml("ray-cluster.aws.yaml")
    types = config["available_node_types"]
    assert config["head_node_type"] in types and any("gpu" in name for name in types)
    assert "~/.ray/auth_token" in config["file_mounts"]
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token ray start" in command for command in commands)


def test_container_image_copies_every_package_genpipe_ships():
    dockerfile = (INFRA / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE))
    # pyproject's [tool.setuptools.packages.find] include list (tomllib is 3.11+, genpipe 3.10+)
    include = re.search(r"^include = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), flags=re.MULTILINE)
    packages = re.findall(r'"(\w+)\*"', include.group(1))
    assert packages
    for package in packages:
        assert package in copied, f"infra/Dockerfile does not COPY {package}"
    for source in copied - {"pyproject.toml"}:
        assert (REPO / source).exists(), source


def test_local_cluster_script_is_valid_bash_calling_a_real_command():
    script = INFRA / "local-cluster.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert build_parser().parse_args(["local-cluster", "up", "--workers", "2"]).workers == 2


def test_cluster_commands_in_the_readme_and_infra_docs_parse():
    """Every cluster command line (submit, jobs, local-cluster; and run in infra/) in the README,
    docs/ and infra/ is one the CLI accepts, with a valid config."""
    found = 0
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *INFRA.rglob("*")]:
        if not path.is_file() or path.suffix not in (".md", ".yaml", ".sh"):
            continue
        verbs = "submit|jobs|local-cluster" + ("|run" if path.is_relative_to(INFRA) else "")
        text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())  # join continued lines
        for match in re.finditer(rf"(?:^|[#$]\s*)(genpipe (?:{verbs}) [^`\n]*)", text, flags=re.MULTILINE):
            command = re.sub(r"\$\{?(\w+)\}?", "X", match.group(1).split(" #")[0].strip())  # $VARS: values
            command = command.replace("--address X", "--address http://X:8265").replace(" my.yaml", " quickstart")
            if any(mark in command for mark in ("...", "CONFIG", "[", " | ")):
                continue  # a synopsis, not a command
            _genpipe_command_is_valid(command)
            found += 1
    assert found >= 4


def _kuberay_errors(manifest: dict) -> list[str]:
    """What the Kubernetes API server would refuse in a KubeRay manifest, by KubeRay v1.7.0's CRD
    schema (tests/infra/kuberay/)."""
    import gzip
    import json

    from jsonschema import Draft7Validator

    with gzip.open(Path(__file__).with_name("kuberay") / f"{manifest['kind']}.schema.json.gz") as file:
        schema = json.load(file)["openAPIV3Schema"]
    return [
        f"{'.'.join(map(str, error.path))}: {error.message}" for error in Draft7Validator(schema).iter_errors(manifest)
    ]


def test_every_kuberay_manifest_validates_against_kuberays_schema():
    manifests = [doc for name in ("kubernetes/raycluster.yaml", "kubernetes/rayjob.yaml") for doc in _yaml(name)]
    assert {m["kind"] for m in manifests} == {"RayCluster", "RayJob"}
    for manifest in manifests:
        assert _kuberay_errors(manifest) == [], manifest["kind"]
    broken = {**manifests[0], "spec": {**manifests[0]["spec"], "rayVersion": 2.6}}
    assert _kuberay_errors(broken)  # the check can fail: a number where the schema wants a string


def _scheduled(**fields) -> Schedule:
    resolved = dump_config(load_config("quickstart", storage="s3://bucket/genpipe", tracking_uri="http://mlflow:5000"))
    values = {"name": "Nightly.Retrain", "config": "quickstart", "cron": "0 3 * * *", "created_at": 0.0}
    return Schedule(**{**values, "timezone": "Europe/Paris", "when": "data-changed", "resolved": resolved, **fields})


def test_an_exported_schedule_is_a_valid_raycronjob_running_its_resolved_config(monkeypatch, tmp_path):
    from pipelines.schedule.export import NotExportable, raycronjob, raycronjob_yaml

    schedule = _scheduled()
    manifest = yaml.safe_load(raycronjob_yaml(schedule, "genpipe"))
    assert manifest == raycronjob(schedule, "genpipe") and _kuberay_errors(manifest) == []
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == "genpipe-nightly-retrain"
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("0 3 * * *", "Europe/Paris", False)
    (cluster,) = _yaml("kubernetes/raycluster.yaml")
    assert spec["jobTemplate"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    carried = yaml.safe_load(spec["jobTemplate"]["runtimeEnvYAML"])["env_vars"]["GENPIPE_CONFIG"]
    assert carried == schedule.resolved
    monkeypatch.setenv("GENPIPE_CONFIG", carried)  # as the job's runtime_env sets it
    _genpipe_command_is_valid(spec["jobTemplate"]["entrypoint"])
    assert "--when data-changed" in spec["jobTemplate"]["entrypoint"]  # the trigger runs inside the job
    comparisons = raycronjob(_scheduled(command="compare"), "genpipe")["spec"]["jobTemplate"]["entrypoint"]
    assert comparisons.startswith("genpipe compare env:GENPIPE_CONFIG")
    _genpipe_command_is_valid(comparisons)

    local = dump_config(load_config("quickstart", storage=str(tmp_path), tracking_uri="http://mlflow:5000"))
    embedded = dump_config(load_config("quickstart", storage="s3://bucket/genpipe"))
    for fields, field in [
        ({"cron": "*/5 * * * * *"}, "--cron"),
        ({"resolved": local}, "storage"),
        ({"resolved": embedded}, "--tracking-uri"),
        ({"resolved": None}, "schedule update"),
    ]:
        with pytest.raises(NotExportable, match=field):
            raycronjob(_scheduled(**fields), "genpipe")


def test_image_ray_and_python_versions_agree_across_dockerfile_manifests_and_pyproject():
    from packaging.specifiers import SpecifierSet

    pyproject = (REPO / "pyproject.toml").read_text()
    ray_range = re.search(r'"ray\[[^\]]*\]([^"]+)"', pyproject).group(1)
    python_range = re.search(r'^requires-python = "([^"]+)"', pyproject, flags=re.MULTILINE).group(1)
    (cluster,) = _yaml("kubernetes/raycluster.yaml")
    ray_version = cluster["spec"]["rayVersion"]
    dockerfile = (INFRA / "Dockerfile").read_text()
    docker_ray = re.search(r"^ARG RAY=(\S+)$", dockerfile, flags=re.MULTILINE).group(1)
    assert ray_version == docker_ray and ray_version in SpecifierSet(ray_range), (ray_version, docker_ray, ray_range)
    docker_python = re.search(r"^ARG PYTHON=(\S+)$", dockerfile, flags=re.MULTILINE).group(1)
    assert f"{docker_python}.0" in SpecifierSet(python_range), (docker_python, python_range)
    images = {
        container["image"]
        for name in ("kubernetes/raycluster.yaml", "kubernetes/scheduler-deployment.yaml")
        for doc in _yaml(name)
        for container in _containers(doc)
    }
    assert len(images) == 1, images  # one genpipe image, built from infra/Dockerfile, everywhere


def _containers(doc: dict) -> list[dict]:
    """Every container of a Deployment or a RayCluster (head and worker groups)."""
    spec = doc["spec"]
    templates = [spec["template"]] if "template" in spec else []
    templates += [spec["headGroupSpec"]["template"]] if "headGroupSpec" in spec else []
    templates += [group["template"] for group in spec.get("workerGroupSpecs", [])]
    return [container for template in templates for container in template["spec"]["containers"]]
