#!/usr/bin/env bash
# Fuzzes keyplex's parsers of untrusted input with cargo-fuzz (libFuzzer), each target for a
# bounded time, one after another.
#
#   scripts/fuzz.sh                  # every target, 20 s each (the short, CI-friendly run)
#   scripts/fuzz.sh 600              # every target, 10 minutes each (a longer run by hand)
#   scripts/fuzz.sh 600 pssh nagra_json          # only these targets
#   FUZZ_ARGS="-max_len=65536" scripts/fuzz.sh 300 cpix_document   # extra libFuzzer flags
#
# Targets (fuzz/fuzz_targets/, each a thin wrapper around the `fuzzing` module of the crate
# it fuzzes, which says what is run and which properties are checked):
#   cpix_document      keyplex-cpix    read_document, SPEKE v2 profile checks, write back + re-read
#   pssh               keyplex-drm     pssh boxes, Widevine data, PlayReady Objects, describe
#   playready_header   keyplex-drm     PlayReady Object and WRMHEADER parsing, write back
#   nagra_json         keyplex-server  NAGRA /key and /cmaf request checks, up to the store
#   widevine_api       keyplex-server  Widevine API envelope and CommonEncryptionRequest checks
#   url_parameters     keyplex-server  GET CPIX and PallyCon/ATEME path parameters and queries,
#                                      and their redaction from the request span
#   entitlement_token  keyplex-server  licence token verification and claim parsing (the
#                                      input is also signed with a test key, to reach claims)
#
# Toolchain: cargo-fuzz needs nightly compiler flags; the machine has stable Rust only, so
# RUSTC_BOOTSTRAP=1 unlocks them. cargo-fuzz is installed from crates.io when missing.
# Targets are built without a sanitizer (FUZZ_SANITIZER=none): keyplex forbids `unsafe`, so
# AddressSanitizer would mostly slow every run down; overflow checks and debug assertions
# are on (cargo-fuzz's default). FUZZ_SANITIZER=address builds with ASan instead (a full
# rebuild: the flags differ).
#
# Each run starts from the committed seeds (fuzz/seeds/<target>/, copied into the working
# corpus fuzz/corpus/<target>/, which keeps what the fuzzer finds between runs) with
# -max_total_time=SECONDS -rss_limit_mb=512 -timeout=5: an input that panics, takes more
# than 5 s or makes the process use more than 512 MB is a failure. The first build takes
# about 12 minutes on two cores (every dependency, release mode, instrumented); later ones
# only rebuild what changed.
#
# A failure: the script carries on with the other targets, then exits 1 and prints each
# artifact path (fuzz/artifacts/<target>/crash-…, timeout-…, oom-…). To work on one:
#   cd fuzz
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> artifacts/<target>/crash-…   # reproduce
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none <target> artifacts/<target>/crash-…  # minimise
# fix the parser (it must return an error, never panic), then keep the minimised input as
# a regression test: copy it to crates/<crate>/tests/fuzz_regressions/<target>/<name>, where
# `cargo test -p <crate> fuzz_regressions` replays every file through the target's function.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
all_targets=(cpix_document pssh playready_header nagra_json widevine_api entitlement_token url_parameters)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
echo "==> building fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  before="$(ls "artifacts/$target")"
  echo "==> $target: ${seconds} s"
  log="artifacts/$target/last-run.log"
  # libFuzzer's own options: ${FUZZ_ARGS} is split into words on purpose.
  # shellcheck disable=SC2086
  if cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -timeout=5 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    echo "    ok: ${runs:-?} executions, corpus $(ls "corpus/$target" | wc -l) inputs"
  else
    tail -n 30 "$log"
    new="$(comm -13 <(echo "$before") <(ls "artifacts/$target") | grep -v '^last-run.log$' || true)"
    for artifact in $new; do echo "    FAILED: fuzz/artifacts/$target/$artifact"; done
    [ -n "$new" ] || echo "    FAILED without an artifact: see fuzz/$log"
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]}" >&2
  exit 1
fi
echo "no failures in ${targets[*]}"
