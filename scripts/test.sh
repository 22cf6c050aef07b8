#!/usr/bin/env bash
# Set up everything on a fresh machine and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
