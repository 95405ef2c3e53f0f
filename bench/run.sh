#!/usr/bin/env bash
# Load benchmark of keyplex's CPIX endpoint against a minimal axum "hello" server, both on
# loopback on this machine, in one run. See bench/README.md for what each scenario means.
#
#   bench/run.sh
#
# Environment (all optional):
#   BENCH_SECONDS         length of each measured scenario, seconds        (default 10)
#   BENCH_WARMUP_SECONDS  length of each warm-up, seconds                  (default 3)
#   BENCH_CONNECTIONS     concurrent keep-alive connections                 (default 64)
#   BENCH_THREADS         load-generator threads (wrk -t, oha --worker-threads) (default 2)
#
# Targets (from the issue): CPIX existing-content requests/s >= 30% of hello's requests/s;
# p99 < 5 ms for existing content at half its measured peak rate.
# Exit status: 0 when every scenario ran without HTTP or socket errors (targets are reported
# as PASS/FAIL in the table, not through the exit status), 1 otherwise.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
MEASURE_SECONDS="${BENCH_SECONDS:-10}"
WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
RATIO_TARGET="0.30"
P99_TARGET_MS="5"
USER_PASS="packager:bench-secret"

for value in "$MEASURE_SECONDS" "$WARMUP_SECONDS" "$CONNECTIONS" "$THREADS"; do
  [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "bench: settings must be positive integers, got '$value'" >&2; exit 1; }
done

step() { printf '\n==> %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------
apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
export PATH="$HOME/.cargo/bin:$PATH"
step "Load tools"
command -v wrk >/dev/null || apt_install wrk
command -v jq >/dev/null || apt_install jq
command -v curl >/dev/null || apt_install curl
command -v oha >/dev/null || cargo install oha --locked
echo "wrk: $(wrk -v 2>&1 | head -n1 | cut -c1-40); $(oha --version)" >&2

# --- build -----------------------------------------------------------------------------------
step "Build (release)"
(cd "$ROOT" && cargo build --release -p keyplex -p keyplex-bench-hello)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
KEYPLEX_BIN="$TARGET_DIR/release/keyplex"
HELLO_BIN="$TARGET_DIR/release/keyplex-bench-hello"

# --- servers ---------------------------------------------------------------------------------
WORK_DIR="$(mktemp -d -t keyplex-bench.XXXXXX)"
RESULTS_DIR="$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
SERVER_PIDS=()
cleanup() {
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 30000))
    if [ -z "$(ss -Htln "sport = :$port")" ]; then echo "$port"; return 0; fi
  done
  echo "bench: no free loopback port found" >&2
  return 1
}

