"""The architecture holds: no import cycle between any two modules, and importing a package
changes nothing (no environment variable set, no Ray or MLflow started). The layers themselves
are import-linter contracts (pyproject.toml), checked by `lint-imports` in `make test`."""

from __future__ import annotations

import json
import subprocess
import sys

import grimp
from helpers import REPO

PACKAGES = ("typed_errors", "storage", "tokens", "data_prep", "models", "serving", "pipelines", "genpipe")


def test_no_module_imports_one_that_imports_it_back():
    """Counting every import: inside functions and under TYPE_CHECKING too (a cycle for types alone
    still ties the two modules together)."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_importing_any_module_has_no_side_effects():
    """Every module imported in one fresh interpreter: the environment stays as it was. The
    libraries are imported first: what they set on import (Ray sets RAY_CLIENT_MODE) is theirs."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if not m.endswith("__main__"))
    script = (
        "import importlib, json, os, sys\n"
        "import mlflow, ray, ray.data, ray.train, ray.tune, torch\n"
        "before = dict(os.environ)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))\n"
        "print(json.dumps(changed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
