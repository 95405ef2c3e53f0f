#!/usr/bin/env bash
# Load benchmark of keyplex's CPIX endpoint on PostgreSQL, with 1 node and with 3 nodes sharing
# one database (and one master key), all on loopback on this machine. See bench/README.md,
# section "PostgreSQL, 1 and 3 nodes", for what each scenario means and how to read it.
#
#   bench/postgres.sh
#
# Environment (all optional):
#   BENCH_SECONDS         length of each measured scenario, seconds        (default 10)
#   BENCH_WARMUP_SECONDS  length of each warm-up, seconds                  (default 3)
#   BENCH_CONNECTIONS     concurrent keep-alive connections, in total over all nodes (default 64)
#   BENCH_THREADS         wrk threads in total, at least 1 per node         (default 2)
#   BENCH_NODES           node counts to run on PostgreSQL, in order       (default "1 3")
#   BENCH_SQLITE          1: first run the same scenarios on 1 node with SQLite, as a baseline
#                         measured under the same machine load; 0: skip it  (default 1)
#   BENCH_ANALYZE         1: ANALYZE each fresh database before the load, as autovacuum would
#                         have on a database in service; 0: don't (see README) (default 1)
#   BENCH_POSTGRES        PostgreSQL server, without a database name
#                         (default postgres://postgres@127.0.0.1:5432, trust auth)
#
# Every node count gets a fresh database (keyplex_bench_<UTC time>_<pid>_n<nodes>), brought up
# to date with `keyplex migrate` and dropped on exit. With several nodes, one wrk per node runs
# concurrently (connections and threads split between them): requests/s are summed, p50 and
# p99 are those of the worst node. After the load, the script checks that the nodes agree on
# keys, that every answered new-content request stored one key, and that every stored key has
# a key.created audit event; it lists the WARN/ERROR lines of the node logs.
# Exit status: 0 when every scenario ran without HTTP or socket errors and every check passed,
# 1 otherwise.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
MEASURE_SECONDS="${BENCH_SECONDS:-10}"
WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
NODE_COUNTS="${BENCH_NODES:-1 3}"
ANALYZE="${BENCH_ANALYZE:-1}"
PG_SERVER="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
PG_SERVER="${PG_SERVER%/}"
USER_PASS="packager:bench-secret"

# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
# shellcheck disable=SC2086 # NODE_COUNTS is a list
require_positive_integers "$MEASURE_SECONDS" "$WARMUP_SECONDS" "$CONNECTIONS" "$THREADS" $NODE_COUNTS
for nodes in $NODE_COUNTS; do
  [ "$CONNECTIONS" -ge "$nodes" ] || { echo "bench: BENCH_CONNECTIONS ($CONNECTIONS) < $nodes nodes" >&2; exit 1; }
done

# --- tools -----------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
step "Load tools"
ensure_commands wrk curl psql:postgresql-client openssl
echo "wrk: $(wrk -v 2>&1 | head -n1 | cut -c1-40); $(psql --version)" >&2

PG_ADMIN_URL="$PG_SERVER/postgres"
psql_admin() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$PG_ADMIN_URL" "$@"; }
PG_VERSION="$(psql_admin -c 'SHOW server_version')" \
  || { echo "bench: cannot reach PostgreSQL at $PG_SERVER" >&2; exit 1; }
PG_SETTINGS="$(psql_admin -F= -c "SELECT name, setting FROM pg_settings
  WHERE name IN ('synchronous_commit', 'fsync', 'wal_sync_method', 'max_connections', 'shared_buffers')
  ORDER BY name" | tr '\n' ' ')"

# --- build -----------------------------------------------------------------------------------
step "Build (release)"
(cd "$ROOT" && cargo build --release -p keyplex)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
KEYPLEX_BIN="$TARGET_DIR/release/keyplex"

