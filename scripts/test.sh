#!/usr/bin/env bash
# Runs the whole test suite exactly as CI does: formatting, lints, the crate
# dependency rules, and every test of every crate.
#
# Tests that need a real server start their own on a free loopback port
# through scripts/services/ and stop it when they end; this script installs
# the servers first (Kafka-compatible broker: Tansu; Redis; ClickHouse), and
# Debian's chromium, which renders the web view headless.
#
# Everything is built once, with the RocksDB backend (feature `rocksdb`), so
# every state test runs on both backends. Clippy and the tests select the
# same packages and features, so RocksDB (slow to build) is compiled once;
# the docs do not need it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
echo "== test servers"
bash scripts/services/kafka.sh install
bash scripts/services/redis.sh install
bash scripts/services/clickhouse.sh install
scripts/install-test-tools.sh
FEATURES=(--workspace --features rocksdb)

echo "== crate dependency rules"
scripts/check-deps.sh

echo "== Kubernetes manifests"
scripts/check-manifests.sh

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy "${FEATURES[@]}" --all-targets --locked -- -D warnings

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-fail-fast: every test binary runs, so one failure hides no other.
cargo test "${FEATURES[@]}" --locked --no-fail-fast 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
