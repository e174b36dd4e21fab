#!/usr/bin/env bash
# Console lists at scale: a database of LISTS_BENEFICIARIES enterprises (default 100,000) and
# LISTS_RECORDS usage records (default 10,000,000), then each list's first page, a filtered
# page and a deep page timed through the console over HTTP (curl, three times each).
#
# The records go in through the server's own ingest path (`loadtest` over gRPC: no separate
# bulk path is needed, and the database is exactly what ingest makes); then `loadtest
# --registry-load` replaces the registry with a city registry of as many enterprises (names,
# districts, caps, two programmes, stacking) over the same ids; then one run of January is
# created, approved and posted, and one payment recorded, so the runs and payments lists and
# the cap positions have something to show.
#
# Usage: loadtest/console_lists.sh [sqlite|postgres]   (default sqlite)
# LISTS_BIN=DIR uses the suanli and loadtest binaries in DIR instead of building them;
# LISTS_KEEP=1 keeps the database for more measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
records="${LISTS_RECORDS:-10000000}"
beneficiaries="${LISTS_BENEFICIARIES:-100000}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
pg_base="${SUANLI_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
port="${LISTS_PORT:-50098}"
http="127.0.0.1:${LISTS_HTTP_PORT:-50099}"

if [[ -n "${LISTS_BIN:-}" ]]; then
  bin="$LISTS_BIN"
else
  cargo build --release -p suanli -p loadtest
  bin="$target/release"
fi
work="$(mktemp -d /tmp/suanli-lists.XXXXXX)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [[ -n "${LISTS_KEEP:-}" ]]; then echo "kept $url (and $work)"; return; fi
  rm -rf "$work"
  if [[ "$backend" == postgres ]]; then
    psql "$pg_base" -qc "DROP DATABASE IF EXISTS suanli_lists WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

if [[ "$backend" == postgres ]]; then
  psql "$pg_base" -qc "DROP DATABASE IF EXISTS suanli_lists WITH (FORCE)" >/dev/null
  psql "$pg_base" -qc "CREATE DATABASE suanli_lists" >/dev/null
  url="${pg_base%/*}/suanli_lists"
else
  url="sqlite://$work/lists.db"
fi

serve() {
  "$bin/suanli" serve --database-url "$url" --addr "127.0.0.1:$port" --http-addr "$http" \
    --metrics-addr "127.0.0.1:${LISTS_METRICS_PORT:-50100}" >"$work/serve.log" 2>&1 &
  server_pid=$!
  local t0=$SECONDS
  until curl -s -o /dev/null "http://$http/signin"; do
    sleep 0.2
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log"; exit 1; fi
  done
  echo "server ready in $((SECONDS - t0)) s"
}

admin="$("$bin/suanli" token create --role admin --database-url "$url" 2>/dev/null)"
# Two finance persons: a run's approver must be another person than its creator.
for n in 1 2; do
  "$bin/suanli" user create --database-url "$url" --login "finance$n" --name "finance $n" \
    --role finance >/dev/null
done
finance1="$("$bin/suanli" token create --user finance1 --database-url "$url" 2>/dev/null)"
finance2="$("$bin/suanli" token create --user finance2 --database-url "$url" 2>/dev/null)"
serve
t0=$SECONDS
"$bin/loadtest" --server "127.0.0.1:$port" --token "$admin" --providers 8 \
  --beneficiaries "$beneficiaries" --records "$records"
"$bin/loadtest" --server "127.0.0.1:$port" --token "$admin" --providers 8 \
  --registry-load "$beneficiaries"
echo "loaded in $((SECONDS - t0)) s"

# The run through the console: its preview of every line is larger than a gRPC message.
csrf_of() { grep -o 'name="csrf" value="[0-9a-f]*"' | head -1 | sed 's/.*value="//; s/"//'; }
console_sign_in() {
  curl -s -o /dev/null -c "$work/$1" --data "token=$2" "http://$http/signin"
  curl -s -b "$work/$1" "http://$http/signin" | csrf_of
}
c1="$(console_sign_in f1 "$finance1")"
run="$(curl -s -o /dev/null -w '%{redirect_url}' -b "$work/f1" \
  --data "csrf=$c1&programme=load-national&period=2025-01" "http://$http/finance/runs")"
