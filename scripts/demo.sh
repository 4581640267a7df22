#!/usr/bin/env bash
# Main job on the embedded default: the synthetic world, end to end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec .venv/bin/distillbev demo "$@"
