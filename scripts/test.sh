#!/usr/bin/env bash
# Set up a virtualenv with the test extras and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
bash scripts/system.sh || echo "warning: Java or the JDBC drivers are missing (the Spark tests will fail in CI)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/ruff check src
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
