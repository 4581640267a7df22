#!/usr/bin/env bash
# The test suite (CPU, smoke-scale data, minutes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
.venv/bin/ruff check distillbev tests benchmarks
exec .venv/bin/python -m pytest -q "$@"
