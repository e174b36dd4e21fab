#!/usr/bin/env bash
# Soak: the release `suanli serve` and `loadtest` for DURATION seconds at RATE
# records/s, sampling the server's RSS (/proc/PID/status VmRSS) and the batch-ack latency
# p50/p99 of every 10-s interval into a CSV. Without RATE, the maximum is measured first with
# a 1,000,000-record run on a fresh database, and the soak runs at half of it.
#
# Usage: loadtest/soak.sh [sqlite|postgres] [RATE] [DURATION]   (defaults: sqlite, measured, 600)
# Writes soak-<backend>.csv (SOAK_OUT to change) and prints a summary. SOAK_BIN=DIR uses the
# suanli and loadtest binaries in DIR instead of building them (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
rate="${2:-}"
duration="${3:-600}"
out="${SOAK_OUT:-$PWD/soak-$backend.csv}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
pg_base="${SUANLI_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
port="${SOAK_PORT:-50097}"

if [[ -n "${SOAK_BIN:-}" ]]; then
  bin="$SOAK_BIN"
else
  cargo build --release -p suanli -p loadtest
  bin="$target/release"
fi
work="$(mktemp -d /tmp/suanli-soak.XXXXXX)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  if [[ "$backend" == postgres ]]; then
    for db in suanli_soak_max suanli_soak_soak; do
      psql "$pg_base" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT

# A fresh, empty database; prints its URL.
fresh_db() {
  case "$backend" in
    sqlite) echo "sqlite://$work/$1/suanli.db" ;;
    postgres)
      psql "$pg_base" -qc "DROP DATABASE IF EXISTS suanli_soak_$1 WITH (FORCE)" >/dev/null 2>&1
      psql "$pg_base" -qc "CREATE DATABASE suanli_soak_$1" >/dev/null
      echo "${pg_base%/*}/suanli_soak_$1" ;;
    *) echo "backend must be sqlite or postgres" >&2; exit 2 ;;
  esac
}

# Starts the server on a database and waits until it listens; sets server_pid and token.
serve() {
  token=$("$bin/suanli" token create --role admin --database-url "$1")
  "$bin/suanli" serve --database-url "$1" --addr "127.0.0.1:$port" --http-addr off >"$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "suanli serve did not start" >&2; exit 1
}

stop() { kill "$server_pid"; wait "$server_pid" || true; server_pid=""; }

echo "uptime before: $(uptime)"
if [[ -z "$rate" ]]; then
  serve "$(fresh_db max)"
  line=$("$bin/loadtest" --server "127.0.0.1:$port" --token "$token" --records 1000000 | grep 'records/s')
  echo "$line"
  stop
  max=$(sed -E 's/.*: ([0-9]+) records\/s.*/\1/' <<<"$line")
  rate=$((max / 2))
  echo "maximum $max records/s; soak at $rate records/s"
fi

serve "$(fresh_db soak)"
"$bin/loadtest" --server "127.0.0.1:$port" --token "$token" --duration "$duration" \
  --rate "$rate" --sample-secs 10 --server-pid "$server_pid" --samples-csv "$out"
stop
echo "uptime after: $(uptime)"

# Summary: RSS first/min/max/last and the latency range over the intervals.
awk -F, 'NR == 2 { first = $2; min = $2; max = $2 }
  NR > 1 { last = $2; if ($2 < min) min = $2; if ($2 > max) max = $2;
           if ($6 > p99max) p99max = $6; p50 += $5; n++ }
  END { printf "RSS KiB first %d, min %d, max %d, last %d; mean interval p50 %.1f ms, worst interval p99 %.1f ms over %d samples\n",
        first, min, max, last, p50 / n, p99max, n }' "$out"
echo "samples: $out"
