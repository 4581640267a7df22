#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install distillbev with its pinned set.
# torch is pinned to the CPU wheel 2.13.0 here; pyproject keeps a range so GPU users bring their own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.distillbev-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[test]' 'nuscenes-devkit==1.2.0' 'numpy<2' 'opencv-python-headless<4.12'
  touch "$stamp"
fi
