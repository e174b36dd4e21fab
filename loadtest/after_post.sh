#!/usr/bin/env bash
# After a post and after a payment, at scale: starts `suanli serve` on an existing database
# (for example a copy of the one `LISTS_KEEP=1 loadtest/console_lists.sh` keeps, whose run of
# January for `load-national` is posted), waits for the balance figures it prepares at start,
# then creates, approves and posts a run through the console as two finance persons and times
# what enterprises and the finance office meet next: the first enterprise page and balance
# look-up after the post, the finance overview, and the same after a payment is recorded.
# The database is changed (a run is posted, a payment recorded): run it on a copy.
#
# Usage: loadtest/after_post.sh BIN_DIR DATABASE_URL [PROGRAMME] [PERIOD]
#        (default load-city 2025-01)
# AFTER_POST_KEEP_LOG=FILE keeps the server's log (it says how long adding the run's lines took).
# AFTER_POST_PROBE=1 also has provider lp3 import one record (SKU lp3-gpu, enterprise lb4242)
# every 200 ms from before the run is created until it is posted, and prints the slowest
# imports: what a provider's ingest waits while the run is written (CLI process included).
set -euo pipefail
bin="$1"
url="$2"
programme="${3:-load-city}"
period="${4:-2025-01}"
port="${AFTER_POST_PORT:-50498}"
http="127.0.0.1:${AFTER_POST_HTTP_PORT:-50499}"
work="$(mktemp -d /tmp/suanli-after-post.XXXXXX)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [[ -n "${AFTER_POST_KEEP_LOG:-}" ]] && cp "$work/serve.log" "$AFTER_POST_KEEP_LOG"; rm -rf "$work"
}
trap cleanup EXIT

token() { "$bin/suanli" token create "$@" --database-url "$url" 2>/dev/null; }
admin="$(token --role admin)"
finance1="$(token --user finance1)"
finance2="$(token --user finance2)"
"$bin/suanli" serve --database-url "$url" --addr "127.0.0.1:$port" --http-addr "$http" \
  --metrics-addr "127.0.0.1:${AFTER_POST_METRICS_PORT:-50497}" >"$work/serve.log" 2>&1 &
server_pid=$!
until curl -s -o /dev/null "http://$http/signin"; do
  sleep 0.2
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log"; exit 1; fi
done
csrf_of() { grep -o 'name="csrf" value="[0-9a-f]*"' | head -1 | sed 's/.*value="//; s/"//'; }
sign_in() {
  curl -s -o /dev/null -c "$work/$1" --data "token=$2" "http://$http/signin"
  curl -s -b "$work/$1" "http://$http/signin" | csrf_of
}
sign_in jar "$admin" >/dev/null
until [[ "$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}' "http://$http/finance/enterprises")" == 200 ]]; do
  sleep 0.5
done
get() {
  printf '%-55s %s\n' "$1" "$(curl -s -o /dev/null -b "$work/jar" -w '%{http_code}:%{time_total}' "http://$http$1")"
}
lookup() {
  local t0
  t0="$(date +%s.%N)"
  SUANLI_SERVER="http://127.0.0.1:$port" SUANLI_TOKEN="$admin" "$bin/suanli" balance \
    --beneficiary "$1" --year 2025 >/dev/null
  printf '%-55s %.3f s\n' "balance look-up (gRPC) of $1" "$(echo "$(date +%s.%N) - $t0" | bc)"
}
echo "figures ready; before the post:"
get "/enterprise?beneficiary=lb4242"
lookup lb4241

probe_pid=""
if [[ -n "${AFTER_POST_PROBE:-}" ]]; then
  provider="$(token --role provider --provider lp3)"
  (
    i=0
    while [[ ! -f "$work/probe.stop" ]]; do
      i=$((i + 1))
      printf 'provider,record_id,beneficiary,sku,start,end,quantity,amount\nlp3,after-post-probe-%s-%s,lb4242,lp3-gpu,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,1.00\n' \
        "$i" "$$" >"$work/probe.csv"
      t0="$(date +%s%N)"
      SUANLI_SERVER="http://127.0.0.1:$port" SUANLI_TOKEN="$provider" "$bin/suanli" usage import \
        --file "$work/probe.csv" >/dev/null 2>"$work/probe.err" || cat "$work/probe.err"
      echo "$(( ($(date +%s%N) - t0) / 1000000 ))" >>"$work/probe.ms"
      sleep 0.2
    done
  ) &
  probe_pid=$!
fi
c1="$(sign_in f1 "$finance1")"
c2="$(sign_in f2 "$finance2")"
t0="$(date +%s.%N)"
run="$(curl -s -o /dev/null -w '%{redirect_url}' -b "$work/f1" \
  --data "csrf=$c1&programme=$programme&period=$period" "http://$http/finance/runs")"
run="${run##*/}"
curl -s -o /dev/null -b "$work/f2" --data "csrf=$c2" "http://$http/finance/runs/$run/approve"
confirm="$(curl -s -b "$work/f2" --data "csrf=$c2" "http://$http/finance/runs/$run/post" \
  | grep -o 'name="confirm" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"//')"
curl -s -o /dev/null -b "$work/f2" --data "csrf=$c2&confirm=$confirm" \
  "http://$http/finance/runs/$run/post"
if ! curl -s -b "$work/f1" "http://$http/finance/runs?state=posted" | grep -q "<tr data-id=\"$run\">"; then
  echo "run $run was not posted"; exit 1
fi
printf 'run %s of %s for %s created, approved and posted in %.1f s\n' "$run" "$programme" \
  "$period" "$(echo "$(date +%s.%N) - $t0" | bc)"
if [[ -n "$probe_pid" ]]; then
  touch "$work/probe.stop"
  wait "$probe_pid"
  echo "provider imports of one record meanwhile: $(wc -l <"$work/probe.ms") calls, slowest (ms):" \
    "$(sort -n "$work/probe.ms" | tail -5 | tr '\n' ' ')"
fi
echo "after the post:"
get "/enterprise?beneficiary=lb4243"
get "/enterprise?beneficiary=lb4244"
lookup lb4245
get "/finance"
SUANLI_SERVER="http://127.0.0.1:$port" SUANLI_TOKEN="$finance1" "$bin/suanli" ledger \
  record-payment --payee lb1 --amount 1.00 --reference "AFTER-POST-$run" >/dev/null
echo "after a payment:"
lookup lb4246
get "/enterprise?beneficiary=lb4247"
get "/finance"
# The server's memory: resident now and at its peak.
grep -E '^(VmRSS|VmHWM)' "/proc/$server_pid/status" | tr -s ' \t' ' ' | sed 's/^/server /'