run="${run##*/}"
c2="$(console_sign_in f2 "$finance2")"
curl -s -o /dev/null -b "$work/f2" --data "csrf=$c2" "http://$http/finance/runs/$run/approve"
confirm="$(curl -s -b "$work/f2" --data "csrf=$c2" "http://$http/finance/runs/$run/post" \
  | grep -o 'name="confirm" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"//')"
curl -s -o /dev/null -b "$work/f2" --data "csrf=$c2&confirm=$confirm" \
  "http://$http/finance/runs/$run/post"
SUANLI_SERVER="http://127.0.0.1:$port" SUANLI_TOKEN="$finance1" "$bin/suanli" ledger \
  record-payment --payee lb1 --amount 1.00 --reference BENCH-1 >/dev/null
if ! curl -s -b "$work/f1" "http://$http/finance/runs?state=posted" | grep -q "<tr data-id=\"$run\">"; then
  echo "run $run was not posted"; exit 1
fi
echo "run $run posted; one payment recorded"

# A restart: the figures below include a server opening the loaded database.
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
serve

curl -s -o /dev/null -c "$work/jar" --data "token=$admin" "http://$http/signin"
# Until the figures the server prepares at start are ready, a page that needs them answers
# within a second with 503 and says so; the lists below are timed once they are.
t_listen=$SECONDS
first="$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}:%{time_total}' "http://$http/finance/enterprises")"
until [[ "$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}' "http://$http/finance/enterprises")" == 200 ]]; do
  sleep 0.5
done
echo "first /finance/enterprises after listening $first; figures ready $((SECONDS - t_listen)) s after listening"
time_get() {
  local times=()
  for _ in 1 2 3; do
    times+=("$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}:%{time_total}' "http://$http$1")")
  done
  printf '%-75s %s\n' "$1" "${times[*]}"
}
# The next-page link of the page at $1 (a page found from its last row).
next_of() {
  curl -s -b "$work/jar" "http://$http$1" | grep -o 'href="[^"]*" rel="next"' \
    | sed 's/^href="//; s/" rel="next"$//; s/&#38;/\&/g'
}
# Deep pages by their links: after page 2,000 (the last a number reaches), and a page in the
# middle of the table, after the first page of a middle provider's records.
after_2000="/records$(next_of "/records?page=2000")"
middle="/records$(next_of "/records?provider=lp3" | sed 's/provider=lp3&//')"
echo "path (status:seconds, three times)"
for path in \
  "/finance/enterprises" \
  "/finance/enterprises?q=lb4242" \
  "/finance/enterprises?state=at_cap&programme=load-city" \
  "/finance/enterprises?sort=settled&dir=desc&page=1000" \
  "/finance/providers" \
  "/finance/providers?q=lp3" \
  "/finance/runs" \
  "/finance/runs?state=posted&period=2025-01" \
  "/finance/payments" \
  "/finance/payments?payee=lb1" \
  "/records" \
  "/records?beneficiary=lb4242" \
  "/records?provider=lp3&void=no" \
  "/records?provider=lp3&void=yes" \
  "/records?void=yes" \
  "/records?sku=lp5-gpu" \
  "/records?period=2025-01" \
  "/records?period=2025-02" \
  "/records?page=100" \
  "/records?page=2000" \
  "$after_2000" \
  "$middle" \
  "/records?page=2001" \
  "/records?beneficiary=lb4242&page=2" \
  "/audit" \
  "/audit?account=payable:load-national:" \
  "/audit?accounts_page=400" \
  "/audit/log" \
  "/audit/log?action=run.post" \
  "/audit/log?page=2&per=20" \
  "/records?beneficiary=lb4242&export=csv" \
  "/records?provider=lp3&export=csv" \
  "/finance/enterprises?export=xlsx" \
  ; do
  time_get "$path"
done
grep -o '"balance figures ready".*' "$work/serve.log" || grep 'balance figures ready' "$work/serve.log" || true

# The optional indexes of usage records, built beside the running server (nothing ingests
# now), then the record lists again: those that scan without them, and the rest.
for which in enterprise month; do
  "$bin/suanli" index create "$which" --database-url "$url"
done
echo "path with both record indexes (status:seconds, three times)"
for path in \
  "/records" \
  "/records?beneficiary=lb4242" \
  "/records?beneficiary=lb4242&page=2" \
  "/records?beneficiary=lb4242&provider=lp3" \
  "/records?period=2025-01" \
  "/records?period=2025-02" \
  "/records?provider=lp3&void=no" \
  "/records?beneficiary=lb4242&export=csv" \
  ; do
  time_get "$path"
done
