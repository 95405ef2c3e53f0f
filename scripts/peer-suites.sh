#!/usr/bin/env bash
# Runs the clients' own test suites (../shared/peer-suites/, kept there unchanged) against a
# real keyplex: AWS's SPEKE v2 verification suite, signing with SigV4 like MediaPackage.
#   scripts/peer-suites.sh [path/to/keyplex]      (default target/debug/keyplex)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/keyplex}
SUITES=${KEYPLEX_PEER_SUITES:-../shared/peer-suites}
[ -x "$SUITES/spekev2/run.sh" ] || { echo "no peer suites at $SUITES" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
cat >"$work/keyplex.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
data_dir = "$work/data"

[tenants.aws]
sigv4 = [{ access_key_id = "AKIDPEERSUITE", secret_access_key = "$secret", region = "us-east-1", service = "execute-api" }]
TOML
KEYPLEX_MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') \
  "$BIN" serve --config "$work/keyplex.toml" >"$work/keyplex.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$work/keyplex.log" >&2; exit 1; }
  sleep 0.1
done

echo "AWS SPEKE v2 verification suite against http://127.0.0.1:$port/aws/speke/v2"
SPEKEV2_SIGV4_ID=AKIDPEERSUITE SPEKEV2_SIGV4_SECRET=$secret \
  "$SUITES/spekev2/run.sh" "http://127.0.0.1:$port/aws/speke/v2"
