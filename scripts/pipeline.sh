#!/usr/bin/env bash
# Runs one of the three end-to-end pipelines in one command:
#
#   scripts/pipeline.sh fraud_alerts          [EVENTS [RATE]]
#   scripts/pipeline.sh clickstream_sessions  [EVENTS [RATE]]
#   scripts/pipeline.sh cdc_materialized_view [EVENTS [RATE]]
#
# It installs and starts the servers the pipeline needs (Kafka-compatible
# Tansu, Redis, ClickHouse) on free loopback ports in a temporary directory,
# creates the input topic, runs the generator (EVENTS messages, default
# 200000, at RATE a second, default 20000) and the job at the same time, as
# live data (the job stops after the EVENTS messages; checkpoints every
# second, exactly-once sinks), shows what the job wrote, and stops the
# servers when it ends (also on failure or Ctrl-C). RATE=0 produces
# everything first and lets the job read it as a backlog. Set KEEP=1 to
# leave the servers running. docs/pipelines.md explains what to look at.
#
# BENCH="--mode throughput" (or "--mode latency") runs the end-to-end
# benchmark (benches/src/bin/pipelines.rs) on these servers instead.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:-}
events=${2:-200000}
rate=${3:-20000}
case $name in
  fraud_alerts) topic=payments; needs=(kafka redis) ;;
  clickstream_sessions) topic=page-views; needs=(kafka clickhouse) ;;
  cdc_materialized_view) topic=shop.public.orders; needs=(kafka redis clickhouse) ;;
  *) echo "usage: $0 fraud_alerts|clickstream_sessions|cdc_materialized_view [EVENTS]" >&2; exit 2 ;;
esac

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
stop_servers() {
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "servers left running; stop them with: for s in ${needs[*]}; do bash scripts/services/\$s.sh stop $work/\$s; done"
    return
  fi
  for s in "${needs[@]}"; do bash "scripts/services/$s.sh" stop "$work/$s" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap stop_servers EXIT

declare -A addr
for s in "${needs[@]}"; do
  echo "== $s"
  bash "scripts/services/$s.sh" install
  mkdir -p "$work/$s"
  addr[$s]=$(bash "scripts/services/$s.sh" start "$work/$s" "$(free_port)")
  echo "${addr[$s]}"
done
flags=(--kafka "${addr[kafka]}")
[[ -n ${addr[redis]:-} ]] && flags+=(--redis "${addr[redis]}")
[[ -n ${addr[clickhouse]:-} ]] && flags+=(--clickhouse "${addr[clickhouse]}/")

bash scripts/services/kafka.sh topic "$work/kafka" "$topic" 4
[[ $name == fraud_alerts ]] && bash scripts/services/kafka.sh topic "$work/kafka" alerts 1
if [[ -n ${BENCH:-} ]]; then
  echo "== benchmark"
  cargo build --release --quiet -p eddy-bench --bin pipelines
  # shellcheck disable=SC2086 # BENCH holds several flags
  "${CARGO_TARGET_DIR:-target}/release/pipelines" $BENCH --pipeline "$name" \
    --events "$events" --rate "$rate" "${flags[@]}"
  exit
fi

echo "== build"
cargo build --release --quiet --example "$name"
bin=${CARGO_TARGET_DIR:-target}/release/examples/$name
if [[ $rate == 0 ]]; then
  echo "== input: $events messages to $topic"
  "$bin" "${flags[@]}" --produce "$events"
else
  echo "== input: $events messages to $topic at $rate a second, while the job runs"
  "$bin" "${flags[@]}" --produce "$events" --rate "$rate" &
fi

echo "== job"
"$bin" "${flags[@]}" --events "$events" --checkpoint-interval 1s --checkpoint-dir "$work/checkpoints"
wait

echo "== results"
redis() { redis-cli -u "${addr[redis]}" "$@"; }
clickhouse() { curl -sS "${addr[clickhouse]}/" --data-binary "$1"; }
case $name in
  fraud_alerts)
    echo "risk profiles in Redis: $(redis --scan --pattern 'risk:*' | wc -l)"
    echo "HGETALL risk:7 (TTL $(redis PTTL risk:7) ms):"
    redis HGETALL risk:7
    echo "cards with alerts: $(redis --scan --pattern 'risk:*' | while read -r k; do redis HGET "$k" alerts; done | grep -c . || true)"
    ;;
  clickstream_sessions)
    echo "sessions, late views:"
    clickhouse "SELECT (SELECT count() FROM sessions FINAL), (SELECT count() FROM late_page_views FINAL)"
    echo "longest sessions:"
    clickhouse "SELECT user, session_start, session_end, views, pages FROM sessions FINAL ORDER BY views DESC LIMIT 5"
    ;;
  cdc_materialized_view)
    echo "customers served from Redis: $(redis --scan --pattern 'customer:*' | wc -l)"
    echo "HGETALL customer:7:"
    redis HGETALL customer:7
    echo "ClickHouse, the same customer and the top three:"
    clickhouse "SELECT customer, total_cents, orders FROM customer_totals FINAL WHERE deleted = 0 AND customer = 7"
    clickhouse "SELECT customer, total_cents, orders FROM customer_totals FINAL WHERE deleted = 0 ORDER BY total_cents DESC LIMIT 3"
    ;;
esac
