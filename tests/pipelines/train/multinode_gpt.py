"""Run by test_multinode.py in its own process: a two-node `ray.cluster_utils.Cluster` trains the
tiny GPT with ZeRO-3 on 2 workers, one per node (STRICT_SPREAD). Exits with genpipe's exit code.

Its own process because a test session holds one local Ray, and a driver joins one cluster.
"""

from __future__ import annotations

import sys

import ray
from ray.cluster_utils import Cluster

from pipelines import cli


def main(storage: str) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        settings = [
            "train.strategy=zero3",
            "train.placement_strategy=STRICT_SPREAD",
            "train.max_steps=30",
            "train.log_every=10",
            "train.warmup_steps=5",
            "evaluate.num_cpus=1",
            "evaluate.num_samples=8",
            "evaluate.max_new_tokens=8",
        ]
        options = [item for setting in settings for item in ("--set", setting)]
        return cli.main(
            [
                "run",
                "gpt-code-tiny",
                "--address",
                cluster.address,
                "--storage",
                storage,
                "--workflow-id",
                "multinode",
                *options,
            ]
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
