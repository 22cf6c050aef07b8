#!/usr/bin/env bash
# Server-side truth on a GPU machine (issue 19): benchmarks/gpu/gpu_server.py (random-weight Llama-3.1-8B shape,
# batch capped at 64, vLLM-style /metrics, dcgm-style /dcgm/metrics read from NVML) measured by
#   wattbench sweep --concurrency 1,8,32,64,128 --server-metrics auto --gpu-metrics .../dcgm/metrics --gpu-energy on
# (dcgm-style energy through the server's endpoint AND NVML beside the runner: the same GPU by two routes), then
# per point: what the server ran, measured J / request (NVML and dcgm), the simulated lens at the server's batch,
# and the simulated lens self-calibrated from one point (REFERENCE, default c8) against the measurement.
#
# Run ONCE from the root of the wattbench repository, after (Python 3.12 on the GPU machine; the direct path needs
# no LiteLLM; the wheels must include prometheus_client==0.26.0, pure Python):
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   bash benchmarks/gpu/gpu_server_metrics.sh
# Writes under $OUT (default ./server_metrics_out): sweep/ (the sweep's outputs and every point's run directory
# with server_metrics.jsonl, gpu_metrics.jsonl, gpu_energy.jsonl, dcgm_energy.jsonl), summary.json (raw figures per
# point), summary.txt, sweep.console.txt, server.log, metrics_*.txt (one scrape of each endpoint), nvidia_smi_*.txt.
# Every phase goes on when one fails; the whole script ends within 5 minutes (deadline 290 s).
#
# Overrides for testing elsewhere (defaults are what the GPU run uses):
#   SERVER_PY / WB_PY (python3), SERVER_ARGS ("--max-batch 64"), GPU_ENERGY_ARGS ("--gpu-energy on"), PORT (8011),
#   CONCURRENCY (1,8,32,64,128), REQUESTS (256 per point), MAX_DURATION (25 s per point), INPUT_TOKENS (14),
#   OUTPUT_TOKENS (128), INTERVAL (0.5 s between metric samples), REFERENCE (c8), DEADLINE_S (290).
set -u

T0=$(date +%s)
DEADLINE=$((T0 + ${DEADLINE_S:-290}))
OUT=${OUT:-$PWD/server_metrics_out}
mkdir -p "$OUT"
PORT=${PORT:-8011}
SERVER_PY=${SERVER_PY:-python3}
WB_PY=${WB_PY:-python3}
SERVER_ARGS=${SERVER_ARGS:---max-batch 64}
GPU_ENERGY_ARGS=${GPU_ENERGY_ARGS---gpu-energy on}
CONCURRENCY=${CONCURRENCY:-1,8,32,64,128}
REQUESTS=${REQUESTS:-256}
MAX_DURATION=${MAX_DURATION:-25}
INPUT_TOKENS=${INPUT_TOKENS:-14}
OUTPUT_TOKENS=${OUTPUT_TOKENS:-128}
INTERVAL=${INTERVAL:-0.5}
REFERENCE=${REFERENCE:-c8}
BASE_URL="http://127.0.0.1:$PORT/v1"
DCGM_URL="http://127.0.0.1:$PORT/dcgm/metrics"
MODEL="meta-llama/Llama-3.1-8B-Instruct"
SERVER_LOG="$OUT/server.log"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

say() { echo "[server-metrics +$(( $(date +%s) - T0 ))s] $*" | tee -a "$SUMMARY"; }
left() { echo $(( DEADLINE - $(date +%s) )); }

scrape() {  # $1: path, $2: file name suffix
    timeout 10 "$WB_PY" - "$PORT" "$1" > "$OUT/metrics_$2.txt" 2>&1 <<'PY'
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=5).read().decode())
except Exception as exc:  # noqa: BLE001
    print(f"unavailable: {exc}")
PY
}

smi() {
    if command -v nvidia-smi > /dev/null 2>&1; then
        timeout 10 nvidia-smi --format=csv \
            --query-gpu=name,power.draw,power.limit,memory.used,memory.total,utilization.gpu > "$OUT/nvidia_smi_$1.txt" 2>&1 || true
    fi
}

