#!/usr/bin/env bash
# Install what a fresh machine lacks: Debian packages for the local stack, and the Python environment.
# Idempotent: a second run installs nothing.  Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server mariadb-client)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the UI test and docs/screenshots.py
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: please install: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.liberation-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test,dg]"
  # dg: see the `dg` extra in pyproject.toml for why these two go in without their exact dagster pins
  .venv/bin/python -m pip install -q --no-deps "dagster-dg-cli==1.13.27" "dagster-rest-resources==0.29.27"
  # The instance's PostgreSQL storage (pyproject.toml says why not as a dependency): same storage schema as 0.29.28.
  .venv/bin/python -m pip install -q --no-deps "dagster-postgres==0.29.27"
  touch "$stamp"
fi

# The modules compiled with mypyc (issue 18; scripts/build_compiled.py lists them). Never fails setup: a module
# that does not compile runs as pure Python, and the script says so.
.venv/bin/python scripts/build_compiled.py || echo "setup: compiled modules not built: the pure-Python paths are used" >&2