wait_ready() { # URL NAME
  for _ in $(seq 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "bench: $2 did not become ready at $1 (log: $RESULTS_DIR/$2.log)" >&2
  return 1
}

step "Start servers"
HELLO_PORT="$(free_port)"
"$HELLO_BIN" "127.0.0.1:$HELLO_PORT" >"$RESULTS_DIR/hello.log" 2>&1 &
HELLO_PID="$!"
SERVER_PIDS+=("$HELLO_PID")
KEYPLEX_PORT="$(free_port)"
while [ "$KEYPLEX_PORT" = "$HELLO_PORT" ]; do KEYPLEX_PORT="$(free_port)"; done
"$KEYPLEX_BIN" serve --config "$BENCH_DIR/bench.toml" --data "$WORK_DIR/data" \
  --listen "127.0.0.1:$KEYPLEX_PORT" >"$RESULTS_DIR/keyplex.log" 2>&1 &
KEYPLEX_PID="$!"
SERVER_PIDS+=("$KEYPLEX_PID")
HELLO_URL="http://127.0.0.1:$HELLO_PORT/"
KEYPLEX_BASE="http://127.0.0.1:$KEYPLEX_PORT"
CPIX_URL="$KEYPLEX_BASE/bench/cpix"
wait_ready "$HELLO_URL" hello
wait_ready "$KEYPLEX_BASE/healthz" keyplex

# The "existing content" request: one fixed document. The first POST creates the key, every
# later one is answered from the store.
EXISTING_BODY="$WORK_DIR/existing.xml"
sed -e 's/@CONTENT_ID@/bench-existing/g' -e 's/@KID@/0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b/g' \
  "$BENCH_DIR/cpix-request.xml" >"$EXISTING_BODY"
AUTH_HEADER="Basic $(printf '%s' "$USER_PASS" | base64)"

check_cpix_response() { # BODY_FILE NAME
  local status
  status="$(curl -sS -o "$RESULTS_DIR/$2-response.xml" -w '%{http_code}' -u "$USER_PASS" \
    -H 'Content-Type: application/xml' --data-binary "@$1" "$CPIX_URL")"
  if [ "$status" != 200 ] || ! grep -q 'PlainValue' "$RESULTS_DIR/$2-response.xml" \
    || [ "$(grep -c '<cpix:PSSH>' "$RESULTS_DIR/$2-response.xml")" != 3 ]; then
    echo "bench: CPIX $2 request answered $status without a key and 3 PSSH boxes (see $RESULTS_DIR/$2-response.xml)" >&2
    return 1
  fi
}
check_cpix_response "$EXISTING_BODY" existing
NEW_SAMPLE="$WORK_DIR/new-sample.xml"
sed -e 's/@CONTENT_ID@/bench-new-sample/g' -e 's/@KID@/7d1c3f0e-5a4b-4c2d-8e9f-0a1b2c3d4e5f/g' \
  "$BENCH_DIR/cpix-request.xml" >"$NEW_SAMPLE"
check_cpix_response "$NEW_SAMPLE" new-content

# --- load ------------------------------------------------------------------------------------
declare -A RPS P50_MS P99_MS ERRORS CPU_US
ANY_ERRORS=0
CLOCK_TICKS="$(getconf CLK_TCK)"

# CPU time (user + system, in clock ticks) a server process has used so far. Divided by the
# requests it served, it gives a cost per request that other load on the machine (builds,
# the load generator itself) disturbs much less than requests/s.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_us_per_request() { # TICKS_BEFORE TICKS_AFTER REQUESTS
  awk -v d="$(($2 - $1))" -v n="$3" -v t="$CLOCK_TICKS" 'BEGIN { printf "%.1f", (n > 0 ? d / t / n * 1e6 : 0) }'
}

# wrk at full speed (fixed connections, no rate limit). Extra arguments are environment
# assignments for bench/wrk.lua.
run_wrk() { # NAME SERVER_PID SECONDS URL [VAR=VALUE...]
  local name="$1" server_pid="$2" seconds="$3" url="$4" ticks_before
  shift 4
  ticks_before="$(cpu_ticks "$server_pid")"
  env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --timeout 10s \
    -s "$BENCH_DIR/wrk.lua" "$url" >"$RESULTS_DIR/$name.txt" 2>&1
  local line
  line="$(grep '^BENCH ' "$RESULTS_DIR/$name.txt")" || { cat "$RESULTS_DIR/$name.txt" >&2; return 1; }
  field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  RPS[$name]="$(field rps)"
  P50_MS[$name]="$(awk -v us="$(field p50_us)" 'BEGIN { printf "%.3f", us / 1000 }')"
  P99_MS[$name]="$(awk -v us="$(field p99_us)" 'BEGIN { printf "%.3f", us / 1000 }')"
  ERRORS[$name]="$(($(field http_errors) + $(field socket_errors)))"
  CPU_US[$name]="$(cpu_us_per_request "$ticks_before" "$(cpu_ticks "$server_pid")" "$(field requests)")"
  if [ "${ERRORS[$name]}" != 0 ]; then ANY_ERRORS=1; fi
}

