#!/usr/bin/env bash
# The cluster path on one machine, all on 127.0.0.1: a Ray head + worker node (token auth on),
# an `mlflow server` (sqlite, artifacts in S3) and a moto S3 server.
#
#   infra/local-cluster.sh up        # start; writes .genpipe/local-cluster/{servers.json,env.sh}
#   source .genpipe/local-cluster/env.sh
#   genpipe submit quickstart --address $GENPIPE_ADDRESS --storage $GENPIPE_STORAGE \
#       --tracking-uri $MLFLOW_TRACKING_URI --follow
#   infra/local-cluster.sh status
#   infra/local-cluster.sh down      # stops each server by its process id (never `ray stop`)
#
# Extra options go to `genpipe local-cluster`: up --workers 2 --cpus 4 --no-s3 --dir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/genpipe ]; then
    make .venv/.genpipe-compiled
fi
exec .venv/bin/genpipe local-cluster "${1:-up}" "${@:2}"
