#!/usr/bin/env bash
# End-to-end check on a GPU machine: benchmarks/gpu/gpu_server.py (random-weight Llama-3.1-8B shape, continuous
# batching, CUDA graphs) measured by `wattbench run --base-url ... --gpu-energy on` at concurrency 16 and 64.
#
# Run ONCE from the root of the wattbench repository, after:
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   bash benchmarks/gpu/gpu_e2e.sh
# Writes under $OUT (default ./e2e_out): run16/, run64/ (wattbench outputs), *.console.txt (each command's
# output), server.log (+ server_log_tail.txt), health_*.json, nvidia_smi_*.txt, e2e_summary.txt.
# Every phase goes on when one fails; the whole script ends within 8 minutes (deadline 465 s).
#
# Overrides for testing elsewhere (defaults are what the GPU run uses):
#   SERVER_PY / WB_PY (python3), SERVER_ARGS (""), GPU_ENERGY_ARGS ("--gpu-energy on"), PORT (8011),
#   RUN16_ARGS ("--concurrency 16 --repeats 4"), RUN64_ARGS ("--concurrency 64 --repeats 8").
set -u

T0=$(date +%s)
DEADLINE=$((T0 + 465))
OUT=${OUT:-$PWD/e2e_out}
mkdir -p "$OUT"
PORT=${PORT:-8011}
SERVER_PY=${SERVER_PY:-python3}
WB_PY=${WB_PY:-python3}
SERVER_ARGS=${SERVER_ARGS:-}
GPU_ENERGY_ARGS=${GPU_ENERGY_ARGS---gpu-energy on}
RUN16_ARGS=${RUN16_ARGS:---concurrency 16 --repeats 16}
RUN64_ARGS=${RUN64_ARGS:---concurrency 64 --repeats 32}
BASE_URL="http://127.0.0.1:$PORT/v1"
MODEL="meta-llama/Llama-3.1-8B-Instruct"
SERVER_LOG="$OUT/server.log"
SUMMARY="$OUT/e2e_summary.txt"
: > "$SUMMARY"

say() { echo "[e2e +$(( $(date +%s) - T0 ))s] $*" | tee -a "$SUMMARY"; }
left() { echo $(( DEADLINE - $(date +%s) )); }
# seconds for a phase: at most $1, leaving $2 seconds for what comes after it; at least 1
budget() { local b=$(( $(left) - $2 )); (( b > $1 )) && b=$1; (( b < 1 )) && b=1; echo "$b"; }

health() {  # $1: file name suffix
    timeout 10 "$WB_PY" - "$PORT" > "$OUT/health_$1.json" 2>&1 <<'PY'
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5).read().decode())
except Exception as exc:  # noqa: BLE001
    print(f"health unavailable: {exc}")
PY
}

smi() {  # $1: file name suffix
    if command -v nvidia-smi > /dev/null 2>&1; then
        timeout 10 nvidia-smi --format=csv \
            --query-gpu=name,power.draw,power.limit,memory.used,memory.total,utilization.gpu,temperature.gpu > "$OUT/nvidia_smi_$1.txt" 2>&1 || true
    fi
}

say "start; OUT=$OUT; python: $("$SERVER_PY" --version 2>&1); PYTHONPATH=${PYTHONPATH:-}"
smi before

# -- 1. the server ----------------------------------------------------------------------------------------------
# The server needs only torch and aiohttp: run it on the machine's own packages (without the wheels on
# PYTHONPATH) when it has both, so that nothing shipped for wattbench can shadow them.
SERVER_ENV=(env)
if [[ -n "${PYTHONPATH:-}" ]] && env -u PYTHONPATH "$SERVER_PY" -c \
        "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') and u.find_spec('aiohttp') else 1)" \
        > /dev/null 2>&1; then
    SERVER_ENV=(env -u PYTHONPATH)
fi
say "server environment: ${SERVER_ENV[*]}"
SERVER_PID=""
# shellcheck disable=SC2086
"${SERVER_ENV[@]}" "$SERVER_PY" benchmarks/gpu/gpu_server.py --port "$PORT" $SERVER_ARGS > "$SERVER_LOG" 2>&1 &
SERVER_PID=$!
say "server pid $SERVER_PID starting (waiting up to 120 s for 'ready')"
READY=0
for _ in $(seq 1 240); do
    if grep -q "^ready on " "$SERVER_LOG" 2>/dev/null; then READY=1; break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.5
done
if (( READY )); then
    say "server ready"
else
    say "SERVER NOT READY (alive: $(kill -0 "$SERVER_PID" 2>/dev/null && echo yes || echo no)); last log lines:"
    tail -n 30 "$SERVER_LOG" | tee -a "$SUMMARY"
fi
health after_start
smi loaded_idle

# -- 2. the two runs --------------------------------------------------------------------------------------------
run_wattbench() {  # $1: name, $2: extra args, $3: max seconds, $4: seconds to leave after it
    local name=$1 extra=$2 t rc
    t=$(budget "$3" "$4")
    say "$name: wattbench run $extra (timeout ${t}s)"
    # shellcheck disable=SC2086
    timeout -k 5 "$t" "$WB_PY" -m wattbench run --base-url "$BASE_URL" --model "$MODEL" $GPU_ENERGY_ARGS \
        --profiles-file benchmarks/gpu/h200_profile.json --profiles H200_E2E $extra --no-progress \
        --out "$OUT/$name" > "$OUT/$name.console.txt" 2>&1
    rc=$?
    say "$name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (TIMED OUT)')"
    tail -n 15 "$OUT/$name.console.txt" | sed "s/^/  [$name] /" | tee -a "$SUMMARY"
    health "$name"
    smi "$name"
}

run_wattbench run16 "$RUN16_ARGS" 150 175
run_wattbench run64 "$RUN64_ARGS" 170 25

# -- 3. stop the server ------------------------------------------------------------------------------------------
if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        say "server did not stop within 15 s of SIGTERM: SIGKILL"
        kill -KILL "$SERVER_PID" 2>/dev/null
    fi
fi
wait "$SERVER_PID" 2>/dev/null
say "server exit status $?"
tail -n 200 "$SERVER_LOG" > "$OUT/server_log_tail.txt" 2>/dev/null
echo "---- server log (last 40 lines) ----"
tail -n 40 "$SERVER_LOG" 2>/dev/null

# -- 4. the reports ----------------------------------------------------------------------------------------------
for name in run16 run64; do
    report=$(find "$OUT/$name" -name report.txt 2>/dev/null | sort | tail -n 1)
    echo "---- $name: ${report:-no report.txt written} ----"
    if [[ -n "$report" ]]; then
        tail -n 40 "$report"
    else
        tail -n 40 "$OUT/$name.console.txt" 2>/dev/null
    fi
done
say "done in $(( $(date +%s) - T0 )) s"
