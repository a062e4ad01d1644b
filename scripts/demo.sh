#!/usr/bin/env bash
# One command: install, start Kafka/PostgreSQL/MariaDB, seed the demo shop, run the main job
# (every stream through every pattern) and serve the Dagster UI on http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/stack-env.sh
exec .venv/bin/liberation demo "$@"
