#!/usr/bin/env bash
# Webhook ingestion: requests/s that quotawatch's POST /hooks/NAME sustains
# (bearer auth, parse, enqueue; the account is dry-run, so nothing is cleared)
# next to a bare axum handler answering 200, on the same machine in the same
# run, both driven by wrk with the same script and settings.
#
#   bench/webhook_ingest.sh            # DURATION=10s CONNS=64 THREADS=2
#
# Needs wrk (apt-get install wrk) and jq. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
QW_PORT=${QW_PORT:-19466}
BARE_PORT=${BARE_PORT:-19467}
LOG_LEVEL=${LOG_LEVEL:-info}
export QW_BENCH_TOKEN=bench-bearer-token

cargo build --release --quiet --bin quotawatch
BARE=$(cargo bench --no-run --quiet --bench bare_axum --message-format=json 2>/dev/null |
  jq -r 'select(.executable != null and .target.name == "bare_axum") | .executable')
QW=target/release/quotawatch

WORK=target/bench-ingest
rm -rf "$WORK" && mkdir -p "$WORK"
cat >"$WORK/quotawatch.toml" <<TOML
[daemon]
listen = "127.0.0.1:$QW_PORT"
state = "$PWD/$WORK/ledger.db"
tokens = ["$QW_BENCH_TOKEN"]
queue_capacity = 1000000
[wechat]
api_base = "http://127.0.0.1:9"
[policy]
dry_run = true
[accounts.shop]
appid = "wx448f04719cd48f69"
kind = "mini_program"
secret = "bench-secret"
[sources.gen]
type = "generic"
[sources.alerts]
type = "alertmanager"
TOML

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

rps() { awk '/^Requests\/sec:/ {print $2}'; }

run_wrk() { # LABEL URL BODY
  local out
  out=$(QW_BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/hook_post.lua "$2")
  echo "$out" >"$WORK/wrk-${1//[^a-z0-9]/_}.txt"
  local errors
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf '%-34s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$1" "$(echo "$out" | rps)" \
    "$(echo "$out" | awk '$1 == "50%" {print $2}')" "$(echo "$out" | awk '$1 == "99%" {print $2}')" "${errors:-0}"
}

wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

"$BARE" --serve "127.0.0.1:$BARE_PORT" 2>"$WORK/bare.log" &
pids+=($!)
QUOTAWATCH_LOG=$LOG_LEVEL "$QW" --config "$WORK/quotawatch.toml" run 2>"$WORK/daemon.log" &
qw_pid=$!
pids+=($qw_pid)
wait_port "$BARE_PORT"
wait_port "$QW_PORT"

GENERIC='{"account":"shop","reason":"45009","count":1}'
ALERT='{"version":"4","status":"firing","commonLabels":{"alertname":"WeChatQuotaExhausted"},"alerts":[{"status":"firing","labels":{"alertname":"WeChatQuotaExhausted","appid":"wx448f04719cd48f69","instance":"app-1"},"annotations":{},"startsAt":"2026-11-28T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"c0ffee"}]}'

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), wrk -t$THREADS -c$CONNS -d$DURATION, QUOTAWATCH_LOG=$LOG_LEVEL"
echo "rss quotawatch before: $(awk '/VmRSS/ {print $2, $3}' /proc/$qw_pid/status)"
run_wrk "bare axum POST /hooks/x" "http://127.0.0.1:$BARE_PORT/hooks/x" "$GENERIC"
run_wrk "quotawatch /hooks/gen (generic)" "http://127.0.0.1:$QW_PORT/hooks/gen" "$GENERIC"
run_wrk "quotawatch /hooks/alerts (am v4)" "http://127.0.0.1:$QW_PORT/hooks/alerts" "$ALERT"
run_wrk "bare axum POST /hooks/x (again)" "http://127.0.0.1:$BARE_PORT/hooks/x" "$ALERT"
echo "rss quotawatch after: $(awk '/VmRSS/ {print $2, $3}' /proc/$qw_pid/status) (peak $(awk '/VmHWM/ {print $2, $3}' /proc/$qw_pid/status))"
echo "signals counted: $(curl -s "http://127.0.0.1:$QW_PORT/metrics" | grep '^quotawatch_signals_total' | tr '\n' ' ')"
