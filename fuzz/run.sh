#!/usr/bin/env bash
# Runs each fuzz target (usage_fields: the CSV usage parser; registry_toml: the registry
# loader; validate: record validation; settlement: the engine and the year-to-date restatement
# over generated registries and changing usage) for a bounded time and exits non-zero if any of them
# finds a crash. Installs cargo-fuzz from crates.io when it is missing. Works on the stable
# toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (sanitizer coverage, ASan).
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60, all four targets)
# A crash is saved under fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a regression test in crates/domain/tests/robustness.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(usage_fields registry_toml validate settlement)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  CARGO_TARGET_DIR="${CARGO_FUZZ_BUILD_DIR:-/tmp/cargo-fuzz-build}" cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# Seed corpora from the shipped examples, so the fuzzers start from valid inputs.
mkdir -p corpus/registry_toml corpus/usage_fields corpus/validate
cp ../examples/*.toml ../examples/worked/registry.toml corpus/registry_toml/
n=0
tail -n +2 ../examples/worked/usage.csv | while IFS= read -r line; do
  n=$((n + 1))
  printf '%s' "$line" > "corpus/usage_fields/worked-$n"
  # validate's input is record_id,sku,start,end,quantity,amount (provider and beneficiary fixed).
  cut -d, -f2,4- <<<"$line" | tr -d '\n' > "corpus/validate/worked-$n"
done

status=0
for target in "${targets[@]}"; do
  echo "== $target for ${seconds}s"
  if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -max_len=65536 -print_final_stats=1; then
    echo "!! $target failed: a crash is under fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit "$status"
