#!/usr/bin/env bash
# Set up wattbench on a fresh machine: a virtual environment in .venv with everything installed.
#   bash scripts/setup.sh          runtime only (the benchmark)
#   bash scripts/setup.sh --dev    plus the test tools and headless Chromium for the dashboard tests
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "error: wattbench needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi

if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi

# llama-cpp-python compiles from source. Build it portable: a native build uses AMX
# instructions that some virtual machines advertise but do not run (SIGILL).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

REQ=requirements.txt
[[ $DEV == 1 ]] && REQ=requirements-dev.txt
mkdir -p outputs
PIP_LOG=outputs/pip-install.log
if ! .venv/bin/python -m pip install -q -r "$REQ" > "$PIP_LOG" 2>&1; then
    tail -n 30 "$PIP_LOG" >&2
    echo "error: pip could not install $REQ (full log: $PIP_LOG); llama-cpp-python needs a C/C++ compiler and cmake" >&2
    exit 1
fi
# wattbench itself, editable: the `wattbench` command and `import wattbench` from any directory, using this
# checkout's files. --no-deps: the pins above are what it runs on.
if ! .venv/bin/python -m pip install -q --no-deps -e . >> "$PIP_LOG" 2>&1; then
    tail -n 30 "$PIP_LOG" >&2
    echo "error: pip could not install wattbench from $(pwd) (full log: $PIP_LOG)" >&2
    exit 1
fi

if [[ $DEV == 1 ]] && ! command -v chromium >/dev/null 2>&1; then
    # Headless Chromium checks that the dashboards render (Debian packages).
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
    else
        echo "warning: chromium is not installed; install Debian packages chromium and chromium-driver" \
             "to run the dashboard rendering tests" >&2
    fi
fi
echo "wattbench is set up in .venv"
