#!/usr/bin/env bash
# What benchmarks/gpu_suite.py needs on a lent GPU machine, which has torch, transformers,
# tokenizers, pyarrow and safetensors for Python 3.12, and not the rest of genpipe's needs.
#
#   bash benchmarks/gpu_carry.sh           here: cp312 wheels and the GPT dataset into .gpu-carry/
#   bash benchmarks/gpu_carry.sh install   on the device: install what was carried, from the folder
#
# Ray and MLflow stay behind (the suite measures the loop as one Ray Train worker runs it, in one
# process); DeepSpeed has no wheel on PyPI, so its source is built here into a pure-Python wheel
# with no ops (DS_BUILD_OPS=0: the suite needs none of its compiled kernels). .gpu-carry/ is
# git-ignored and goes with `run(carry=[".gpu-carry"])`: ~20 MB of wheels, and the dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry

if [ "${1:-}" = install ]; then
    "${PYTHON:-python3}" -m pip install --quiet --no-index --no-deps "$CARRY"/wheels/*.whl
    exit 0
fi

PYTHON=${PYTHON:-.venv/bin/python}
version() { "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p "$CARRY/wheels"
# The versions this environment runs, so the device runs what the tests ran.
packages=()
for name in pydantic pydantic_core annotated_types typing_inspection pillow psutil hjson msgpack einops py-cpuinfo ninja; do
    packages+=("$name==$(version "$name")")
done
"$PYTHON" -m pip download --quiet --dest "$CARRY/wheels" --no-deps --only-binary=:all: \
    --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    "${packages[@]}" diffusers importlib-metadata zipp
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$CARRY/wheels" \
    "deepspeed==$(version deepspeed)"
"$PYTHON" benchmarks/gpu_suite.py --prepare "$CARRY/data"
du -sh "$CARRY"