say "start; OUT=$OUT; python: $("$WB_PY" --version 2>&1); PYTHONPATH=${PYTHONPATH:-}"
"$WB_PY" -c "import prometheus_client, wattbench.telemetry.session" 2>&1 | tee -a "$SUMMARY" \
    || say "WARNING: wattbench's telemetry cannot be imported (prometheus_client missing from the wheels?)"
smi before

# -- 1. the server (its own packages when it has torch and aiohttp, as gpu_e2e.sh does) ------------------------
SERVER_ENV=(env)
if [[ -n "${PYTHONPATH:-}" ]] && env -u PYTHONPATH "$SERVER_PY" -c \
        "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') and u.find_spec('aiohttp') else 1)" \
        > /dev/null 2>&1; then
    SERVER_ENV=(env -u PYTHONPATH)
fi
# shellcheck disable=SC2086
"${SERVER_ENV[@]}" "$SERVER_PY" benchmarks/gpu/gpu_server.py --port "$PORT" $SERVER_ARGS > "$SERVER_LOG" 2>&1 &
SERVER_PID=$!
say "server pid $SERVER_PID starting (${SERVER_ENV[*]}; waiting up to 120 s for 'ready')"
READY=0
for _ in $(seq 1 240); do
    if grep -q "^ready on " "$SERVER_LOG" 2>/dev/null; then READY=1; break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.5
done
if (( READY )); then say "server ready"; else say "SERVER NOT READY"; tail -n 30 "$SERVER_LOG" | tee -a "$SUMMARY"; fi
grep "/dcgm/metrics" "$SERVER_LOG" | tee -a "$SUMMARY"
scrape /metrics engine_idle
scrape /dcgm/metrics dcgm_idle
smi loaded_idle

# -- 2. the sweep ---------------------------------------------------------------------------------------------------
T_SWEEP=$(( $(left) - 25 ))
(( T_SWEEP < 1 )) && T_SWEEP=1
say "sweep: concurrency $CONCURRENCY, $REQUESTS requests per point (at most ${MAX_DURATION} s each), timeout ${T_SWEEP}s"
# shellcheck disable=SC2086
timeout -k 5 "$T_SWEEP" "$WB_PY" -m wattbench sweep --base-url "$BASE_URL" --model "$MODEL" \
    --concurrency "$CONCURRENCY" --requests-per-point "$REQUESTS" --max-duration "$MAX_DURATION" \
    --synthetic --input-tokens "$INPUT_TOKENS" --output-tokens "$OUTPUT_TOKENS" --stop-slo-factor 0 \
    --server-metrics auto --server-metrics-interval "$INTERVAL" --gpu-metrics "$DCGM_URL" $GPU_ENERGY_ARGS \
    --profiles-file benchmarks/gpu/h200_profile.json --profiles H200_E2E --no-progress \
    --out "$OUT/sweep" > "$OUT/sweep.console.txt" 2>&1
RC=$?
say "sweep: exit $RC$( ((RC == 124 || RC == 137)) && echo ' (TIMED OUT)')"
grep -E "^(warning|error|sampling|measuring|no server|GPU energy|point done)" "$OUT/sweep.console.txt" \
    | head -n 40 | sed 's/^/  [sweep] /' | tee -a "$SUMMARY"
scrape /metrics engine_after
smi after

# -- 3. stop the server ------------------------------------------------------------------------------------------
if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
fi
wait "$SERVER_PID" 2>/dev/null
tail -n 20 "$SERVER_LOG" > "$OUT/server_log_tail.txt" 2>/dev/null

# -- 4. per point: measured vs simulated at the server's batch, calibrated from $REFERENCE ------------------------
if [[ -f "$OUT/sweep/sweep.json" ]]; then
    timeout 60 "$WB_PY" benchmarks/gpu/server_metrics_summary.py "$OUT/sweep" --profile H200_E2E \
        --reference "$REFERENCE" --json "$OUT/summary.json" 2>&1 | tee -a "$SUMMARY"
    report=$(find "$OUT/sweep" -maxdepth 1 -name report.txt | head -n 1)
    [[ -n "$report" ]] && grep -A 14 "^SERVER VIEW" "$report" | tee -a "$SUMMARY"
else
    say "no sweep.json: nothing to summarise"; tail -n 30 "$OUT/sweep.console.txt" | tee -a "$SUMMARY"
fi
say "done in $(( $(date +%s) - T0 )) s"
