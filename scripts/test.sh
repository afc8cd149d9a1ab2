#!/usr/bin/env bash
# Runs the whole test suite exactly as CI does: formatting, lints, the crate
# dependency rules, and every test of every crate.
#
# Later issues add real servers (Kafka, Redis, ClickHouse); this script will
# install and start them on loopback, and stop them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== crate dependency rules"
scripts/check-deps.sh

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "== tests"
cargo test --workspace --locked
