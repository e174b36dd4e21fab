#!/usr/bin/env bash
# Crash safety, longer runs: the harness of crates/cli/tests/crash_safety.rs (the
# same code CI runs with 22 kills and seed 7) with more kills and a fresh seed, printed so a
# failure reproduces with SUANLI_CRASH_SEED=<seed>.
#
# Usage: loadtest/crash.sh [KILLS] [sqlite|postgres|both] [--release]
#   KILLS defaults to 100 per backend; --release drives the release binary (one more build).
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-100}"
backend="${2:-both}"
profile=()
[[ "${3:-}" == "--release" ]] && profile=(--release)
seed="${SUANLI_CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
case "$backend" in
  sqlite) filter=(sigkill_under_load_on_sqlite) ;;
  postgres) filter=(sigkill_under_load_on_postgres) ;;
  both) filter=() ;;
  *) echo "backend must be sqlite, postgres or both" >&2; exit 2 ;;
esac
echo "crash safety: seed $seed, $kills kills per backend ($backend)"
# PostgreSQL must be there: a skipped backend is not a pass.
SUANLI_REQUIRE_POSTGRES=1 SUANLI_CRASH_SEED="$seed" SUANLI_CRASH_KILLS="$kills" \
  cargo test "${profile[@]}" -p suanli --test crash_safety -- --nocapture --test-threads=1 "${filter[@]}"
