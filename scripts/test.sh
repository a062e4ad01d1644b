#!/usr/bin/env bash
# One command: install, start the real local stack, and run the whole test suite against it.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/stack-env.sh
source scripts/flink-setup.sh  # PyFlink for the Flink consumer test, cached outside the clone
.venv/bin/liberation stack up
.venv/bin/ruff check liberation_assets liberation_tests bench docs && .venv/bin/ruff format --check liberation_assets liberation_tests bench docs \
  || { echo "ruff (lint or format) failed" >&2; exit 1; }
# mypy --strict over core and stack; a "type: ignore" only another environment needs (other stubs) may stay
.venv/bin/python -m mypy --strict --no-warn-unused-ignores --no-error-summary liberation_assets/core liberation_assets/stack \
  || { echo "mypy failed" >&2; exit 1; }
.venv/bin/python -m mypy --strict --no-error-summary liberation_assets/orchestration || { echo "mypy --strict (orchestration) failed" >&2; exit 1; }
# The code location loads through the dg component (liberation_assets/defs), without the stack.
PYTHONWARNINGS="ignore:Found version mismatch" .venv/bin/dg check defs || { echo "dg check defs failed" >&2; exit 1; }
exec .venv/bin/python -m pytest -p no:cacheprovider -q -rfEs --durations=15 "$@"