# oha at a fixed request rate, latency corrected for coordinated omission (latency counts
# from when a request was due, not when a free connection sent it).
run_oha_fixed_rate() { # NAME SECONDS RATE
  local name="$1" seconds="$2" rate="$3" ticks_before
  ticks_before="$(cpu_ticks "$KEYPLEX_PID")"
  oha -z "${seconds}s" -w -c "$CONNECTIONS" --worker-threads "$THREADS" -q "$rate" \
    --latency-correction --no-tui --output-format json \
    -m POST -T application/xml -a "$USER_PASS" -D "$EXISTING_BODY" "$CPIX_URL" \
    >"$RESULTS_DIR/$name.json"
  local json="$RESULTS_DIR/$name.json"
  RPS[$name]="$(jq -r '.summary.requestsPerSec | . * 10 | round / 10' "$json")"
  P50_MS[$name]="$(jq -r '.latencyPercentiles.p50 * 1000 | . * 1000 | round / 1000' "$json")"
  P99_MS[$name]="$(jq -r '.latencyPercentiles.p99 * 1000 | . * 1000 | round / 1000' "$json")"
  ERRORS[$name]="$(jq -r '([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)
    + ([.errorDistribution | to_entries[] | .value] | add // 0)' "$json")"
  if [ "${ERRORS[$name]}" != 0 ]; then ANY_ERRORS=1; fi
  CPU_US[$name]="$(cpu_us_per_request "$ticks_before" "$(cpu_ticks "$KEYPLEX_PID")" \
    "$(jq -r '[.statusCodeDistribution[]] | add // 0' "$json")")"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
step "Warm up (${WARMUP_SECONDS}s each)"
run_wrk warmup-hello "$HELLO_PID" "$WARMUP_SECONDS" "$HELLO_URL"
run_wrk warmup-existing "$KEYPLEX_PID" "$WARMUP_SECONDS" "$CPIX_URL" BENCH_AUTH="$AUTH_HEADER" BENCH_BODY_FILE="$EXISTING_BODY"

step "hello ceiling: GET / (${MEASURE_SECONDS}s, ${CONNECTIONS} connections, ${THREADS} threads)"
run_wrk hello "$HELLO_PID" "$MEASURE_SECONDS" "$HELLO_URL"

step "CPIX existing content: 1 key, 3 DRM systems, same document every request"
run_wrk existing "$KEYPLEX_PID" "$MEASURE_SECONDS" "$CPIX_URL" BENCH_AUTH="$AUTH_HEADER" BENCH_BODY_FILE="$EXISTING_BODY"

step "CPIX new content: fresh contentId and kid every request"
run_wrk new "$KEYPLEX_PID" "$MEASURE_SECONDS" "$CPIX_URL" BENCH_AUTH="$AUTH_HEADER" BENCH_MODE=new-content \
  BENCH_TEMPLATE="$BENCH_DIR/cpix-request.xml" BENCH_NONCE="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

HALF_RATE="$(awk -v rps="${RPS[existing]}" 'BEGIN { r = int(rps / 2); print (r < 1 ? 1 : r) }')"
step "CPIX existing content at half its peak: ${HALF_RATE} requests/s (oha, latency-corrected)"
run_oha_fixed_rate half "$MEASURE_SECONDS" "$HALF_RATE"

# --- report ----------------------------------------------------------------------------------
RATIO="$(awk -v a="${RPS[existing]}" -v b="${RPS[hello]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
RATIO_VERDICT="$(awk -v r="$RATIO" -v t="$RATIO_TARGET" 'BEGIN { print (r >= t ? "PASS" : "FAIL") }')"
P99_VERDICT="$(awk -v p="${P99_MS[half]}" -v t="$P99_TARGET_MS" 'BEGIN { print (p < t ? "PASS" : "FAIL") }')"

{
  echo "keyplex CPIX load benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
  echo "load: ${CONNECTIONS} connections, ${THREADS} threads, ${MEASURE_SECONDS}s per scenario, generator on the same machine"
  echo "load average before / after: ${LOAD_BEFORE} / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews requests/s)"
  echo
  printf '%-44s %12s %9s %9s %7s %14s\n' scenario requests/s "p50 ms" "p99 ms" errors "server CPU/req"
  row() { printf '%-44s %12s %9s %9s %7s %11s us\n' "$1" "${RPS[$2]}" "${P50_MS[$2]}" "${P99_MS[$2]}" "${ERRORS[$2]}" "${CPU_US[$2]}"; }
  row "hello: axum GET / (wrk)" hello
  row "CPIX existing content, 1 key 3 DRMs (wrk)" existing
  row "CPIX new content, 1 key 3 DRMs (wrk)" new
  row "CPIX existing at ${HALF_RATE}/s (oha, corrected)" half
  echo
  echo "existing / hello = ${RATIO} (target >= ${RATIO_TARGET}): ${RATIO_VERDICT}"
  echo "p99 at half load = ${P99_MS[half]} ms (target < ${P99_TARGET_MS} ms): ${P99_VERDICT}"
  if [ "$ANY_ERRORS" != 0 ]; then echo "INVALID RUN: some requests failed (see $RESULTS_DIR)"; fi
} | tee "$RESULTS_DIR/summary.txt"
echo "raw outputs: $RESULTS_DIR" >&2
exit "$ANY_ERRORS"
