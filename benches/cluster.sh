#!/usr/bin/env bash
# Runs one eddy-bench job on a cluster on this machine: a coordinator and
# WORKERS worker processes on loopback, all with the same job flags; returns
# when the coordinator (the job) ends, and stops the workers in any case.
# Each worker offers SLOTS slots (default 64: enough for any parallelism the
# benchmarks use, so a job never waits for slots).
#
#   benches/cluster.sh WORKERS eddy-bench --query q5 --events 3000000 --no-loop --parallelism 4
set -euo pipefail
workers=$1
shift
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$workers"); do
    "$@" worker --coordinator "127.0.0.1:$port" --slots "${SLOTS:-64}" >/dev/null &
    pids+=($!)
done
"$@" coordinator --bind "127.0.0.1:$port" --workers "$workers"
# The workers exit when the coordinator ends the job; wait for them, so
# that their CPU time counts.
wait "${pids[@]}" || true
