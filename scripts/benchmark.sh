#!/usr/bin/env bash
# Set up everything on a fresh machine and benchmark the embedded default model
# (or the model your environment selects: WATTBENCH_MODEL, GEMINI_API_KEY).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/wattbench run "$@"