# --- cleanup ---------------------------------------------------------------------------------
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK_DIR="$(mktemp -d -t keyplex-bench-pg.XXXXXX)"
RESULTS_DIR="$BENCH_DIR/results/postgres-$STAMP"
mkdir -p "$RESULTS_DIR"
DB_PREFIX="keyplex_bench_$(date -u +%Y%m%d%H%M%S)_$$"
SERVER_PIDS=()
DATABASES=()
stop_servers() {
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
}
cleanup() {
  stop_servers
  for db in "${DATABASES[@]}"; do
    psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
      || echo "bench: could not drop database $db" >&2
  done
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# All nodes of a run share this master key (a node refuses a database sealed under another).
MASTER_KEY="$(openssl rand -hex 32)"
AUTH_HEADER="Basic $(printf '%s' "$USER_PASS" | base64)"
EXISTING_BODY="$WORK_DIR/existing.xml"
write_existing_body "$EXISTING_BODY"

declare -A RPS P50_MS P99_MS ERRORS CPU_US PG_CPU_US PG_DETAIL REQUESTS NODE_DETAIL STATUS_DETAIL
ANY_ERRORS=0
CHECK_FAILED=0
CHECKS=()
PORTS=()
PIDS=()
DB=""
DB_URL=""

fail_check() { CHECKS+=("FAIL: $*"); CHECK_FAILED=1; echo "bench: check failed: $*" >&2; }
pass_check() { CHECKS+=("ok:   $*"); }

# CPU time (cpu_ticks, lib.sh) of the keyplex node processes, and of PostgreSQL: the backends
# connected to this run's database plus the WAL writer, checkpointer and background writer
# (shared with anything else using the server).
pg_pids() {
  psql_admin -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'
    OR backend_type IN ('walwriter', 'checkpointer', 'background writer')"
}
# Ticks per backend pid, so that backends opened during a scenario count from zero.
pg_ticks_snapshot() { # FILE
  local pid
  for pid in $(pg_pids); do echo "$pid $(cpu_ticks "$pid")"; done >"$1"
}
pg_wal_lsn() { psql_admin -c 'SELECT pg_current_wal_lsn()'; }
# Index entries read through content_keys_by_content (tenant, content_id, ...): no CPIX request
# needs it; a kid lookup planned on it reads every key of the tenant.
pg_by_content_reads() {
  if [ -n "$DB" ]; then
    db_query "SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_all_indexes WHERE indexrelname = 'content_keys_by_content'"
  else echo 0; fi
}
pg_wal_syncs() { psql_admin -c 'SELECT wal_sync FROM pg_stat_wal'; } # server-wide
pg_commits() { # this run's database (read-only statements count too), as far as reported yet
  psql_admin -c "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = '$DB'"
}
pg_ticks_delta() { # BEFORE_FILE AFTER_FILE
  awk 'NR == FNR { before[$1] = $2; next } { d += $2 - ($1 in before ? before[$1] : 0) } END { print d + 0 }' "$1" "$2"
}

# keyplex_requests_total for the CPIX interface on every node, one "status count" per line.
cpix_status_counts() { # OUT_FILE
  local port
  for port in "${PORTS[@]}"; do
    curl -fsS "http://127.0.0.1:$port/metrics" \
      | sed -n 's/^keyplex_requests_total{\(.*\)} \([0-9.e+]*\)$/\1 \2/p' \
      | grep 'interface="cpix"' | sed -n 's/.*status="\([0-9]*\)".* \([0-9.e+]*\)$/\1 \2/p' || true
  done | awk '{ n[$1] += $2 } END { for (s in n) printf "%s %d\n", s, n[s] }' | sort >"$1"
}
status_delta() { # BEFORE AFTER -> "200=123 500=4"
  awk 'NR == FNR { b[$1] = $2; next } { d = $2 - ($1 in b ? b[$1] : 0); if (d > 0) printf "%s%s=%d", sep, $1, d; sep = " " }' "$1" "$2"
}

# One wrk per node, concurrently, connections and threads split between them. Extra arguments
# are environment assignments for bench/wrk.lua; BENCH_NONCE, if given, is made unique per node.
run_wrk_nodes() { # NAME SECONDS [VAR=VALUE...]
  local name="$1" seconds="$2" n="${#PORTS[@]}" i
  shift 2
  local threads=$((THREADS / n)); [ "$threads" -ge 1 ] || threads=1
  local ticks_before pg_before="$WORK_DIR/$name.pg-before" pg_after="$WORK_DIR/$name.pg-after"
  local status_before="$WORK_DIR/$name.status-before" status_after="$WORK_DIR/$name.status-after"
  cpix_status_counts "$status_before"
  local wal_before commits_before syncs_before
  wal_before="$(pg_wal_lsn)"
  commits_before="$(pg_commits)"
  syncs_before="$(pg_wal_syncs)"
  local by_content_before
  by_content_before="$(pg_by_content_reads)"
  pg_ticks_snapshot "$pg_before"
  ticks_before="$(cpu_ticks "${PIDS[@]}")"
  local wrk_pids=()
  for i in $(seq 0 $((n - 1))); do
    local conns=$((CONNECTIONS / n + (i < CONNECTIONS % n ? 1 : 0)))
    local vars=("$@") v
    for v in "${!vars[@]}"; do
      if [[ "${vars[$v]}" == BENCH_NONCE=* ]]; then
        vars[v]="BENCH_NONCE=$(printf '%08x' $((0x${vars[$v]#BENCH_NONCE=} ^ (i << 24))))"
      fi
    done
    env "${vars[@]}" wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 10s \
      -s "$BENCH_DIR/wrk.lua" "http://127.0.0.1:${PORTS[$i]}/bench/cpix" \
      >"$RESULTS_DIR/$name-node$((i + 1)).txt" 2>&1 &
    wrk_pids+=("$!")
  done
  local wrk_failed=0
  for i in "${!wrk_pids[@]}"; do wait "${wrk_pids[$i]}" || wrk_failed=1; done
  local ticks_after
  ticks_after="$(cpu_ticks "${PIDS[@]}")"
  pg_ticks_snapshot "$pg_after"
  local wal_after
  wal_after="$(pg_wal_lsn)"
  cpix_status_counts "$status_after"
  local total_rps=0 total_requests=0 worst_p50=0 worst_p99=0 errors=0 detail="" line
  for i in $(seq 0 $((n - 1))); do
    local out="$RESULTS_DIR/$name-node$((i + 1)).txt"
    line="$(grep '^BENCH ' "$out")" || { cat "$out" >&2; wrk_failed=1; continue; }
    field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
    total_rps="$(awk -v a="$total_rps" -v b="$(field rps)" 'BEGIN { printf "%.1f", a + b }')"
    total_requests=$((total_requests + $(field requests)))
    errors=$((errors + $(field http_errors) + $(field socket_errors)))
    worst_p50="$(awk -v a="$worst_p50" -v b="$(field p50_us)" 'BEGIN { print (b > a ? b : a) }')"
    worst_p99="$(awk -v a="$worst_p99" -v b="$(field p99_us)" 'BEGIN { print (b > a ? b : a) }')"
    detail+="$(printf '    node %d: %10.1f req/s  p50 %7.3f ms  p99 %7.3f ms  %d http + %d socket errors' \
      $((i + 1)) "$(field rps)" "$(awk -v us="$(field p50_us)" 'BEGIN { print us / 1000 }')" \
      "$(awk -v us="$(field p99_us)" 'BEGIN { print us / 1000 }')" "$(field http_errors)" "$(field socket_errors)")"$'\n'
  done
  RPS[$name]="$total_rps"
  REQUESTS[$name]="$total_requests"
  P50_MS[$name]="$(awk -v us="$worst_p50" 'BEGIN { printf "%.3f", us / 1000 }')"
  P99_MS[$name]="$(awk -v us="$worst_p99" 'BEGIN { printf "%.3f", us / 1000 }')"
  ERRORS[$name]="$errors"
  NODE_DETAIL[$name]="$detail"
  STATUS_DETAIL[$name]="$(status_delta "$status_before" "$status_after")"
  CPU_US[$name]="$(us_per_request "$((ticks_after - ticks_before))" "$total_requests")"
  PG_CPU_US[$name]="$(us_per_request "$(pg_ticks_delta "$pg_before" "$pg_after")" "$total_requests")"
  if [ -n "$DB" ]; then
    sleep 1.2 # backends report their transaction counts at most once a second
    local wal_bytes commits syncs
    wal_bytes="$(psql_admin -c "SELECT pg_wal_lsn_diff('$wal_after', '$wal_before')")"
    commits=$(($(pg_commits) - commits_before))
    syncs=$(($(pg_wal_syncs) - syncs_before))
    local by_content=$(($(pg_by_content_reads) - by_content_before))
    PG_DETAIL[$name]="$(awk -v w="$wal_bytes" -v c="$commits" -v f="$syncs" -v b="$by_content" -v n="$total_requests" \
      'BEGIN { if (n > 0) printf "postgres per request: %.2f transactions, %.2f WAL syncs, %.0f bytes of WAL, %.1f index entries read through content_keys_by_content", c / n, f / n, w / n, b / n }')"
  fi
  if [ "$errors" != 0 ] || [ "$wrk_failed" != 0 ]; then ANY_ERRORS=1; fi
  if grep -qE '(^| )[013-9][0-9]{2}=' <<<"${STATUS_DETAIL[$name]}"; then
    fail_check "$name: keyplex answered non-2xx CPIX statuses: ${STATUS_DETAIL[$name]}"
  fi
}

# POST a CPIX document to one node; prints the response's first PlainValue (the key).
cpix_key() { # PORT BODY_FILE NAME
  local status out="$RESULTS_DIR/$3-response.xml"
  status="$(curl -sS -o "$out" -w '%{http_code}' -u "$USER_PASS" \
    -H 'Content-Type: application/xml' --data-binary "@$2" "http://127.0.0.1:$1/bench/cpix")"
  if [ "$status" != 200 ] || [ "$(grep -c '<cpix:PSSH>' "$out")" != 3 ]; then
    echo "bench: CPIX $3 request answered $status without a key and 3 PSSH boxes (see $out)" >&2
    return 1
  fi
  grep -o 'PlainValue>[^<]*' "$out" | head -n1 | sed 's/.*>//'
}

db_query() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB_URL" -c "$1"; }

# WARN and ERROR lines of a phase's node logs, counted by message (time stamps and colours off).
log_summary() { # TAG
  cat "$RESULTS_DIR/$1"-node*.log | sed 's/\x1b\[[0-9;]*m//g' | grep -E '^[^ ]+ +(WARN|ERROR) ' \
    | sed -E 's/^[^ ]+ +//; s/elapsed=[^ ]*( elapsed_secs=[^ ]*)?/elapsed=…/' | sort | uniq -c | sort -rn || true
}

# After a new-content run on PostgreSQL: every 200 that keyplex counted stored exactly one new
# key (requests still in flight when wrk stopped may add some, at most one per connection);
# every stored key has a durable key.created audit event; audit ids have no gaps (a gap is an
# audit insert that was rolled back, i.e. events lost).
check_database() { # TAG NODES KEYS_BEFORE
  local tag="$1" nodes="$2" keys_before="$3" keys_after created_events new_keys ok200 gaps
  sleep 0.5 # the audit flusher commits queued events every 100 ms
  keys_after="$(db_query 'SELECT count(*) FROM content_keys')"
  created_events="$(db_query "SELECT coalesce(sum(array_length(string_to_array(key_ids, ' '), 1)), 0)
    FROM audit_events WHERE action = 'key.created'")"
  new_keys=$((keys_after - keys_before))
  ok200="$(sed -n 's/.*\b200=\([0-9]*\).*/\1/p' <<<"${STATUS_DETAIL[$tag-new]}")"
  ok200="${ok200:-0}"
  if [ "$new_keys" -ge "$ok200" ] && [ "$new_keys" -le $((ok200 + CONNECTIONS)) ]; then
    pass_check "$nodes node(s): $new_keys new keys stored for $ok200 answers 200 (wrk completed ${REQUESTS[$tag-new]})"
  else
    fail_check "$nodes node(s): $new_keys new keys stored, but keyplex counted $ok200 answers 200 (wrk completed ${REQUESTS[$tag-new]})"
  fi
  if [ "$created_events" = "$keys_after" ]; then
    pass_check "$nodes node(s): all $keys_after stored keys have a key.created audit event"
  else
    local where
    # Where the keys without an event are in insertion order: 1 = the newest key.
    where="$(db_query "WITH audited AS (
        SELECT replace(unnest(string_to_array(key_ids, ' ')), '-', '') AS hex
        FROM audit_events WHERE action = 'key.created'),
      k AS (SELECT encode(kid, 'hex') AS hex, row_number() OVER (ORDER BY seq DESC) AS from_end
        FROM content_keys)
      SELECT string_agg(from_end::text, ',' ORDER BY from_end) FROM k
      WHERE NOT EXISTS (SELECT 1 FROM audited a WHERE a.hex = k.hex)")"
    fail_check "$nodes node(s): $((keys_after - created_events)) of $keys_after stored keys have no key.created audit event (their rank from the newest key: $where)"
  fi
  gaps="$(db_query 'SELECT coalesce(max(id) - min(id) + 1 - count(*), 0) FROM audit_events')"
  if [ "$gaps" = 0 ]; then
    pass_check "$nodes node(s): audit event ids have no gaps (no audit insert rolled back)"
  else
    fail_check "$nodes node(s): $gaps audit event ids missing (audit inserts rolled back: queued events lost)"
  fi
}

# --- one phase: a store and a node count -----------------------------------------------------
run_phase() { # sqlite|postgres NODES
  local kind="$1" nodes="$2" i tag config
  if [ "$kind" = sqlite ]; then
    tag="sqlite"
    DB=""
    DB_URL=""
    config="$BENCH_DIR/bench.toml"
    step "[SQLite, 1 node] baseline, same scenarios"
  else
    tag="n$nodes"
    DB="${DB_PREFIX}_$tag"
    DB_URL="$PG_SERVER/$DB"
    step "[$nodes node(s)] fresh database $DB, migrate, start"
    psql_admin -c "CREATE DATABASE \"$DB\""
    DATABASES+=("$DB")
    "$KEYPLEX_BIN" migrate --database-url "$DB_URL" >"$RESULTS_DIR/$tag-migrate.log" 2>&1 \
      || { cat "$RESULTS_DIR/$tag-migrate.log" >&2; return 1; }
    config="$WORK_DIR/bench-$tag.toml"
    { printf '[server]\ndatabase_url = "%s"\n\n' "$DB_URL"; cat "$BENCH_DIR/bench.toml"; } >"$config"
  fi
  PHASES+=("$tag")
  PHASE_LABEL[$tag]="$nodes"
  [ "$kind" = sqlite ] && PHASE_LABEL[$tag]="1 (SQLite)"

  PORTS=()
  PIDS=()
  for i in $(seq 1 "$nodes"); do PORTS+=("$(free_port)"); done
  # All nodes start at once, as a deployment would.
  for i in $(seq 1 "$nodes"); do
    KEYPLEX_MASTER_KEY="$MASTER_KEY" "$KEYPLEX_BIN" serve --config "$config" \
      --data "$WORK_DIR/data-$tag-node$i" --listen "127.0.0.1:${PORTS[$((i - 1))]}" \
      >"$RESULTS_DIR/$tag-node$i.log" 2>&1 &
    PIDS+=("$!")
    SERVER_PIDS+=("$!")
  done
  for i in $(seq 1 "$nodes"); do
    wait_ready "http://127.0.0.1:${PORTS[$((i - 1))]}/healthz" "$tag-node$i"
  done

  # Consistency: the existing-content key is created by node 1, then every node must answer
  # the same key. A key created by the last node must be answered unchanged by node 1.
  local key other
  key="$(cpix_key "${PORTS[0]}" "$EXISTING_BODY" "$tag-existing-node1")"
  for i in $(seq 2 "$nodes"); do
    other="$(cpix_key "${PORTS[$((i - 1))]}" "$EXISTING_BODY" "$tag-existing-node$i")"
    if [ "$other" = "$key" ]; then pass_check "$nodes nodes: node $i answers node 1's existing-content key"
    else fail_check "$nodes nodes: node $i answers another existing-content key than node 1"; fi
  done
  local sample="$WORK_DIR/new-sample-$tag.xml"
  sed -e "s/@CONTENT_ID@/bench-new-sample-$tag/g" -e 's/@KID@/7d1c3f0e-5a4b-4c2d-8e9f-0a1b2c3d4e5f/g' \
    "$BENCH_DIR/cpix-request.xml" >"$sample"
  key="$(cpix_key "${PORTS[$((nodes - 1))]}" "$sample" "$tag-new-sample-node$nodes")"
  other="$(cpix_key "${PORTS[0]}" "$sample" "$tag-new-sample-again-node1")"
  if [ "$nodes" -gt 1 ]; then
    if [ "$key" = "$other" ]; then pass_check "$nodes nodes: a key created by node $nodes is answered unchanged by node 1"
    else fail_check "$nodes nodes: node 1 answers another key than node $nodes created"; fi
  fi

  if [ -n "$DB" ] && [ "$ANALYZE" = 1 ]; then
    # Statistics as autovacuum keeps them on a database in service. A fresh database has none
    # until autovacuum's first pass (a minute or more), and until then the planner may look
    # kids up through content_keys_by_content: every lookup reads all of the tenant's keys.
    db_query 'ANALYZE' >/dev/null
  fi

  step "[$tag] warm up (${WARMUP_SECONDS}s)"
  run_wrk_nodes "$tag-warmup" "$WARMUP_SECONDS" BENCH_AUTH="$AUTH_HEADER" BENCH_BODY_FILE="$EXISTING_BODY"

  step "[$tag] CPIX existing content (${MEASURE_SECONDS}s, ${CONNECTIONS} connections in total)"
  run_wrk_nodes "$tag-existing" "$MEASURE_SECONDS" BENCH_AUTH="$AUTH_HEADER" BENCH_BODY_FILE="$EXISTING_BODY"

  local keys_before=0
  [ -n "$DB" ] && keys_before="$(db_query 'SELECT count(*) FROM content_keys')"
  step "[$tag] CPIX new content (${MEASURE_SECONDS}s): every request creates and stores a key"
  run_wrk_nodes "$tag-new" "$MEASURE_SECONDS" BENCH_AUTH="$AUTH_HEADER" BENCH_MODE=new-content \
    BENCH_TEMPLATE="$BENCH_DIR/cpix-request.xml" BENCH_NONCE="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

  if [ -n "$DB" ]; then
    check_database "$tag" "$nodes" "$keys_before"
    DB_SIZE[$tag]="$(db_query "SELECT pg_size_pretty(pg_database_size(current_database()))")"
  fi
  LOGS[$tag]="$(log_summary "$tag")"
  if grep -q ' ERROR ' <<<"${LOGS[$tag]}"; then fail_check "$tag: ERROR lines in the node logs"; fi
  stop_servers
}

declare -A DB_SIZE LOGS PHASE_LABEL
PHASES=()
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${BENCH_SQLITE:-1}" = 1 ]; then run_phase sqlite 1; fi
for nodes in $NODE_COUNTS; do run_phase postgres "$nodes"; done

# --- report ----------------------------------------------------------------------------------
{
  echo "keyplex CPIX load benchmark on PostgreSQL, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  machine_line
  echo "PostgreSQL $PG_VERSION at ${PG_SERVER#*@}: $PG_SETTINGS"
  echo "load: ${CONNECTIONS} connections and ${THREADS} wrk threads in total (split over the nodes, one wrk per node), ${MEASURE_SECONDS}s per scenario, everything on the same machine"
  echo "load average before / after: ${LOAD_BEFORE} / $(cut -d' ' -f1-3 /proc/loadavg); ANALYZE before the load: $([ "$ANALYZE" = 1 ] && echo yes || echo no)"
  echo
  printf '%-30s %-10s %11s %9s %9s %7s %12s %12s\n' scenario nodes requests/s "p50 ms" "p99 ms" errors "keyplex CPU" "postgres CPU"
  for tag in "${PHASES[@]}"; do
    for scenario in existing new; do
      name="$tag-$scenario"
      label="CPIX existing content"; [ "$scenario" = new ] && label="CPIX new content (key stored)"
      pg_cpu="${PG_CPU_US[$name]} us"; [ "$tag" = sqlite ] && pg_cpu="-"
      printf '%-30s %-10s %11s %9s %9s %7s %9s us %12s\n' "$label" "${PHASE_LABEL[$tag]}" "${RPS[$name]}" \
        "${P50_MS[$name]}" "${P99_MS[$name]}" "${ERRORS[$name]}" "${CPU_US[$name]}" "$pg_cpu"
    done
  done
  echo
  echo "p50/p99 with several nodes: the worst node's. CPU columns: per request; keyplex = all nodes,"
  echo "postgres = this database's backends + WAL writer, checkpointer, background writer."
  echo
  echo "per node, and keyplex's own count of CPIX answers by HTTP status (from /metrics):"
  for tag in "${PHASES[@]}"; do
    for scenario in existing new; do
      name="$tag-$scenario"
      echo "  $name: statuses ${STATUS_DETAIL[$name]:-none}${PG_DETAIL[$name]:+; ${PG_DETAIL[$name]}}"
      printf '%s' "${NODE_DETAIL[$name]}"
    done
    [ -n "${DB_SIZE[$tag]:-}" ] && echo "  database size after the run: ${DB_SIZE[$tag]}"
    if [ -n "${LOGS[$tag]}" ]; then
      echo "  WARN/ERROR lines in the $tag node logs (count, message):"
      sed 's/^ */    /' <<<"${LOGS[$tag]}" | cut -c1-200
    fi
  done
  echo
  echo "checks:"
  for check in "${CHECKS[@]}"; do echo "  $check"; done
  if [ "$ANY_ERRORS" != 0 ]; then echo "INVALID RUN: some requests failed (see $RESULTS_DIR)"; fi
  if [ "$CHECK_FAILED" != 0 ]; then echo "CHECKS FAILED: see the FAIL lines above and $RESULTS_DIR"; fi
} | tee "$RESULTS_DIR/summary.txt"
echo "raw outputs: $RESULTS_DIR" >&2
[ "$ANY_ERRORS" = 0 ] && [ "$CHECK_FAILED" = 0 ]
