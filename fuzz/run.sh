#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS to change).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash is saved under
# fuzz/artifacts/<target>/; turn it into a regression test in crates/domain/tests/robustness.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz on nightly is required: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi
mkdir -p corpus/registry_toml
cp ../examples/*.toml ../examples/worked/registry.toml corpus/registry_toml/ 2>/dev/null || true
for target in usage_fields registry_toml validate; do
    echo "== $target for ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=65536
done
