# Helpers shared by bench/run.sh and bench/postgres.sh (sourced, not run). The including script
# sets BENCH_DIR and RESULTS_DIR before calling wait_ready.

step() { printf '\n==> %s\n' "$*" >&2; }

require_positive_integers() { # VALUE...
  local value
  for value in "$@"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "bench: settings must be positive integers, got '$value'" >&2; exit 1; }
  done
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Installs the Debian packages that provide the missing commands: "command[:package]"...
ensure_commands() {
  local spec cmd pkg
  for spec in "$@"; do
    cmd="${spec%%:*}"
    pkg="${spec#*:}"
    command -v "$cmd" >/dev/null || apt_install "$pkg"
  done
}

USED_PORTS=" "
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 30000))
    if [[ "$USED_PORTS" != *" $port "* ]] && [ -z "$(ss -Htln "sport = :$port")" ]; then
      USED_PORTS+="$port "
      echo "$port"
      return 0
    fi
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

CLOCK_TICKS="$(getconf CLK_TCK)"

# CPU time (user + system, in clock ticks) that processes have used so far. Divided by the
# requests they served, it gives a cost per request that other load on the machine (builds,
# the load generator itself) disturbs much less than requests/s.
cpu_ticks() { # PID...
  local total=0 pid
  for pid in "$@"; do
    if [ -r "/proc/$pid/stat" ]; then
      total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    fi
  done
  echo "$total"
}

us_per_request() { # TICKS REQUESTS
  awk -v d="$1" -v n="$2" -v t="$CLOCK_TICKS" 'BEGIN { printf "%.1f", (n > 0 ? d / t / n * 1e6 : 0) }'
}

machine_line() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
}

# The "existing content" CPIX document (one key, three DRM systems): after the first request
# every one is answered from the store.
EXISTING_KID="0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b"
write_existing_body() { # OUT_FILE
  sed -e 's/@CONTENT_ID@/bench-existing/g' -e "s/@KID@/$EXISTING_KID/g" \
    "$BENCH_DIR/cpix-request.xml" >"$1"
}
