#!/usr/bin/env bash
# Opening a large database: starts `suanli serve` on an existing database (for example the one
# `LISTS_KEEP=1 loadtest/console_lists.sh` keeps) and times what a user meets after a restart:
# when the server listens, the first finance page (while the server prepares the year's balance
# figures it answers 503 within a second and says so), and when that page shows the figures.
# The server's own log lines on the way (records read, figures ready) are printed after.
#
# Usage: loadtest/opening.sh BIN_DIR DATABASE_URL [RUNS]   (default 2 runs)
set -euo pipefail
bin="$1"
url="$2"
runs="${3:-2}"
http="127.0.0.1:${OPENING_HTTP_PORT:-50399}"
work="$(mktemp -d /tmp/suanli-opening.XXXXXX)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

admin="$("$bin/suanli" token create --role admin --database-url "$url" 2>/dev/null)"
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
for run in $(seq 1 "$runs"); do
  t0="$(now)"
  "$bin/suanli" serve --database-url "$url" --addr "127.0.0.1:${OPENING_PORT:-50398}" \
    --http-addr "$http" >"$work/serve.log" 2>&1 &
  server_pid=$!
  until curl -s -o /dev/null "http://$http/signin"; do
    sleep 0.1
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log"; exit 1; fi
  done
  listening="$(since "$t0")"
  t1="$(now)"
  curl -s -o /dev/null -c "$work/jar" --data "token=$admin" "http://$http/signin"
  first="$(curl -s -o "$work/first.html" -b "$work/jar" -w '%{http_code}:%{time_total}' "http://$http/finance/enterprises")"
  polls=1
  until [[ "$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}' "http://$http/finance/enterprises")" == 200 ]]; do
    polls=$((polls + 1))
    sleep 0.5
  done
  echo "run $run: listening after ${listening} s; first /finance/enterprises (status:seconds) $first;" \
    "200 after $(since "$t1") s from listening ($polls polls)"
  grep -E 'stored usage records read|balance figures ready|serving gRPC' "$work/serve.log" \
    | sed 's/^/  /' | cut -c1-200
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
done
